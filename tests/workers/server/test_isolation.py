"""Tenant isolation inside one worker (real engine on SmolLM2, real app, the openai SDK as client): a request that
makes the engine step raise fails alone while another account's streams complete, and the prefix cache is keyed by
the account the gateway names in x-hearth-account-id."""

import threading
from collections.abc import Iterator

import openai
import pytest

from contracts import ACCOUNT_ID_HEADER
from tests.workers.server._serve import MODEL, serve_in_thread, wait_until
from workers.engine.config import EngineConfig
from workers.engine.llm_engine import LLMEngine
from workers.engine.scheduler import ScheduledBatch
from workers.server.app import ServerSettings, create_app

pytestmark = pytest.mark.slow
POISON = [2, 48999, 48998, 48997]  # a completion prompt no chat template writes: the injected fault keys on it
PROMPT = ("You are a careful assistant for a small bakery. Answer in one short sentence, politely, and never mention "
          "prices unless asked. The bakery opens at seven, closes at six, and bakes sourdough on Tuesdays. ")


@pytest.fixture
def served(smollm2_fp32, smollm2_tokenizer, smollm2_gguf_path, torch_one_thread) -> Iterator[tuple[str, LLMEngine]]:
    config = EngineConfig(model=str(smollm2_gguf_path), dtype="float32", num_kv_blocks=128)
    engine = LLMEngine(config, model=smollm2_fp32, tokenizer=smollm2_tokenizer)
    with serve_in_thread(create_app(engine, ServerSettings())) as base:
        yield base, engine


def _client(base: str, account: str | None) -> openai.OpenAI:
    headers = {ACCOUNT_ID_HEADER: account} if account else None
    return openai.OpenAI(base_url=f"{base}/v1", api_key="x", max_retries=0, timeout=180, default_headers=headers)


def test_a_request_that_breaks_the_step_fails_alone(served, monkeypatch) -> None:
    base, engine = served
    run = engine.model_runner.run
    poisoned_steps: list[int] = []

    def faulty_run(batch: ScheduledBatch):  # the test hook: a sequence that makes any step it is in raise
        if any(s.token_ids[: len(POISON)] == POISON for s in batch.seqs):
            poisoned_steps.append(len(batch.seqs))
            raise RuntimeError("injected fault")
        return run(batch)

    monkeypatch.setattr(engine.model_runner, "run", faulty_run)
    healthy = _client(base, "acct-b")
    started = threading.Barrier(6, timeout=120)
    results: dict[int, tuple[str, int, str | None]] = {}
    errors: list[BaseException] = []

    def stream(i: int) -> None:
        try:
            chunks = healthy.chat.completions.create(
                model=MODEL, messages=[{"role": "user", "content": f"Count to {i + 3}."}], max_tokens=24,
                stream=True, stream_options={"include_usage": True}, extra_body={"ignore_eos": True})
            text, reason, usage, waited = [], None, 0, False
            for chunk in chunks:
                for c in chunk.choices:
                    text.append(c.delta.content or "")
                    reason = c.finish_reason or reason
                if chunk.choices and chunk.choices[0].delta.content and not waited:
                    waited = True
                    started.wait()  # all five are decoding before the poisoned request arrives
                if chunk.usage:
                    usage = chunk.usage.completion_tokens
            results[i] = ("".join(text), usage, reason)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=stream, args=(i,)) for i in range(5)]
    for t in threads:
        t.start()
    started.wait()
    with pytest.raises(openai.APIError, match="engine failed"):
        for _ in _client(base, "acct-a").completions.create(model=MODEL, prompt=POISON, max_tokens=8, stream=True):
            pass
    for t in threads:
        t.join(180)
    assert not errors, errors
    assert poisoned_steps and max(poisoned_steps) > 1  # it shared a batch with the healthy streams
    assert sorted(results) == [0, 1, 2, 3, 4]
    assert all(usage == 24 and reason == "length" and text for text, usage, reason in results.values())
    assert wait_until(lambda: engine.stats()["num_running"] == 0)
    reply = healthy.completions.create(model=MODEL, prompt="Hello", max_tokens=2)  # the worker still serves
    assert reply.usage.completion_tokens == 2


def test_the_prefix_cache_is_keyed_by_account(served) -> None:
    base, engine = served

    def cached(account: str | None) -> int:
        out = _client(base, account).completions.create(model=MODEL, prompt=PROMPT, max_tokens=1, temperature=0)
        assert out.usage.prompt_tokens > 32
        return out.usage.prompt_tokens_details.cached_tokens

    assert cached("acct-b") == 0
    assert cached("acct-a") == 0  # the same text from another account: nothing cached, nothing revealed
    assert cached(None) == 0  # no account named: the worker's own namespace
    warm = cached("acct-a")
    assert warm >= 32 and warm == cached("acct-b")  # within an account caching is unchanged
