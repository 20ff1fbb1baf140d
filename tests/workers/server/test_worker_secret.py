"""Outside development the worker refuses to start without a real worker secret, and it listens on 127.0.0.1 unless
told otherwise (issue 12: with HEARTH_WORKER_SECRET unset the worker's /v1 was open). main() runs in-process: the
check comes before the model loads, so a refused start never touches the model file."""

import pytest

from contracts.worker_secret import worker_secret_problem
from workers.server import __main__ as cli

ARGS = ["--model", "no-such-model.gguf", "--port", "1"]


def _env(monkeypatch: pytest.MonkeyPatch, env: str | None, secret: str | None) -> None:
    for name, value in (("HEARTH_ENV", env), ("HEARTH_WORKER_SECRET", secret)):
        if value is None:
            monkeypatch.delenv(name, raising=False)
        else:
            monkeypatch.setenv(name, value)


@pytest.mark.parametrize("secret", [None, "", "   ", "change-me", "CHANGE-ME-please-0123456789", "dev", "short-but-real"])
def test_production_worker_refuses_a_missing_or_placeholder_secret(monkeypatch, caplog, secret: str | None) -> None:
    _env(monkeypatch, "production", secret)
    monkeypatch.setattr(cli, "build_engine", lambda args: pytest.fail("the model must not load"))
    assert cli.main(ARGS) == 2
    assert "refusing to start" in caplog.text


@pytest.mark.parametrize(("env", "secret"), [("production", "k" * 12 + "Zq9-x7Lp2"), (None, None), ("development", "")])
def test_a_real_secret_or_development_gets_past_the_check(monkeypatch, env: str | None, secret: str | None) -> None:
    _env(monkeypatch, env, secret)

    class Loaded(Exception):
        pass

    def build_engine(args: object) -> object:
        raise Loaded  # the point reached only once the secret check passed

    monkeypatch.setattr(cli, "build_engine", build_engine)
    with pytest.raises(Loaded):
        cli.main(ARGS)
    assert worker_secret_problem("staging", "dev") is not None


def test_the_worker_binds_loopback_unless_told() -> None:
    assert cli.parse_args(["--model", "m.gguf"]).host == "127.0.0.1"
    assert cli.parse_args(["--model", "m.gguf", "--host", "0.0.0.0"]).host == "0.0.0.0"
