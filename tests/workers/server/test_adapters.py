"""Adapters on a real worker app (real engine on SmolLM2, real embedded Redis): `<base>:<uid>` is fetched from the
adapter store on first use and then reported resident (models list, heartbeat), unknown adapters are 404, and a
deletion message on ADAPTERS_DELETED_CHANNEL ends the adapter's live requests, drops its weights and unpublishes its
prefix-cache blocks without disturbing the worker. The CLI's adapter flags reach EngineConfig."""

import json
import os
import shutil
import uuid
from pathlib import Path

import openai
import pytest
import redis

from contracts import ADAPTERS_DELETED_CHANNEL, worker_key
from tests.workers.server._serve import MODEL, serve_in_thread, wait_until
from workers.engine.config import EngineConfig
from workers.engine.llm_engine import LLMEngine
from workers.lora.synthetic import write_random_adapter
from workers.server.__main__ import engine_config, parse_args
from workers.server.app import ServerSettings, create_app

pytestmark = pytest.mark.slow
UID = "5eed" * 8
PROMPT = "Write one sentence about the sea, and then another one about the mountains, and a third about rivers."


@pytest.fixture
def lora_worker(smollm2_fp32, smollm2_tokenizer, smollm2_gguf_path, tmp_path: Path, torch_one_thread):
    store = tmp_path / "store"
    write_random_adapter(store / UID, smollm2_fp32.config, rank=8, alpha=16, seed=1, b_std=0.05)
    config = EngineConfig(model=str(smollm2_gguf_path), dtype="float32", num_kv_blocks=64, max_loras=2, max_cpu_loras=2,
                          adapter_store=str(store))
    engine = LLMEngine(config, model=smollm2_fp32, tokenizer=smollm2_tokenizer)
    settings = ServerSettings(worker_id=f"lora-{uuid.uuid4().hex[:8]}", redis_url=os.environ["REDIS_URL"],
                              max_loras=2, heartbeat_interval_s=0.2)
    with serve_in_thread(create_app(engine, settings)) as base:
        client = openai.OpenAI(base_url=f"{base}/v1", api_key="x", max_retries=0, timeout=120)
        yield client, engine, store, settings.worker_id
        client.close()


def _resident(worker_id: str) -> list[str] | None:
    r = redis.Redis.from_url(os.environ["REDIS_URL"])
    try:
        raw = r.get(worker_key(worker_id))
    finally:
        r.close()
    return json.loads(raw)["resident_adapters"] if raw else None


def test_adapter_fetched_on_first_use_reported_resident_and_unknown_ones_are_404(lora_worker) -> None:
    client, engine, _store, worker_id = lora_worker
    assert [m.id for m in client.models.list()] == [MODEL]
    assert wait_until(lambda: _resident(worker_id) == [])

    def first_logprobs(model: str) -> list[float]:
        out = client.completions.create(model=model, prompt="The capital of France is", max_tokens=3, temperature=0,
                                        logprobs=0)
        assert out.model == model and out.usage.completion_tokens == 3
        return out.choices[0].logprobs.token_logprobs

    adapter_model = f"{MODEL}:{UID}"
    assert first_logprobs(adapter_model) != first_logprobs(MODEL)  # the adapter's weights were applied
    assert engine.lora_manager.num_disk_loads == 1
    assert [m.id for m in client.models.list()] == [MODEL, adapter_model]
    assert wait_until(lambda: _resident(worker_id) == [UID])

    for model in (f"{MODEL}:{'f' * 32}", f"{MODEL}:../{UID}", f"{MODEL}:", f"other-model:{UID}", UID):
        with pytest.raises(openai.NotFoundError) as info:
            client.chat.completions.create(model=model, messages=[{"role": "user", "content": "hi"}], max_tokens=1)
        assert info.value.code == "model_not_found", model


def _blocks_under(engine: LLMEngine, uid: str) -> int:
    return sum(b.adapter_id == uid for b in engine.scheduler.block_manager.blocks)


def test_deletion_message_ends_live_requests_drops_weights_and_prefix_blocks(lora_worker) -> None:
    client, engine, store, worker_id = lora_worker
    adapter_model = f"{MODEL}:{UID}"
    messages = [{"role": "user", "content": PROMPT}]
    client.chat.completions.create(model=adapter_model, messages=messages, max_tokens=1)
    assert _blocks_under(engine, UID) >= 2  # the prompt's full blocks, published under the adapter's hash chain

    stream = client.chat.completions.create(model=adapter_model, messages=messages, max_tokens=500, stream=True,
                                            extra_body={"ignore_eos": True})
    chunks = iter(stream)
    next(chunks)  # the role chunk: the request is in the engine
    shutil.rmtree(store / UID)  # the control plane deletes the files, then publishes (services.adapter_delete)
    r = redis.Redis.from_url(os.environ["REDIS_URL"])
    try:
        assert wait_until(lambda: r.publish(ADAPTERS_DELETED_CHANNEL, UID) >= 1), "the worker never subscribed"
    finally:
        r.close()
    with pytest.raises(openai.APIError, match="was deleted"):
        for _ in chunks:
            pass

    assert wait_until(lambda: engine.stats()["num_running"] == 0 and _resident(worker_id) == [])
    assert _blocks_under(engine, UID) == 0 and UID not in engine.lora_manager.slot_uids
    with pytest.raises(openai.NotFoundError) as info:
        client.chat.completions.create(model=adapter_model, messages=messages, max_tokens=1)
    assert info.value.code == "model_not_found"
    reply = client.chat.completions.create(model=MODEL, messages=messages, max_tokens=2)  # the worker is fine
    assert reply.usage.completion_tokens == 2


def test_cli_adapter_flags_reach_the_engine_config(tmp_path: Path) -> None:
    args = parse_args(["--model", "m.gguf", "--adapter-store", str(tmp_path), "--max-loras", "3",
                       "--max-cpu-loras", "9", "--max-lora-rank", "32"])
    config = engine_config(args)
    assert (config.adapter_store, config.max_loras, config.max_cpu_loras, config.max_lora_rank) == (
        str(tmp_path), 3, 9, 32)
    assert engine_config(parse_args(["--model", "m.gguf"])).adapter_store in (None, os.environ.get(
        "HEARTH_ADAPTER_STORE"))
    with pytest.raises(SystemExit):
        parse_args(["--model", "m.gguf", "--max-loras", "4", "--max-cpu-loras", "2"])
