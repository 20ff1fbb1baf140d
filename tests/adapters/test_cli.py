"""The `hearth` CLI against the real control plane (Django's WSGI app in-process through httpx, real Postgres)."""

from __future__ import annotations

import io
from pathlib import Path

import httpx
import pytest
from adapter_builders import adapter_files
from django.core import signals
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections

from adapters.models import Adapter
from adapters.services import adapter_validate
from hearth_cli.main import main


@pytest.fixture
def cli(signup):
    from keys.services import api_key_create

    user, account = signup("cli@example.com")
    _key, secret = api_key_create(account=account, name="cli", scopes=["management"], created_by=user)
    # As django.test.Client does: a request must not close the test's connection (it holds the test transaction).
    signals.request_started.disconnect(close_old_connections)
    signals.request_finished.disconnect(close_old_connections)
    http = httpx.Client(transport=httpx.WSGITransport(app=get_wsgi_application()), base_url="http://testserver",
                        headers={"Authorization": f"Bearer {secret}"})

    def run(*argv: str) -> tuple[int, str]:
        out = io.StringIO()
        return main(list(argv), http=http, out=out), out.getvalue()

    run.account = account  # type: ignore[attr-defined]
    try:
        yield run
    finally:
        http.close()
        signals.request_started.connect(close_old_connections)
        signals.request_finished.connect(close_old_connections)


def test_upload_list_delete(cli, tmp_path: Path, adapter_store: Path, django_capture_on_commit_callbacks, capsys):
    folder = tmp_path / "my-lora"
    folder.mkdir()
    for name, data in adapter_files().items():
        (folder / name).write_bytes(data)
    code, out = cli("adapters", "upload", str(folder), "--base", "smollm2-135m-instruct", "--name", "support-bot")
    assert code == 0 and "pending" in out
    adapter_validate(adapter_id=Adapter.dangerously_unscoped.get(name="support-bot").pk)
    code, out = cli("adapters", "list")
    assert code == 0 and "support-bot" in out and "ready" in out
    assert f"accounts/{cli.account.slug}/models/support-bot" in out

    code, _ = cli("adapters", "upload", str(folder), "--base", "smollm2-135m-instruct", "--name", "support-bot")
    assert code == 1 and "already have an adapter" in capsys.readouterr().err

    with django_capture_on_commit_callbacks(execute=True):
        code, out = cli("adapters", "delete", "support-bot")
    assert code == 0 and "deleted support-bot" in out
    assert cli("adapters", "list") == (0, "")
    assert not any(adapter_store.iterdir())


def test_bad_folder_and_unknown_name(cli, tmp_path: Path, capsys):
    code, _ = cli("adapters", "upload", str(tmp_path), "--base", "smollm2-135m-instruct", "--name", "x")
    assert code == 1 and "adapter_config.json" in capsys.readouterr().err
    assert cli("adapters", "delete", "nope")[0] == 1
    assert "no adapter named 'nope'" in capsys.readouterr().err


def test_missing_key(monkeypatch, capsys):
    monkeypatch.delenv("HEARTH_API_KEY", raising=False)
    assert main(["adapters", "list"]) == 1
    assert "HEARTH_API_KEY" in capsys.readouterr().err


def test_routes_create_set_list_stats_delete(cli, django_capture_on_commit_callbacks, capsys):
    from catalog.models import BaseModel

    base = BaseModel.objects.get(slug="smollm2-135m-instruct").public_name
    ready = Adapter(account=cli.account, name="v3", base_model=BaseModel.objects.get(slug="smollm2-135m-instruct"),
                    status="ready")
    ready.save()
    own = f"accounts/{cli.account.slug}/models/v3"
    code, out = cli("routes", "create", "support", "--variant", f"{own}=90", "--variant", f"{base}=10")
    assert code == 0 and f"accounts/{cli.account.slug}/models/support" in out and "90.0%" in out, out
    code, out = cli("routes", "set", "support", "--variant", f"{own}=1", "--variant", f"{base}=3")
    assert code == 0 and "25.0%" in out and "75.0%" in out
    code, out = cli("routes", "list")
    assert code == 0 and out.count("support") == 2  # the route's name and its model name
    code, out = cli("routes", "stats", "support")
    assert code == 0 and own in out and base in out
    code, _ = cli("routes", "create", "x", "--variant", "nonsense")
    assert code == 1 and "MODEL=WEIGHT" in capsys.readouterr().err
    code, _ = cli("routes", "create", "y", "--variant", "accounts/hearth/models/nope=1")
    assert code == 1 and "no catalog model" in capsys.readouterr().err
    code, out = cli("routes", "delete", "support")
    assert code == 0 and "deleted route support" in out
    code, _ = cli("routes", "stats", "support")
    assert code == 1 and "no route named" in capsys.readouterr().err
