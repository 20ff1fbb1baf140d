"""End-to-end fixtures, every part real: SmolLM2 workers (`python -m workers.server` subprocesses), a gateway as its
own process (`python -m gateway`) pointed at the test database and Redis, and accounts with API keys made by the
control plane's services. A new e2e test needs no fixture of its own:

    def test_something(smollm2_worker, gateway, e2e_account):
        tenant = e2e_account("ada")
        client = sdk(gateway.url, tenant.secret)  # the official openai client (tests.gateway.gateway_testlib)

- `worker_factory(*extra_args, region=..., adapter_store=..., env=...)`: another worker (other CLI options); module
  scope, so the model loads once per module and the box is not shared with idle workers after it.
- `gateway_factory(region=..., **settings)`: another gateway process; `settings` are gateway `Settings` fields
  (passed as HEARTH_GATEWAY_<FIELD> environment variables). Region E2E_REGION unless told, as workers'; routing
  prefers workers of the gateway's region, so a test with its own worker gives both its own region.
  `wait_for_worker(gateway.url, worker)` before the first request.
- `in_process_gateway(region=...)`: the gateway in a thread of this process, for the tests that check its internals
  (`.services`); prefer the process.
- `e2e_account(name)`: a fresh account and an inference key (`Tenant`), committed (transactional_db: the gateway
  and workers are other processes); the module should carry `pytest.mark.django_db(transaction=True)`.
- `smollm2_catalog`: the seeded SmolLM2 catalog row and its adapter shape, put back after a transactional flush.
- `adapter_store` + `eager_adapters`: a store shared with workers started with `adapter_store=`, and the control
  plane's Celery tasks run in-process (the real validation task, eagerly).
"""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import redis

from contracts import WORKERS_SET, worker_key
from gateway.settings import Settings
from tests.gateway.conftest import (
    REPO_ROOT,
    GatewayServer,
    free_port,
    start_gateway,
    stop_process,
    unregister,
    wait_http,
)
from workers.model_config import ModelConfig

SMOLLM2 = "smollm2-135m-instruct"
E2E_REGION = "e2e"  # workers other test packages leave registered (region "local") are not preferred by ours
# SmolLM2-135M's shape (its config.json; adapters/migrations/0002 seeds the same dims for validation).
SMOLLM2_CONFIG = ModelConfig(architecture="llama", vocab_size=49152, hidden_size=576, intermediate_size=1536,
                             num_layers=30, num_heads=9, num_kv_heads=3, head_dim=64, rope_theta=1e5,
                             rms_norm_eps=1e-5, max_position_embeddings=8192, tie_word_embeddings=True)
WORKER_START_S = 180  # loading SmolLM2 on a shared 2-core box
GATEWAY_START_S = 60


# -- workers ----------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Worker:
    url: str
    worker_id: str
    region: str
    proc: subprocess.Popen


def start_worker(model: Path, *extra_args: str, region: str = E2E_REGION, adapter_store: Path | None = None,
                 num_kv_blocks: int = 256, env: dict[str, str] | None = None) -> Worker:
    port = free_port()
    worker_id = f"e2e-{port}"
    # One thread: the box is shared. No worker secret: the gateway below runs in development mode.
    full_env = {**os.environ, "HEARTH_WORKER_SECRET": "", "OMP_NUM_THREADS": "1", **(env or {})}
    args = [sys.executable, "-m", "workers.server", "--model", str(model), "--host", "127.0.0.1", "--port", str(port),
            "--worker-id", worker_id, "--redis-url", os.environ["REDIS_URL"], "--region", region,
            "--num-kv-blocks", str(num_kv_blocks), "--log-level", "warning"]
    if adapter_store is not None:
        args += ["--adapter-store", str(adapter_store)]
    return _spawn_worker([*args, *extra_args], full_env, port, worker_id, region)


def _spawn_worker(cmd: list[str], env: dict[str, str], port: int, worker_id: str, region: str) -> Worker:
    # started, healthy and registered, or stopped and unregistered again
    proc = subprocess.Popen(cmd, cwd=REPO_ROOT, env=env)
    try:
        wait_http(f"http://127.0.0.1:{port}/health", proc, timeout=WORKER_START_S)
    except BaseException:
        stop_process(proc)
        unregister(os.environ["REDIS_URL"], worker_id)
        raise
    return Worker(f"http://127.0.0.1:{port}", worker_id, region, proc)


def stop_worker(worker: Worker) -> None:
    stop_process(worker.proc)
    unregister(os.environ["REDIS_URL"], worker.worker_id)


@pytest.fixture(scope="module")
def worker_factory(smollm2_gguf_path: Path) -> Iterator[Callable[..., Worker]]:
    started: list[Worker] = []

    def _start(*extra_args: str, **options: object) -> Worker:
        worker = start_worker(smollm2_gguf_path, *extra_args, **options)  # type: ignore[arg-type]
        started.append(worker)
        return worker

    try:
        yield _start
    finally:
        for worker in started:
            stop_worker(worker)


@pytest.fixture(scope="module")
def smollm2_worker(worker_factory: Callable[..., Worker]) -> Worker:
    return worker_factory()


# -- gateways ---------------------------------------------------------------------------------------------------------


@dataclass
class GatewayProcess:
    url: str
    proc: subprocess.Popen

    def stop(self) -> None:
        stop_process(self.proc)


def database_url() -> str:
    """The test database as a URL (pytest-django renamed it; DATABASE_URL still names the server's default one), for
    processes this test starts."""
    from django.db import connection

    s = connection.settings_dict
    auth = s["USER"] + (f":{s['PASSWORD']}" if s["PASSWORD"] else "")
    if str(s["HOST"]).startswith("/"):
        return f"postgresql://{auth}@/{s['NAME']}?host={s['HOST']}"
    return f"postgresql://{auth}@{s['HOST']}:{s['PORT']}/{s['NAME']}"


def database_dsn() -> str:
    """The same database as a libpq DSN (the in-process gateway's Settings.database_url)."""
    from django.db import connection
    from psycopg.conninfo import make_conninfo

    s = connection.settings_dict
    parts = {"dbname": s["NAME"], "user": s["USER"], "password": s["PASSWORD"], "host": s["HOST"], "port": s["PORT"]}
    return make_conninfo(**{k: str(v) for k, v in parts.items() if v})


def start_gateway_process(spool_dir: Path, *, region: str = E2E_REGION, **settings: object) -> GatewayProcess:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("HEARTH_GATEWAY_")}
    env.update(DATABASE_URL=database_url(), REDIS_URL=os.environ["REDIS_URL"], HEARTH_ENV="development",
               HEARTH_WORKER_SECRET="", HEARTH_GATEWAY_REGION=region, HEARTH_GATEWAY_SPOOL_DIR=str(spool_dir),
               HEARTH_GATEWAY_REGISTRY_REFRESH_S="0.2")
    for name, value in settings.items():
        if name not in Settings.model_fields:
            raise TypeError(f"the gateway has no setting {name!r}")
        env[f"HEARTH_GATEWAY_{name.upper()}"] = str(value)
    proc = subprocess.Popen([sys.executable, "-m", "gateway", "--host", "127.0.0.1", "--port", str(port),
                             "--log-level", "warning"], cwd=REPO_ROOT, env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{url}/health", proc, timeout=GATEWAY_START_S)
    except BaseException:
        stop_process(proc)
        raise
    return GatewayProcess(url, proc)


def wait_for_worker(gateway_url: str, worker: Worker, timeout: float = 30.0) -> None:
    """Until the gateway's registry holds every live worker entry in Redis, `worker` among them."""
    client = redis.Redis.from_url(os.environ["REDIS_URL"])
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            if client.exists(worker_key(worker.worker_id)):
                live = sum(1 for w in client.smembers(WORKERS_SET) if client.exists(worker_key(w.decode())))
                if httpx.get(f"{gateway_url}/health", timeout=2).json()["workers"] >= live:
                    return
            time.sleep(0.1)
    finally:
        client.close()
    raise AssertionError(f"the gateway at {gateway_url} never saw worker {worker.worker_id}")


@pytest.fixture(scope="module")
def gateway_factory(django_db_setup,
                    tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., GatewayProcess]]:
    started: list[GatewayProcess] = []

    def _start(*, region: str = E2E_REGION, **settings: object) -> GatewayProcess:
        spool = tmp_path_factory.mktemp("gateway-spool")
        gateway = start_gateway_process(spool, region=region, **settings)
        started.append(gateway)
        return gateway

    try:
        yield _start
    finally:
        for gateway in started:
            gateway.stop()


@pytest.fixture(scope="module")
def gateway(gateway_factory: Callable[..., GatewayProcess], smollm2_worker: Worker) -> GatewayProcess:
    """A gateway process routing to `smollm2_worker` (it has seen the worker's heartbeat)."""
    server = gateway_factory(region=smollm2_worker.region)
    wait_for_worker(server.url, smollm2_worker)
    return server


@pytest.fixture
def in_process_gateway(transactional_db, tmp_path: Path) -> Iterator[Callable[..., GatewayServer]]:
    """The gateway in a thread of this process (`.services` for white-box checks), on the test database."""
    started: list[GatewayServer] = []

    def _start(*, region: str = E2E_REGION, **settings: object) -> GatewayServer:
        server = start_gateway(Settings(database_url=database_dsn(), redis_url=os.environ["REDIS_URL"],
                                        spool_dir=tmp_path / f"spool-{len(started)}", registry_refresh_s=0.2,
                                        region=region, worker_secret="", **settings))
        started.append(server)
        return server

    try:
        yield _start
    finally:
        for server in started:
            server.stop()


# -- accounts, catalog, adapters --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Tenant:
    account: object  # accounts.models.Account
    key: object  # keys.models.ApiKey
    secret: str


@pytest.fixture
def e2e_account(transactional_db, smollm2_catalog) -> Callable[[str], Tenant]:
    from accounts.models import Account, Membership, User
    from keys.services import api_key_create

    def _make(name: str = "e2e") -> Tenant:
        account = Account.objects.create(slug=f"{name}-{time.time_ns()}", name=name)
        owner = User.objects.create_user(email=f"{account.slug}@example.com")
        Membership(account=account, user=owner, role=Membership.Role.OWNER).save(force_insert=True)
        # Both scopes: the tests call models with it and upload adapters to the control plane (as the owner).
        key, secret = api_key_create(account=account, name="e2e", scopes=["inference", "management"], created_by=owner)
        return Tenant(account, key, secret)

    return _make


@pytest.fixture
def smollm2_catalog(transactional_db):
    """The seeded catalog row at its seed prices, and the dims adapter validation reads (transactional_db truncates
    both between tests)."""
    from adapters.models import BaseModelShape
    from catalog.models import BaseModel

    seed = dict(importlib.import_module("catalog.migrations.0002_seed_smollm2").SMOLLM2)
    base, _ = BaseModel.objects.update_or_create(slug=seed.pop("slug"), defaults=seed)
    shape = importlib.import_module("adapters.migrations.0002_seed_smollm2_shape").SMOLLM2_SHAPE
    BaseModelShape.objects.update_or_create(base_model=base, defaults=shape)
    return base


@pytest.fixture(scope="module")
def adapter_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("e2e-adapter-store")


@pytest.fixture
def eager_adapters(settings, adapter_store: Path) -> Iterator[Path]:
    """Uploads land in `adapter_store` and Celery tasks run in-process (the real validation task, eagerly)."""
    from hearth_platform.celery import app as celery_app

    settings.HEARTH_ADAPTER_STORE = str(adapter_store)
    eager = celery_app.conf.task_always_eager
    celery_app.conf.task_always_eager = True
    try:
        yield adapter_store
    finally:
        celery_app.conf.task_always_eager = eager


# -- the embedding worker (all-MiniLM-L6-v2) ------------------------------------------------------------------------


def start_embedding_worker(*extra_args: str, region: str = E2E_REGION) -> Worker:
    """`python -m workers.embeddings` on the packaged all-MiniLM-L6-v2, one torch thread (the box is shared)."""
    port = free_port()
    worker_id = f"e2e-emb-{port}"
    env = {**os.environ, "HEARTH_WORKER_SECRET": "", "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "workers.embeddings", "--host", "127.0.0.1", "--port", str(port),
           "--worker-id", worker_id, "--redis-url", os.environ["REDIS_URL"], "--region", region,
           "--threads", "1", "--log-level", "warning", *extra_args]  # fmt: skip
    return _spawn_worker(cmd, env, port, worker_id, region)


@pytest.fixture(scope="module")
def minilm_worker() -> Iterator[Worker]:
    worker = start_embedding_worker()
    try:
        yield worker
    finally:
        stop_worker(worker)


@pytest.fixture
def minilm_catalog(transactional_db):
    """The seeded embedding model's catalog row at its seed price (transactional_db truncates it between tests)."""
    from catalog.models import BaseModel

    seed = dict(importlib.import_module("catalog.migrations.0004_seed_all_minilm_l6_v2").MINILM)
    base, _ = BaseModel.objects.update_or_create(slug=seed.pop("slug"), defaults=seed)
    return base
