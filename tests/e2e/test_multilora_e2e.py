"""Multi-LoRA end to end, every part real: an adapter uploaded through the control plane's API with an API key and
validated by the real Celery task (run eagerly) lands in the adapter store; a real gateway routes
`accounts/<acct>/models/<name>` to a real worker (`python -m workers.server --adapter-store`), which fetches it from
the store on first use; the usage event names the adapter, and the billing ledger rates it exactly like the same
tokens on the base model. Another account's key gets 404; deleting the adapter drops it from the worker and the
gateway."""

import json
import os
import time
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path

import openai
import pytest
import redis
from rest_framework.test import APIClient

from billing.events import parse_event
from billing.ledger import write_batch
from billing.pricing import Prices, cost_usd
from contracts import WORKERS_SET, worker_key
from tests.e2e.conftest import SMOLLM2, SMOLLM2_CONFIG, GatewayProcess, Worker, wait_for_worker
from tests.gateway.conftest import wait_usage
from tests.gateway.gateway_testlib import sdk
from workers.lora.synthetic import write_random_adapter

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]
MESSAGES = [{"role": "user", "content": "Name three rivers of Europe and say one thing about each of them."}]
# Its own region: workers other tests left registered (without this adapter store) are not preferred.
LORA_REGION = "e2e-lora"


@pytest.fixture(scope="module")
def lora_worker(worker_factory: Callable[..., Worker], adapter_store: Path) -> Worker:
    return worker_factory(region=LORA_REGION, adapter_store=adapter_store)


@pytest.fixture(scope="module")
def lora_gateway(gateway_factory: Callable[..., GatewayProcess], lora_worker: Worker) -> GatewayProcess:
    gateway = gateway_factory(region=LORA_REGION)
    wait_for_worker(gateway.url, lora_worker)
    return gateway


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


def _holders(uid: str) -> list[str]:
    """Workers whose registry entry (what gateways route by) lists the adapter as resident."""
    client = redis.Redis.from_url(os.environ["REDIS_URL"])
    try:
        entries = [client.get(worker_key(w.decode())) for w in client.smembers(WORKERS_SET)]
    finally:
        client.close()
    return sorted(e["worker_id"] for e in map(json.loads, filter(None, entries)) if uid in e["resident_adapters"])


def _wait(predicate, timeout: float = 30.0):
    deadline = time.monotonic() + timeout
    while not (value := predicate()):
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.05)
    return value


def test_upload_chat_meter_price_isolate_delete(eager_adapters, lora_gateway, lora_worker, e2e_account,
                                                smollm2_catalog, tmp_path, django_capture_on_commit_callbacks):
    base, adapter_store = smollm2_catalog, eager_adapters
    owner, other_tenant = e2e_account("lora-owner"), e2e_account("lora-other")
    account, key, secret = owner.account, owner.key, owner.secret
    other_secret = other_tenant.secret
    gateway = lora_gateway
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

    client = sdk(gateway.url, secret)
    assert public in {m.id for m in client.models.list()}
    ask = dict(messages=MESSAGES, max_tokens=8, temperature=0, extra_body={"ignore_eos": True})
    raw = client.chat.completions.with_raw_response.create(model=public, **ask)
    reply = raw.parse()
    assert reply.model == public and reply.usage.completion_tokens == 8 and reply.choices[0].message.content
    assert _wait(lambda: _holders(uid)) == [lora_worker.worker_id]  # fetched from the store, now resident

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
    _wait(lambda: not _holders(uid))
    with pytest.raises(openai.NotFoundError) as info:  # the gateway learns it from the same pub/sub message
        _wait(lambda: not client.chat.completions.create(model=public, messages=MESSAGES, max_tokens=1))
    assert info.value.code == "model_not_found"


def _adapter_pk(uid: str) -> int:
    from adapters.models import Adapter

    return Adapter.dangerously_unscoped.get(uid=uid).pk
