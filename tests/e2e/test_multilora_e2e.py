"""Multi-LoRA end to end, every part real: an adapter uploaded through the control plane's API with an API key and
validated by the real Celery task (run eagerly) lands in the adapter store; a real gateway routes
`accounts/<acct>/models/<name>` to a real worker (`python -m workers.server --adapter-store`), which fetches it from
the store on first use; the usage event names the adapter, and the billing ledger rates it exactly like the same
tokens on the base model. Another account's key gets 404; deleting the adapter drops it from the worker and the
gateway."""

import json
import os
import subprocess
import sys
import time
from decimal import Decimal
from pathlib import Path

import openai
import pytest
from rest_framework.test import APIClient

from billing.events import parse_event
from billing.ledger import write_batch
from billing.pricing import Prices, cost_usd
from gateway.settings import Settings
from tests.gateway.conftest import REPO_ROOT, free_port, start_gateway, stop_process, unregister, wait_http, wait_usage
from tests.gateway.gateway_testlib import sdk, wait_for_workers
from workers.lora.synthetic import write_random_adapter
from workers.model_config import ModelConfig

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]
SMOLLM2 = "smollm2-135m-instruct"
# SmolLM2-135M's shape (its config.json; adapters/migrations/0002 seeds the same dims for validation).
SMOLLM2_CONFIG = ModelConfig(architecture="llama", vocab_size=49152, hidden_size=576, intermediate_size=1536,
                             num_layers=30, num_heads=9, num_kv_heads=3, head_dim=64, rope_theta=1e5,
                             rms_norm_eps=1e-5, max_position_embeddings=8192, tie_word_embeddings=True)
MESSAGES = [{"role": "user", "content": "Name three rivers of Europe and say one thing about each of them."}]


@pytest.fixture(scope="module")
def adapter_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("e2e-adapter-store")


E2E_REGION = "e2e-lora"


@pytest.fixture(scope="module")
def lora_worker(smollm2_gguf_path: Path, adapter_store: Path):
    port = free_port()
    worker_id = f"e2e-lora-{port}"
    env = {**os.environ, "HEARTH_WORKER_SECRET": "", "OMP_NUM_THREADS": "1"}  # 1 thread: the box is shared
    proc = subprocess.Popen(
        [sys.executable, "-m", "workers.server", "--model", str(smollm2_gguf_path), "--host", "127.0.0.1",
         "--port", str(port), "--worker-id", worker_id, "--redis-url", os.environ["REDIS_URL"],
         "--adapter-store", str(adapter_store), "--num-kv-blocks", "256", "--log-level", "warning",
         # Its own region: workers other tests left registered (without this adapter store) are not preferred.
         "--region", E2E_REGION],
        cwd=REPO_ROOT, env=env,
    )
    try:
        wait_http(f"http://127.0.0.1:{port}/health", proc, timeout=180)
        yield worker_id
    finally:
        stop_process(proc)
        unregister(os.environ["REDIS_URL"], worker_id)


@pytest.fixture
def gateway(transactional_db, tmp_path: Path):
    from django.db import connection
    from psycopg.conninfo import make_conninfo

    s = connection.settings_dict
    parts = {"dbname": s["NAME"], "user": s["USER"], "password": s["PASSWORD"], "host": s["HOST"], "port": s["PORT"]}
    dsn = make_conninfo(**{k: str(v) for k, v in parts.items() if v})
    server = start_gateway(Settings(database_url=dsn, redis_url=os.environ["REDIS_URL"], spool_dir=tmp_path / "spool",
                                    registry_refresh_s=0.2, region=E2E_REGION, worker_secret=""))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def control_plane(settings, adapter_store: Path):
    """The adapter store shared with the worker, and Celery tasks run in-process (the real task, eagerly)."""
    from hearth_platform.celery import app as celery_app

    settings.HEARTH_ADAPTER_STORE = str(adapter_store)
    eager = celery_app.conf.task_always_eager
    celery_app.conf.task_always_eager = True
    try:
        yield
    finally:
        celery_app.conf.task_always_eager = eager


def _smollm2_with_shape():
    from adapters.models import BaseModelShape
    from catalog.models import BaseModel

    # transactional_db truncates the seeded catalog between tests: put back the row and the dims validation reads.
    base, _ = BaseModel.objects.get_or_create(
        slug=SMOLLM2, defaults=dict(public_name=f"accounts/hearth/models/{SMOLLM2}", display_name="SmolLM2",
                                    architecture="llama", context_length=8192, weights_uri="test://smollm2",
                                    price_input_per_mtok="0.1", price_cached_input_per_mtok="0.05",
                                    price_output_per_mtok="0.2"))  # fmt: skip
    BaseModelShape.objects.update_or_create(base_model=base, defaults=dict(
        hidden_size=576, intermediate_size=1536, num_layers=30, num_heads=9, num_kv_heads=3, head_dim=64))
    return base


def _account_with_key(slug: str):
    from accounts.models import Account
    from keys.services import api_key_create

    account = Account.objects.create(slug=f"{slug}-{time.time_ns()}", name=slug)
    key, secret = api_key_create(account=account, name="e2e")
    return account, key, secret


def _upload(api: APIClient, folder: Path, name: str) -> dict:
    from django.core.files.uploadedfile import SimpleUploadedFile

    files = [SimpleUploadedFile(p.name, p.read_bytes()) for p in sorted(folder.iterdir())]
    response = api.post("/api/v1/adapters", {"name": name, "base_model": SMOLLM2, "files": files}, format="multipart")
    assert response.status_code == 202, response.content
    return response.json()


def _ledger(events: list[dict]) -> dict[str, Decimal]:
    from billing.models import UsageRecord

    result = write_batch([parse_event(json.dumps(e)) for e in events])
    assert result.num_inserted == len(events) and not result.rejected, result
    rows = UsageRecord.dangerously_unscoped.filter(request_id__in=[e["request_id"] for e in events])
    return {r.request_id: r.cost_usd for r in rows}


def _holders(gateway, uid: str) -> list[str]:
    return [w.worker_id for w in gateway.services.registry.workers() if uid in w.resident_adapters]


def _wait(predicate, timeout: float = 30.0):
    deadline = time.monotonic() + timeout
    while not (value := predicate()):
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.05)
    return value


def test_upload_chat_meter_price_isolate_delete(control_plane, gateway, lora_worker, adapter_store, tmp_path,
                                                django_capture_on_commit_callbacks):
    base = _smollm2_with_shape()
    account, key, secret = _account_with_key("lora-owner")
    _other, _other_key, other_secret = _account_with_key("lora-other")
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")

    # Upload -> the validation task (eager) -> ready, in the store the worker reads.
    folder = write_random_adapter(tmp_path / "support-bot", SMOLLM2_CONFIG, rank=16, alpha=32, seed=7, b_std=0.05)
    created = _upload(api, folder, "support-bot")
    uid, public = created["uid"], created["model"]
    assert public == f"accounts/{account.slug}/models/support-bot"
    detail = api.get(f"/api/v1/adapters/{uid}").json()
    assert detail["status"] == "ready", detail["failure_reason"]
    assert (adapter_store / uid / "adapter_model.safetensors").is_file()

    wait_for_workers(gateway, SMOLLM2)
    client = sdk(gateway.url, secret)
    assert public in {m.id for m in client.models.list()}
    ask = dict(messages=MESSAGES, max_tokens=8, temperature=0, extra_body={"ignore_eos": True})
    raw = client.chat.completions.with_raw_response.create(model=public, **ask)
    reply = raw.parse()
    assert reply.model == public and reply.usage.completion_tokens == 8 and reply.choices[0].message.content
    assert _wait(lambda: _holders(gateway, uid)) == [lora_worker]  # fetched from the store, now resident

    adapter_pk = _adapter_pk(uid)
    event = wait_usage(os.environ["REDIS_URL"], raw.headers["x-request-id"])
    assert (event["adapter_id"], event["model_id"], event["account_id"], event["api_key_id"]) == (
        adapter_pk, base.pk, account.pk, key.pk)

    # The same tokens on the base model: same prompt, same completion length. The adapter's cached prompt blocks are
    # not the base model's (the prefix-cache hash includes the adapter), so nothing is cached for either.
    base_raw = client.chat.completions.with_raw_response.create(model=SMOLLM2, **ask)
    base_reply = base_raw.parse()
    base_event = wait_usage(os.environ["REDIS_URL"], base_raw.headers["x-request-id"])
    assert base_event["adapter_id"] is None
    for e in (event, base_event):
        assert (e["prompt_tokens"], e["cached_prompt_tokens"], e["completion_tokens"]) == (
            reply.usage.prompt_tokens, 0, 8)
    ledger = _ledger([event, base_event])
    prices = Prices(Decimal(base.price_input_per_mtok), Decimal(base.price_cached_input_per_mtok),
                    Decimal(base.price_output_per_mtok))
    expected = cost_usd(prices, prompt_tokens=reply.usage.prompt_tokens, cached_prompt_tokens=0, completion_tokens=8)
    assert ledger[event["request_id"]] == ledger[base_event["request_id"]] == expected > 0
    assert raw.headers["x-hearth-cost"] == base_raw.headers["x-hearth-cost"] == reply.usage.cost == base_reply.usage.cost

    # Streaming through the gateway on the adapter: usage in the last chunk, metered with the adapter too.
    stream = client.chat.completions.create(model=public, messages=MESSAGES, max_tokens=4, stream=True,
                                            stream_options={"include_usage": True})
    chunks = list(stream)
    assert {c.model for c in chunks} == {public} and chunks[-1].usage.completion_tokens <= 4
    assert wait_usage(os.environ["REDIS_URL"], stream.response.headers["x-request-id"])["adapter_id"] == adapter_pk

    # Another account's key: the model does not exist for it.
    other = sdk(gateway.url, other_secret)
    assert public not in {m.id for m in other.models.list()}
    with pytest.raises(openai.NotFoundError) as info:
        other.chat.completions.create(model=public, messages=MESSAGES, max_tokens=1)
    assert info.value.code == "model_not_found"

    # Delete: files gone, the worker drops it from its caches (registry), the gateway answers 404.
    with django_capture_on_commit_callbacks(execute=True):
        assert api.delete(f"/api/v1/adapters/{uid}").status_code == 204
    assert not (adapter_store / uid).exists()
    _wait(lambda: not _holders(gateway, uid))
    with pytest.raises(openai.NotFoundError) as info:  # the gateway learns it from the same pub/sub message
        _wait(lambda: not client.chat.completions.create(model=public, messages=MESSAGES, max_tokens=1))
    assert info.value.code == "model_not_found"


def _adapter_pk(uid: str) -> int:
    from adapters.models import Adapter

    return Adapter.dangerously_unscoped.get(uid=uid).pk
