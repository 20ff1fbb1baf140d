"""Settings: all configuration comes from `Settings` (the environment), and outside development the gateway refuses to
start without a real worker secret (issue 12, item 8)."""

from decimal import Decimal

import pytest
from pydantic import ValidationError

from gateway.app import create_app
from gateway.settings import Settings

REAL_SECRET = "q9L3v0Xr7dN2pK8sW4yB1mT6"


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch):
    for name in ("HEARTH_ENV", "HEARTH_GATEWAY_ENV", "HEARTH_WORKER_SECRET", "HEARTH_GATEWAY_WORKER_SECRET",
                 "HEARTH_BILLING_DEFAULT_SPEND_LIMIT"):
        monkeypatch.delenv(name, raising=False)


def test_development_allows_an_empty_worker_secret():
    assert Settings().env == "development" and Settings().worker_secret == ""


@pytest.mark.parametrize("secret", ["", "   ", "change-me", "change-me-to-another-long-random-string", "CHANGEME",
                                    "secret", "short-but-real"])
def test_outside_development_a_missing_or_placeholder_secret_is_refused(monkeypatch, secret):
    monkeypatch.setenv("HEARTH_ENV", "production")
    monkeypatch.setenv("HEARTH_WORKER_SECRET", secret)
    with pytest.raises(ValidationError, match="HEARTH_WORKER_SECRET"):
        Settings()
    with pytest.raises(ValidationError, match="HEARTH_WORKER_SECRET"):
        create_app()  # `python -m gateway` builds its app this way: it does not start


def test_outside_development_a_real_secret_starts(monkeypatch):
    monkeypatch.setenv("HEARTH_ENV", "staging")
    monkeypatch.setenv("HEARTH_WORKER_SECRET", REAL_SECRET)
    settings = Settings()
    assert settings.worker_secret == REAL_SECRET
    create_app(settings)


def test_billing_default_spend_limit_comes_from_settings(monkeypatch):
    monkeypatch.setenv("HEARTH_BILLING_DEFAULT_SPEND_LIMIT", "2.5")
    settings = Settings()
    assert settings.billing_default_spend_limit == Decimal("2.5")
    assert settings.default_spend_limit_micros == 2_500_000


def test_no_gateway_module_reads_the_environment_itself():
    import ast
    from pathlib import Path

    def reads_env(path: Path) -> bool:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Attribute) and node.attr in ("environ", "getenv") and \
                    isinstance(node.value, ast.Name) and node.value.id == "os":
                return True
        return False

    gateway = Path(__file__).resolve().parents[2] / "gateway"
    assert [p.name for p in gateway.rglob("*.py") if reads_env(p)] == []
