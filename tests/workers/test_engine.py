"""LLMEngine on the real SmolLM2 (fp32, for exactness): batching, prefix caching, chunked prefill and preemption
must not change greedy tokens; seeded sampling, stop strings, n > 1, logprobs and bad input."""

import math
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from workers.engine.config import EngineConfig
from workers.engine.llm_engine import LLMEngine
from workers.engine.outputs import CompletionDelta
from workers.engine.sampling_params import InvalidRequestError, SamplingParams
from workers.models.llama import LlamaForCausalLM
from workers.tokenizer import Tokenizer

pytestmark = pytest.mark.slow

QUESTIONS = [
    "What is the capital of France?",
    "Write a haiku about the sea, then explain why the sea is salty in two sentences.",
    "List three fruits.",
]
GREEDY = SamplingParams(temperature=0, max_tokens=10, ignore_eos=True)  # 10: the preemption test relies on it

MakeEngine = Callable[..., LLMEngine]


@pytest.fixture(scope="module", autouse=True)
def one_thread() -> object:
    # Results don't depend on the thread count; on a shared 2-core box two spinning OpenMP threads made each step
    # 5-15x slower than one (measured: median decode step 166 ms at 1 thread vs 2.6 s at 2 under load 8).
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def make_engine(smollm2_gguf_path: Path, smollm2_fp32: LlamaForCausalLM, smollm2_tokenizer: Tokenizer) -> MakeEngine:
    def make(**kw: object) -> LLMEngine:
        kw.setdefault("num_kv_blocks", 64)
        cfg = EngineConfig(model=str(smollm2_gguf_path), dtype="float32", **kw)  # type: ignore[arg-type]
        return LLMEngine(cfg, model=smollm2_fp32, tokenizer=smollm2_tokenizer)

    return make


@pytest.fixture(scope="module")
def prompts(smollm2_tokenizer: Tokenizer) -> list[list[int]]:
    tok = smollm2_tokenizer
    return [tok.encode(tok.apply_chat_template([{"role": "user", "content": q}]), add_special_tokens=False)
            for q in QUESTIONS]  # fmt: skip


@pytest.fixture(scope="module")
def alone(make_engine: MakeEngine, prompts: list[list[int]]) -> list[list[int]]:
    """Greedy tokens of each prompt run by itself, no prefix cache: the reference every variant must match."""
    engine = make_engine(enable_prefix_caching=False)
    return [engine.generate([p], GREEDY)[0][0] for p in prompts]


def run(engine: LLMEngine, request_id: str, prompt: list[int], params: SamplingParams) -> list[CompletionDelta]:
    engine.add_request(request_id, prompt, params)
    deltas: list[CompletionDelta] = []
    while engine.has_unfinished_requests():
        deltas += [d for d in engine.step() if d.request_id == request_id]
    return deltas


def test_batched_different_lengths_match_each_alone(
    make_engine: MakeEngine, prompts: list[list[int]], alone: list[list[int]]
) -> None:
    assert len({len(p) for p in prompts}) == len(prompts)
    engine = make_engine(enable_prefix_caching=False)
    assert [o[0] for o in engine.generate(prompts, GREEDY)] == alone
    assert engine.stats()["num_free_blocks"] == engine.stats()["num_total_blocks"]


def test_prefix_cache_hit_gives_the_same_tokens(
    make_engine: MakeEngine, prompts: list[list[int]], alone: list[list[int]]
) -> None:
    engine = make_engine(enable_prefix_caching=True)
    first = run(engine, "a", prompts[1], GREEDY)
    second = run(engine, "b", prompts[1], GREEDY)
    assert first[-1].num_cached_tokens == 0
    assert second[-1].num_cached_tokens == (len(prompts[1]) - 1) // 16 * 16 > 0
    assert engine.stats()["prefix_cache_hits"] == second[-1].num_cached_tokens
    assert [t for d in second for t in d.new_token_ids] == alone[1]


def test_chunked_prefill_gives_the_same_tokens(
    make_engine: MakeEngine, prompts: list[list[int]], alone: list[list[int]]
) -> None:
    engine = make_engine(max_num_batched_tokens=7, enable_prefix_caching=False)
    engine.add_request("c", prompts[1], GREEDY)
    steps_to_first_token = 0
    while not engine.step():
        steps_to_first_token += 1
    assert steps_to_first_token == (len(prompts[1]) - 1) // 7
    assert engine.generate([prompts[1]], GREEDY)[0][0] == alone[1]


def test_preempted_sequence_recomputes_the_same_tokens(
    make_engine: MakeEngine, prompts: list[list[int]], alone: list[list[int]]
) -> None:
    # 4-token blocks and a pool that holds exactly the first two prompts: both are admitted, and within 4 tokens
    # both need a block that isn't there. The longest sequence alone still fits.
    blocks = -(-len(prompts[0]) // 4) + -(-len(prompts[1]) // 4)
    assert blocks * 4 >= max(len(p) for p in prompts) + 10
    engine = make_engine(block_size=4, num_kv_blocks=blocks, enable_prefix_caching=False)
    outs = engine.generate(prompts, GREEDY)
    assert engine.stats()["num_preemptions"] > 0
    assert [o[0] for o in outs] == alone


def test_seeded_sampling_is_reproducible(make_engine: MakeEngine, prompts: list[list[int]]) -> None:
    params = SamplingParams(temperature=1.0, top_p=0.95, seed=1234, max_tokens=8, ignore_eos=True)
    engine = make_engine()
    once = engine.generate([prompts[0]], params)[0][0]
    # again, now batched beside unseeded requests
    again = engine.generate([prompts[2], prompts[0], prompts[1]], [SamplingParams(max_tokens=8), params, params])
    assert again[1][0] == once
    other = engine.generate([prompts[0]], SamplingParams(temperature=1.0, seed=99, max_tokens=8, ignore_eos=True))
    assert other[0][0] != once


def test_stop_strings_are_cut_and_never_streamed(
    make_engine: MakeEngine, smollm2_tokenizer: Tokenizer, prompts: list[list[int]]
) -> None:
    engine = make_engine()
    params = SamplingParams(temperature=0, max_tokens=16)
    full = "".join(d.text for d in run(engine, "full", prompts[1], params))
    stop = full[len(full) // 2 : len(full) // 2 + 3]
    assert len(full) > 10 and stop.strip()
    deltas = run(engine, "stopped", prompts[1], SamplingParams(temperature=0, max_tokens=16, stop=[stop, "zzzz"]))
    assert "".join(d.text for d in deltas) == full[: full.index(stop)]
    assert deltas[-1].finish_reason == "stop" and deltas[-1].finished
    assert all(stop not in d.text for d in deltas)
    assert engine.stats()["num_free_blocks"] == engine.stats()["num_total_blocks"]


def test_n2_shares_prefix_blocks(make_engine: MakeEngine, prompts: list[list[int]], alone: list[list[int]]) -> None:
    engine = make_engine(enable_prefix_caching=False)
    engine.add_request("n2", prompts[1], SamplingParams(n=2, temperature=0, max_tokens=10, ignore_eos=True))
    first = engine.step()  # the leader's prefill and first token; the second choice forks from it
    assert [d.index for d in first] == [0]
    leader, child = engine.scheduler.running
    shared = (len(prompts[1]) - 1) // 16
    assert shared > 0 and child.block_table[:shared] == leader.block_table[:shared]
    assert all(engine.scheduler.block_manager.blocks[b].ref_count == 2 for b in leader.block_table[:shared])
    outs: dict[int, list[int]] = {0: first[0].new_token_ids, 1: []}
    while engine.has_unfinished_requests():
        for d in engine.step():
            outs[d.index] += d.new_token_ids
    assert outs[0] == outs[1] == alone[1]  # greedy: both choices are the plain run


def test_logprobs_are_proper(make_engine: MakeEngine, prompts: list[list[int]], alone: list[list[int]]) -> None:
    engine = make_engine()
    deltas = run(engine, "lp", prompts[0], SamplingParams(temperature=0, max_tokens=10, ignore_eos=True,
                                                          logprobs=True, top_logprobs=5))  # fmt: skip
    lps = [lp for d in deltas for lp in d.logprobs or []]
    assert [lp.token_id for lp in lps] == alone[0]
    for lp in lps:
        assert lp.top[0] == (lp.token_id, lp.logprob) and lp.logprob <= 0
        assert sum(math.exp(v) for _, v in lp.top) <= 1 + 1e-5


def test_bad_requests_are_refused(make_engine: MakeEngine, prompts: list[list[int]]) -> None:
    engine = make_engine(max_model_len=64)
    with pytest.raises(InvalidRequestError) as e:
        engine.add_request("long", list(range(64)), SamplingParams())
    assert e.value.code == "context_length_exceeded"
    with pytest.raises(InvalidRequestError) as e:
        engine.add_request("max", list(range(60)), SamplingParams(max_tokens=5))
    assert e.value.param == "max_tokens"
    for bad in ([], [engine.vocab_size]):
        with pytest.raises(InvalidRequestError):
            engine.add_request("bad", bad, SamplingParams())
    with pytest.raises(InvalidRequestError):
        engine.add_request("n", [1, 2], SamplingParams(n=0))
    engine.add_request("dup", [1, 2], SamplingParams(max_tokens=1))
    with pytest.raises(InvalidRequestError):
        engine.add_request("dup", [1, 2], SamplingParams(max_tokens=1))
    # max_tokens None fills the context
    deltas = run(engine, "fill", (prompts[1] + prompts[0])[:60], SamplingParams(temperature=0, ignore_eos=True))
    assert deltas[-1].num_output_tokens == 4 and deltas[-1].finish_reason == "length"


def test_abort_frees_blocks_and_reports(make_engine: MakeEngine, prompts: list[list[int]]) -> None:
    engine = make_engine()
    engine.add_request("x", prompts[1], SamplingParams(n=2, temperature=0, max_tokens=50))
    engine.step()
    engine.step()
    deltas = engine.abort_request("x")
    assert sorted((d.index, d.finish_reason) for d in deltas) == [(0, "abort"), (1, "abort")]
    assert not engine.has_unfinished_requests()
    assert engine.stats()["num_free_blocks"] == engine.stats()["num_total_blocks"]
