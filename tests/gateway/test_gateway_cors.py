"""The dashboard's playground calls the gateway from the browser with a short-lived Bearer key: preflights from the
configured dashboard origins are answered, other origins get no CORS grant, and the real response exposes the
headers the playground reads (cost, request id)."""

import httpx
import pytest

pytestmark = pytest.mark.django_db(transaction=True)

PREFLIGHT = {"Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "authorization,content-type"}


def test_preflight_from_the_dashboard_origin_is_allowed(gateway):
    origin = "http://127.0.0.1:8000"
    r = httpx.options(f"{gateway.url}/v1/chat/completions", headers={"Origin": origin, **PREFLIGHT})
    assert r.status_code == 200
    assert r.headers["access-control-allow-origin"] == origin
    assert "POST" in r.headers["access-control-allow-methods"]
    assert "authorization" in r.headers["access-control-allow-headers"].lower()
    assert "access-control-allow-credentials" not in r.headers  # Bearer keys, never cookies


def test_preflight_from_another_origin_gets_no_grant(gateway):
    r = httpx.options(f"{gateway.url}/v1/chat/completions", headers={"Origin": "https://evil.example", **PREFLIGHT})
    assert r.status_code == 400
    assert "access-control-allow-origin" not in r.headers


def test_responses_expose_the_headers_the_playground_reads(gateway, make_key):
    _, secret = make_key()
    r = httpx.get(
        f"{gateway.url}/v1/models", headers={"Origin": "http://localhost:8000", "Authorization": f"Bearer {secret}"}
    )
    assert r.status_code == 200
    assert r.headers["access-control-allow-origin"] == "http://localhost:8000"
    exposed = r.headers["access-control-expose-headers"].lower()
    assert "x-hearth-cost" in exposed and "x-request-id" in exposed
