"""Fixtures: a real gateway (uvicorn in a thread, its own psycopg pool on the test database), real workers
(`python -m workers.server` subprocesses, loaded once per session), stub workers (subprocesses, for routing and
failure tests), and accounts/keys made with the control plane's own services."""

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import redis
import uvicorn

from contracts import USAGE_EVENT_FIELD, USAGE_STREAM, WORKERS_SET, worker_key
from gateway.app import create_app
from gateway.settings import Settings

REPO_ROOT = Path(__file__).resolve().parents[2]
SMOLLM2 = "smollm2-135m-instruct"
STUB_MODEL = "stub-model"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, proc: subprocess.Popen | None = None, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{url}: process exited with {proc.returncode}")
        try:
            if httpx.get(url, timeout=1.0).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer within {timeout} s")


def stop_process(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def unregister(redis_url: str, *worker_ids: str) -> None:
    client = redis.Redis.from_url(redis_url)
    try:
        for worker_id in worker_ids:
            client.srem(WORKERS_SET, worker_id)
            client.delete(worker_key(worker_id))
    finally:
        client.close()


@dataclass
class GatewayServer:
    url: str
    app: object
    server: uvicorn.Server
    thread: threading.Thread

    @property
    def services(self):  # the running app's process-wide services, for white-box checks
        return self.app.state.services

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(15)
        if self.thread.is_alive():
            raise RuntimeError(f"gateway {self.url} did not stop within 15 s")


def start_gateway(settings: Settings) -> GatewayServer:
    port = free_port()
    app = create_app(settings)
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", access_log=False, lifespan="on",
                            timeout_graceful_shutdown=5)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name=f"gateway-{port}", daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("gateway did not start")
        time.sleep(0.02)
    return GatewayServer(f"http://127.0.0.1:{port}", app, server, thread)


@pytest.fixture(scope="session")
def gateway_dsn(django_db_setup, django_db_blocker) -> str:
    from django.db import connection
    from psycopg.conninfo import make_conninfo

    s = connection.settings_dict
    parts = {"dbname": s["NAME"], "user": s["USER"], "password": s["PASSWORD"], "host": s["HOST"], "port": s["PORT"]}
    return make_conninfo(**{k: str(v) for k, v in parts.items() if v})


@pytest.fixture
def gateway_settings(gateway_dsn: str, tmp_path: Path) -> Settings:
    return Settings(database_url=gateway_dsn, redis_url=os.environ["REDIS_URL"], spool_dir=tmp_path / "spool",
                    registry_refresh_s=0.2, region="local", worker_secret="")


@pytest.fixture
def gateway_factory(transactional_db, gateway_settings: Settings) -> Iterator[Callable[..., GatewayServer]]:
    started: list[GatewayServer] = []

    def _start(**overrides: object) -> GatewayServer:
        server = start_gateway(gateway_settings.model_copy(update=overrides))
        started.append(server)
        return server

    try:
        yield _start
    finally:
        for server in started:
            server.stop()


@pytest.fixture
def gateway(gateway_factory) -> GatewayServer:
    return gateway_factory()


@pytest.fixture
def catalog(transactional_db) -> dict[str, object]:
    """The catalog rows the tests call (transactional_db truncates the seeded row between tests)."""
    from catalog.models import BaseModel

    rows = {}
    for slug in (SMOLLM2, STUB_MODEL):
        rows[slug], _ = BaseModel.objects.get_or_create(
            slug=slug,
            defaults=dict(public_name=f"accounts/hearth/models/{slug}", display_name=slug, architecture="llama",
                          context_length=8192, weights_uri=f"test://{slug}", price_input_per_mtok="0.1",
                          price_cached_input_per_mtok="0.05", price_output_per_mtok="0.2"),
        )
    return rows


@pytest.fixture
def make_key(transactional_db, catalog) -> Callable[..., tuple[object, str]]:
    """(ApiKey, secret) for a fresh account, through the control plane's services."""
    from accounts.models import Account
    from keys.services import api_key_create

    counter = iter(range(1_000_000))

    def _make(account=None, scopes: list[str] | None = None, **account_fields: object):
        if account is None:
            n = next(counter)
            account = Account.objects.create(slug=f"acct-{os.getpid()}-{n}-{time.time_ns()}", name=f"Account {n}",
                                             **account_fields)
        return api_key_create(account=account, name="test key", scopes=scopes)

    return _make


def usage_events(redis_url: str, request_id: str) -> list[dict]:
    client = redis.Redis.from_url(redis_url)
    try:
        entries = client.xrange(USAGE_STREAM)
    finally:
        client.close()
    events = [json.loads(fields[USAGE_EVENT_FIELD.encode()]) for _, fields in entries]
    return [e for e in events if e["request_id"] == request_id]


def wait_usage(redis_url: str, request_id: str, timeout: float = 5.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        events = usage_events(redis_url, request_id)
        if events:
            assert len(events) == 1, events
            return events[0]
        time.sleep(0.05)
    raise AssertionError(f"no usage event for {request_id}")


@pytest.fixture(scope="session")
def real_worker(smollm2_gguf_path: Path) -> Iterator[str]:
    """One real worker for the session (the model loads once): yields its URL; it heartbeats into REDIS_URL."""
    port = free_port()
    worker_id = f"gw-test-{port}"
    env = {**os.environ, "HEARTH_WORKER_SECRET": ""}
    proc = subprocess.Popen(
        [sys.executable, "-m", "workers.server", "--model", str(smollm2_gguf_path), "--host", "127.0.0.1",
         "--port", str(port), "--worker-id", worker_id, "--redis-url", os.environ["REDIS_URL"],
         "--dtype", "float32", "--log-level", "warning"],
        cwd=REPO_ROOT, env=env,
    )
    try:
        wait_http(f"http://127.0.0.1:{port}/health", proc, timeout=180)
        yield f"http://127.0.0.1:{port}"
    finally:
        stop_process(proc)
        unregister(os.environ["REDIS_URL"], worker_id)


@pytest.fixture
def stub_worker(tmp_path: Path) -> Iterator[Callable[..., tuple[str, subprocess.Popen]]]:
    """Starts stub workers (tests/gateway/stub_worker.py) that heartbeat as `stub-model` into REDIS_URL."""
    procs: list[tuple[subprocess.Popen, str]] = []

    def _start(worker_id: str, *args: str, redis_url: str | None = None) -> tuple[str, subprocess.Popen]:
        port = free_port()
        url = redis_url or os.environ["REDIS_URL"]
        proc = subprocess.Popen(
            [sys.executable, "-m", "tests.gateway.stub_worker", "--port", str(port), "--redis-url", url,
             "--worker-id", worker_id, "--base-model", STUB_MODEL, *args],
            cwd=REPO_ROOT,
        )
        procs.append((proc, url))
        wait_http(f"http://127.0.0.1:{port}/health", proc, timeout=30)
        return f"http://127.0.0.1:{port}", proc

    unregister(os.environ["REDIS_URL"], *[f"stub-{i}" for i in range(4)])
    try:
        yield _start
    finally:
        for proc, _url in procs:
            stop_process(proc)
        unregister(os.environ["REDIS_URL"], *[f"stub-{i}" for i in range(4)])
