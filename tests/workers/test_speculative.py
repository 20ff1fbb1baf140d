"""Speculative decoding in the real engine on SmolLM2 (fp32, one thread): greedy output with drafts (a `prediction`,
prompt lookup) is token for token the output without, alone and in a batch mixing speculative, plain, adapter and
JSON-schema requests across preemption; rejected draft tokens never reach the prefix cache; prediction counts. At
temperature > 0 (a tiny random model) a chi-square test finds the token distribution unchanged by drafts."""

import json
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import jsonschema
import pytest
import torch

from workers.engine.config import EngineConfig
from workers.engine.llm_engine import LLMEngine
from workers.engine.outputs import CompletionDelta
from workers.engine.sampling_params import SamplingParams
from workers.engine.speculative import Verifier
from workers.lora.synthetic import write_random_adapter
from workers.model_config import ModelConfig
from workers.models.llama import LlamaForCausalLM
from workers.structured.compiler import GrammarCompiler
from workers.structured.formats import response_format_spec
from workers.tokenizer import Tokenizer

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("torch_one_thread")]

ADAPTER = "0" * 31 + "5"
SCHEMA = {"type": "object", "properties": {"name": {"type": "string", "maxLength": 10},
                                           "age": {"type": "integer", "minimum": 0, "maximum": 120}},
          "required": ["name", "age"], "additionalProperties": False}
MakeEngine = Callable[..., LLMEngine]
Job = tuple[list[int], SamplingParams, str | None]


@pytest.fixture(scope="module")
def make_engine(smollm2_gguf_path: Path, smollm2_fp32: LlamaForCausalLM, smollm2_tokenizer: Tokenizer,
                tmp_path_factory: pytest.TempPathFactory) -> MakeEngine:  # fmt: skip
    store = tmp_path_factory.mktemp("adapters")
    write_random_adapter(store / ADAPTER, smollm2_fp32.config, rank=8, seed=5, b_std=0.05)

    def make(**kw: object) -> LLMEngine:
        kw.setdefault("num_kv_blocks", 96)
        cfg = EngineConfig(model=str(smollm2_gguf_path), dtype="float32", adapter_store=str(store), **kw)  # type: ignore[arg-type]
        return LLMEngine(cfg, model=smollm2_fp32, tokenizer=smollm2_tokenizer)

    return make


@pytest.fixture(scope="module")
def grammar(smollm2_tokenizer: Tokenizer, smollm2_fp32: LlamaForCausalLM):
    compiler = GrammarCompiler(smollm2_tokenizer, smollm2_fp32.config.vocab_size, smollm2_tokenizer.eos_token_ids)
    yield compiler.compile(response_format_spec({"type": "json_schema", "json_schema": {"name": "p", "schema": SCHEMA}}))
    compiler.close()


def _chat(tok: Tokenizer, text: str) -> list[int]:
    return tok.encode(tok.apply_chat_template([{"role": "user", "content": text}]), add_special_tokens=False)


def _perturb(ids: list[int]) -> list[int]:
    """A prediction that is right for 6 tokens, wrong for 3 (dropped and replaced), then right again: verification
    must reject, and the draft re-synchronise further on."""
    return ids[:6] + [1017, 2020, 3030] + ids[9:]


def _run(engine: LLMEngine, jobs: list[Job]) -> tuple[list[list[int]], dict[str, CompletionDelta], int]:
    """-> output ids per job, each request's last delta, and the number of steps."""
    for i, (prompt, params, adapter) in enumerate(jobs):
        engine.add_request(f"j{i}", prompt, params, adapter)
    outs: dict[str, list[int]] = {f"j{i}": [] for i in range(len(jobs))}
    last: dict[str, CompletionDelta] = {}
    steps = 0
    while engine.has_unfinished_requests():
        steps += 1
        for d in engine.step():
            outs[d.request_id] += d.new_token_ids
            last[d.request_id] = d
    return [outs[f"j{i}"] for i in range(len(jobs))], last, steps


def _with(params: SamplingParams, **kw: object) -> SamplingParams:
    fields = {f: getattr(params, f) for f in params.__slots__}  # type: ignore[attr-defined]
    return SamplingParams(**{**fields, **kw})


def test_mixed_batch_with_predictions_matches_plain_decoding_across_preemption(
    make_engine: MakeEngine, smollm2_tokenizer: Tokenizer, grammar: object
) -> None:
    tok = smollm2_tokenizer
    p0 = _chat(tok, "Write a Python function that returns the sum of a list of numbers.")
    p1 = _chat(tok, "List three fruits and their colours.")
    p2 = _chat(tok, "Describe a person as JSON.")
    greedy = SamplingParams(temperature=0, max_tokens=40, ignore_eos=True)
    constrained = SamplingParams(temperature=0, max_tokens=60, grammar=grammar)
    plain_jobs: list[Job] = [(p0, greedy, None), (p1, greedy, None), (p1, greedy, ADAPTER), (p2, constrained, None),
                             (p0, greedy, ADAPTER)]  # fmt: skip
    # References: speculation off, batched (batching never changes greedy tokens: tests/workers/test_engine.py)
    off = make_engine(num_speculative_tokens=0)
    refs = _run(off, plain_jobs)[0]
    jsonschema.validate(json.loads(tok.decode(refs[3], skip_special_tokens=True)), SCHEMA)
    # A stop string inside what the prediction drafts: speculation must cut there too (and drop kept tokens past it)
    stop_word = tok.decode(refs[1][14:16], skip_special_tokens=True).strip() or "the"
    stop_ref = _run(off, [(p1, _with(greedy, stop=[stop_word]), None)])[0][0]
    assert len(stop_ref) < len(refs[1])

    jobs: list[Job] = [
        (p0, _with(greedy, prediction=_perturb(refs[0])), None),  # prediction draft
        (p1, greedy, None),  # plain (prompt lookup may draft)
        (p1, _with(greedy, prediction=refs[2][:20]), ADAPTER),  # prediction + adapter; runs out of prediction
        (p2, _with(constrained, prediction=_perturb(refs[3])), None),  # JSON schema + prediction (junk: forbidden)
        (p0, greedy, ADAPTER),
        (p1, _with(greedy, prediction=refs[1], stop=[stop_word]), None),
    ]
    expected = refs + [stop_ref]
    outs, last, _ = _run(make_engine(), jobs)
    assert outs == expected
    assert last["j0"].num_accepted_prediction_tokens >= 25 and last["j0"].num_rejected_prediction_tokens >= 1
    assert last["j3"].num_accepted_prediction_tokens >= 10 and last["j3"].num_rejected_prediction_tokens >= 1
    assert last["j2"].num_accepted_prediction_tokens >= 15
    assert last["j1"].num_accepted_prediction_tokens == last["j1"].num_rejected_prediction_tokens == 0
    assert last["j5"].finish_reason == "stop" and last["j5"].num_output_tokens == len(stop_ref)

    # 4-token blocks and a pool that holds the longest job and a half: several are admitted, then they grow into
    # each other and the newest is preempted (recomputed later, with its drafts and grammar state)
    need = [-(-(len(p) + len(out) + 1) // 4) for (p, _, _), out in zip(jobs, expected, strict=True)]
    engine = make_engine(block_size=4, num_kv_blocks=max(need) * 3 // 2, max_num_seqs=8)
    outs, last, _ = _run(engine, jobs)
    assert outs == expected
    stats = engine.stats()
    assert stats["num_preemptions"] > 0
    assert stats["num_free_blocks"] == stats["num_total_blocks"]
    assert sum(d.num_accepted_prediction_tokens for d in last.values()) >= 20


def test_prediction_alone_takes_fewer_steps(make_engine: MakeEngine, smollm2_tokenizer: Tokenizer) -> None:
    prompt = _chat(smollm2_tokenizer, "Write a Python function that checks whether a number is prime.")
    greedy = SamplingParams(temperature=0, max_tokens=48, ignore_eos=True)
    ref = _run(make_engine(num_speculative_tokens=0), [(prompt, greedy, None)])[0][0]
    outs, last, steps = _run(make_engine(), [(prompt, _with(greedy, prediction=_perturb(ref)), None)])
    assert outs[0] == ref
    assert steps <= 12, f"{steps} steps for 48 tokens"  # prefill + ~2 steps per 16-token draft, + the mismatch
    assert last["j0"].num_accepted_prediction_tokens >= len(ref) - 14  # all but the edit, the re-sync, bonus tokens


def test_prompt_lookup_drafts_and_matches_plain_decoding(make_engine: MakeEngine, smollm2_tokenizer: Tokenizer) -> None:
    text = "The quick brown fox jumps over the lazy dog while the cat sleeps on the warm windowsill all afternoon."
    prompt = _chat(smollm2_tokenizer, f"Repeat this sentence exactly, twice: {text}")
    greedy = SamplingParams(temperature=0, max_tokens=40, ignore_eos=True)
    ref, _, plain_steps = _run(make_engine(num_speculative_tokens=0), [(prompt, greedy, None)])
    outs, last, steps = _run(make_engine(ngram_speculation=True), [(prompt, greedy, None)])
    assert outs == ref
    assert steps < plain_steps - 10, (steps, plain_steps)
    assert last["j0"].num_accepted_prediction_tokens == 0  # lookup drafts are not prediction tokens


def test_rejected_draft_tokens_never_reach_the_prefix_cache(make_engine: MakeEngine, smollm2_tokenizer: Tokenizer) -> None:
    prompt = _chat(smollm2_tokenizer, "Tell me a short story about a robot.")
    greedy = SamplingParams(temperature=0, max_tokens=36, ignore_eos=True)
    ref = _run(make_engine(num_speculative_tokens=0), [(prompt, greedy, None)])[0][0]
    # Every other drafted token wrong: many rejected slots, in blocks that later fill with the kept tokens
    noisy = [t if i % 3 else 4242 for i, t in enumerate(ref)]
    engine = make_engine(block_size=4)
    assert _run(engine, [(prompt, _with(greedy, prediction=noisy), None)])[0][0] == ref
    follow = prompt + ref + _chat(smollm2_tokenizer, "Now summarise it.")
    short = SamplingParams(temperature=0, max_tokens=12, ignore_eos=True)
    outs, last, _ = _run(engine, [(follow, short, None)])
    assert last["j0"].num_cached_tokens >= len(prompt) + len(ref) - 4  # the output's blocks were hit
    assert outs[0] == _run(make_engine(num_speculative_tokens=0, enable_prefix_caching=False),
                           [(follow, short, None)])[0][0]  # fmt: skip


# -- temperature > 0: the output distribution is the target's ------------------------------------------------------

TINY = ModelConfig(architecture="llama", vocab_size=24, hidden_size=32, intermediate_size=64, num_layers=2,
                   num_heads=4, num_kv_heads=2, head_dim=8, rope_theta=10000.0, rms_norm_eps=1e-5,
                   max_position_embeddings=128, tie_word_embeddings=False)  # fmt: skip
CHI2_P_MIN = 1e-3  # homogeneity is rejected below this p-value (with fixed seeds the test is deterministic)


class StandInTokenizer:
    eos_token_ids: list[int] = []

    def decode(self, ids: list[int], skip_special_tokens: bool = True) -> str:
        return "".join(f" {i}" for i in ids)


class FixedDraft:
    """A draft source that always proposes the same tokens: the verification rule is what is under test."""

    def __init__(self, ids: list[int]) -> None:
        self.ids = ids

    def propose(self, output: list[int], k: int) -> list[int]:
        return self.ids[:k]


@pytest.fixture(scope="module")
def tiny_model() -> LlamaForCausalLM:
    gen = torch.Generator().manual_seed(7)
    model = LlamaForCausalLM(TINY)
    for name, p in model.named_parameters():
        p.data.copy_(1.0 + 0.1 * torch.randn(p.shape, generator=gen) if "norm" in name
                     else 0.5 * torch.randn(p.shape, generator=gen))  # fmt: skip
    return model.eval()


def _samples(model: LlamaForCausalLM, draft: list[int] | None, num_requests: int = 100) -> list[list[int]]:
    cfg = EngineConfig(model="tiny", dtype="float32", num_kv_blocks=512, max_num_seqs=256,
                       num_speculative_tokens=0 if draft is None else 8, ngram_speculation=False)  # fmt: skip
    engine = LLMEngine(cfg, model=model, tokenizer=StandInTokenizer())  # type: ignore[arg-type]
    outs: dict[str, list[list[int]]] = {}
    for r in range(num_requests):
        params = SamplingParams(temperature=0.9, top_k=12, max_tokens=4, ignore_eos=True, n=16, seed=1000 * r,
                                prediction=[0] if draft else None)  # fmt: skip
        seqs = engine.new_request(f"r{r}", [3, 1, 4, 1, 5, 9, 2, 6], params)
        for seq in seqs:
            if draft is not None:
                assert seq.spec is not None
                seq.spec.prediction = FixedDraft(draft)  # type: ignore[assignment]
        engine.add(seqs)
        outs[f"r{r}"] = [[] for _ in range(16)]
    while engine.has_unfinished_requests():
        for d in engine.step():
            outs[d.request_id][d.index] += d.new_token_ids
    return [o for v in outs.values() for o in v]


def _chi2_p(a: list[int], b: list[int]) -> float:
    """Two-sample chi-square homogeneity test over token counts; bins with an expected count under 5 are pooled."""
    ca, cb = Counter(a), Counter(b)
    na, nb = len(a), len(b)
    big = [t for t in set(ca) | set(cb) if (ca[t] + cb[t]) * min(na, nb) / (na + nb) >= 5]
    rows = [(ca[t], cb[t]) for t in big]
    rows.append((na - sum(r[0] for r in rows), nb - sum(r[1] for r in rows)))
    rows = [r for r in rows if sum(r) > 0]
    stat = 0.0
    for x, y in rows:
        for obs, n in ((x, na), (y, nb)):
            exp = (x + y) * n / (na + nb)
            stat += (obs - exp) ** 2 / exp
    df = len(rows) - 1
    return float(torch.special.gammaincc(torch.tensor(df / 2), torch.tensor(stat / 2)))


def test_sampling_with_drafts_keeps_the_distribution(tiny_model: LlamaForCausalLM, monkeypatch) -> None:
    # 1600 samples of 4 tokens per arm. Token 1 comes from the prefill (no draft); tokens 2-4 from verification
    # with a 3-token draft of likely tokens, so some drafts are kept and some rejected.
    plain = _samples(tiny_model, None)
    greedy_like = Counter(o[1] for o in plain).most_common(3)
    draft = [t for t, _ in greedy_like]
    spec = _samples(tiny_model, draft)
    kept = sum(o[1] == draft[0] for o in spec) / len(spec)
    assert 0.05 < kept < 0.95, "the draft must be kept sometimes and rejected sometimes for the test to mean much"
    for pos in (1, 2, 3):
        p = _chi2_p([o[pos] for o in plain], [o[pos] for o in spec])
        assert p > CHI2_P_MIN, f"token {pos + 1}: p = {p:.2e}"
    pairs = lambda outs: [o[1] * 100 + o[2] for o in outs]  # noqa: E731 - the joint of tokens 2 and 3
    assert _chi2_p(pairs(plain), pairs(spec)) > CHI2_P_MIN

    # The test has power: a verifier that keeps every draft token (a wrong rule) is refused.
    monkeypatch.setattr(Verifier, "_uniform", lambda self, seq: 0.0)
    wrong = _samples(tiny_model, draft, num_requests=20)
    assert _chi2_p([o[1] for o in plain], [o[1] for o in wrong]) < CHI2_P_MIN
