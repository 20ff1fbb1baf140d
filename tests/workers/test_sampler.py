"""Sampler unit tests on synthetic logits (the model is the boundary here; the engine tests use the real one)."""

import math

import torch

from workers.engine.sampler import Sampler
from workers.engine.sampling_params import SamplingParams
from workers.engine.sequence import Sequence

V = 50


def seq(prompt: list[int] | None = None, outputs: list[int] | None = None, index: int = 0, **kw: object) -> Sequence:
    params = SamplingParams(**kw)  # type: ignore[arg-type]
    s = Sequence(index, "r", index, prompt or [1, 2, 3], params, max_tokens=16)
    s.token_ids += outputs or []
    return s


def logits(rows: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(rows, V, generator=torch.Generator().manual_seed(seed)) * 3


def test_greedy_is_argmax() -> None:
    x = logits(4)
    out = Sampler(V, seed=0)(x.clone(), [seq(temperature=0) for _ in range(4)])
    assert out.token_ids == x.argmax(-1).tolist() and out.logprobs is None


def test_seeded_sampling_is_reproducible_and_batch_independent() -> None:
    x = logits(1, seed=3)
    alone = [Sampler(V, seed=0)(x.clone(), [s]).token_ids[0] for s in [seq(temperature=1.0, seed=42)]]
    a, b = seq(temperature=1.0, seed=42), seq(temperature=1.0, seed=42)
    first = [Sampler(V, seed=0)(x.clone(), [a]).token_ids[0] for _ in range(20)]
    # the same seed inside a batch with other (unseeded) rows, and a sampler with another engine seed
    batch = torch.cat([logits(2, seed=9), x])
    second = [Sampler(V, seed=1)(batch.clone(), [seq(temperature=1.0), seq(temperature=0.5), b]).token_ids[2]
              for _ in range(20)]  # fmt: skip
    assert first == second and first[0] == alone[0]
    assert len(set(first)) > 1  # it does sample


def test_unseeded_sampling_follows_the_distribution() -> None:
    x = torch.tensor([[2.0, 1.0, 0.0] + [-30.0] * (V - 3)])
    sampler = Sampler(V, seed=0)
    draws = torch.tensor([sampler(x.clone(), [seq(temperature=1.0)]).token_ids[0] for _ in range(600)])
    freq = torch.bincount(draws, minlength=V)[:3].float() / 600
    expected = torch.softmax(torch.tensor([2.0, 1.0, 0.0]), -1)
    assert (freq - expected).abs().max() < 0.08  # fixed seed: deterministic, the bound is ~4 sigma


def test_top_k_top_p_min_p_restrict_the_support() -> None:
    x = logits(1, seed=5)
    order = x[0].argsort(descending=True).tolist()
    sampler = Sampler(V, seed=0)
    draws = {sampler(x.clone(), [seq(temperature=2.0, top_k=3)]).token_ids[0] for _ in range(200)}
    assert draws <= set(order[:3]) and len(draws) > 1
    assert {sampler(x.clone(), [seq(temperature=2.0, top_k=1)]).token_ids[0] for _ in range(20)} == {order[0]}
    assert {sampler(x.clone(), [seq(temperature=1.0, top_p=1e-6)]).token_ids[0] for _ in range(20)} == {order[0]}
    probs = torch.softmax(x[0], -1)
    allowed = set((probs >= 0.2 * probs.max()).nonzero().flatten().tolist())
    draws = {sampler(x.clone(), [seq(temperature=1.0, min_p=0.2)]).token_ids[0] for _ in range(200)}
    assert draws <= allowed


def test_presence_frequency_and_repetition_penalties() -> None:
    x = torch.zeros(1, V)
    x[0, 5], x[0, 6], x[0, 7] = 3.0, 2.9, 2.8
    sampler = Sampler(V, seed=0)
    assert sampler(x.clone(), [seq(temperature=0, outputs=[5])]).token_ids == [5]
    assert sampler(x.clone(), [seq(temperature=0, outputs=[5], presence_penalty=0.5)]).token_ids == [6]
    # frequency scales with the count: 5 twice (-0.4), 6 three times (-0.6)
    assert sampler(x.clone(), [seq(temperature=0, outputs=[5, 5, 6, 6, 6], frequency_penalty=0.2)]).token_ids == [7]
    # repetition penalty reaches prompt tokens too (as in vLLM/HF): 5 in the prompt, 3.0/1.2 = 2.5 < 2.9
    assert sampler(x.clone(), [seq(temperature=0, prompt=[5], repetition_penalty=1.2)]).token_ids == [6]
    # rows without penalties in the same batch are untouched
    out = sampler(x.repeat(2, 1), [seq(temperature=0, outputs=[5], presence_penalty=2.0), seq(temperature=0)])
    assert out.token_ids == [6, 5]


def test_logit_bias() -> None:
    x = logits(2, seed=1)
    out = Sampler(V, seed=0)(x.clone(), [seq(temperature=0, logit_bias={11: 100.0}), seq(temperature=0)])
    assert out.token_ids == [11, x[1].argmax().item()]
    banned = x[0].argmax().item()
    out = Sampler(V, seed=0)(x.clone(), [seq(temperature=0, logit_bias={banned: -100.0})])
    assert out.token_ids[0] != banned


def test_logprobs_are_proper() -> None:
    x = logits(3, seed=2)
    seqs = [seq(temperature=0, logprobs=True, top_logprobs=5), seq(temperature=0), seq(temperature=1.0, logprobs=True)]
    out = Sampler(V, seed=0)(x.clone(), seqs)
    assert out.logprobs is not None and out.logprobs[1] is None
    lp = out.logprobs[0]
    assert lp is not None and lp.token_id == out.token_ids[0]
    assert lp.top[0] == (lp.token_id, lp.logprob)  # greedy: the chosen token is the top-1
    assert [v for _, v in lp.top] == sorted((v for _, v in lp.top), reverse=True) and len(lp.top) == 5
    assert sum(math.exp(v) for _, v in lp.top) <= 1.0 + 1e-6
    assert abs(lp.logprob - torch.log_softmax(x[0], -1).max().item()) < 1e-5
    sampled = out.logprobs[2]
    assert sampled is not None and sampled.top == []
    assert abs(sampled.logprob - torch.log_softmax(x[2], -1)[out.token_ids[2]].item()) < 1e-5
