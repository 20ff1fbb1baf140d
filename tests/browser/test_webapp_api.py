"""The control plane's side of the dashboard (no browser): the SPA at non-API paths, the dashboard config, the
playground's short-lived key, and the frontend's API paths and types checked against the OpenAPI schema."""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from devstack.services import REPO_ROOT

PASSWORD = "amber-kettle-orbit-42"
FRONTEND = REPO_ROOT / "frontend" / "src" / "api"


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings) -> None:  # noqa: ANN001
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def person(db):  # noqa: ANN001, ANN201
    from accounts.services import account_signup

    user, account = account_signup(email="ada@example.com", password=PASSWORD, account_name=None)
    client = APIClient()
    client.force_login(user)
    return client, account


def test_spa_is_served_for_client_routes_not_for_the_api(client, settings, tmp_path: Path) -> None:  # noqa: ANN001
    settings.HEARTH_FRONTEND_DIST = str(tmp_path)
    assert client.get("/").status_code == 503  # not built: says how to build it
    (tmp_path / "index.html").write_text("<!doctype html><div id=root></div>")
    for path in ("/", "/keys", "/usage/anything"):
        response = client.get(path)
        assert response.status_code == 200 and b"id=root" in response.content, path
        assert "csrftoken" in response.cookies
    assert client.get("/api/v1/no-such-thing").status_code == 404
    assert client.post("/keys").status_code in (403, 405)


def test_config_names_the_gateway(person, settings) -> None:  # noqa: ANN001
    client, _ = person
    settings.HEARTH_GATEWAY_URL = "https://api.example.com/v1/"
    assert client.get("/api/v1/config").json()["gateway_url"] == "https://api.example.com/v1"
    del settings.HEARTH_GATEWAY_URL
    settings.ALLOWED_HOSTS = ["dash.example.com"]
    assert client.get("/api/v1/config", HTTP_HOST="dash.example.com:8000").json()["gateway_url"] == \
        "http://dash.example.com:8080/v1"


def test_playground_key_is_short_lived_named_and_replaced(person) -> None:  # noqa: ANN001
    from contracts import api_key_hash
    from keys.models import ApiKey

    client, account = person
    first = client.post("/api/v1/playground/token")
    assert first.status_code == 201, first.content
    body = first.json()
    assert re.fullmatch(r"hk_[0-9A-Za-z]{40}", body["secret"])
    assert "temporary" in body["name"]
    expires = timezone.datetime.fromisoformat(body["expires_at"])
    assert timezone.now() < expires <= timezone.now() + timedelta(minutes=16)
    key = ApiKey.objects.for_account(account).get(pk=body["id"])
    assert key.hashed_key == api_key_hash(body["secret"]) and key.expires_at is not None
    second = client.post("/api/v1/playground/token").json()
    key.refresh_from_db()
    assert key.revoked_at is not None  # the session's previous playground key is revoked
    assert ApiKey.objects.for_account(account).get(pk=second["id"]).revoked_at is None


def test_playground_key_needs_a_person(person) -> None:  # noqa: ANN001
    client, _ = person
    secret = client.post("/api/v1/keys", {"name": "app"}, format="json").json()["secret"]
    as_key = APIClient()
    as_key.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
    assert as_key.post("/api/v1/playground/token").status_code == 403
    assert APIClient().post("/api/v1/playground/token").status_code in (401, 403)


def _ts_paths() -> dict[str, set[str]]:
    text = (FRONTEND / "paths.ts").read_text()
    found: dict[str, set[str]] = {}
    for m in re.finditer(r'[`"](/api/v1/[^`"]*)[`"][^\n]*// ([A-Z ]+)', text):
        path = re.sub(r"\$\{(\w+)\}", r"{\1}", m[1])
        found[path] = set(m[2].split())
    return found


def test_frontend_paths_and_types_match_the_openapi_schema(db) -> None:  # noqa: ANN001
    from drf_spectacular.generators import SchemaGenerator

    schema = SchemaGenerator().get_schema(request=None, public=True)
    paths = {re.sub(r"\{[^}]+\}", "{}", p): {m.upper() for m in ops} for p, ops in schema["paths"].items()}
    used = _ts_paths()
    assert len(used) >= 15
    for path, methods in used.items():
        key = re.sub(r"\{[^}]+\}", "{}", path)
        assert key in paths, f"frontend calls {path}, which the schema doesn't have"
        assert methods <= paths[key], f"{path}: frontend uses {methods}, schema offers {paths[key]}"
    # Field names of the TypeScript interfaces that mirror a schema component.
    components = schema["components"]["schemas"]
    types = (FRONTEND / "types.ts").read_text()
    mirrors = {"User": "User", "Account": "Account", "Member": "Member", "ApiKey": "ApiKey", "BaseModel": "BaseModel",
               "Adapter": "Adapter", "PlaygroundToken": "PlaygroundToken", "DashboardConfig": "Config"}
    for ts_name, component in mirrors.items():
        body = re.search(rf"export interface {ts_name} (?:extends \w+ )?\{{(.*?)\n?\}}", types, re.S)
        assert body, ts_name
        ts_fields = set(re.findall(r"(\w+)\??:", body[1]))
        schema_fields = set(components[component]["properties"])
        assert ts_fields == schema_fields, f"{ts_name} vs {component}: {ts_fields ^ schema_fields}"
