"""Verification of draft tokens: one step scored 1 + k positions of a sequence; keep the longest valid prefix of the
draft and one token sampled from the target model.

Row j (0..k) of a sequence holds the target's logits after its last token and draft[:j]. They go through the same
steering as the sampler's rows (logit_bias, then the grammar's mask at the matcher state after draft[:j]; requests
with penalties or logprobs never speculate), then:

Greedy (temperature 0): keep draft[j] while it equals row j's argmax; the first row that disagrees (or row k when
all are kept) gives the next token, its argmax. The output is token for token what plain decoding gives.

Sampling (temperature > 0): speculative sampling (Leviathan et al. 2023; Chen et al. 2023) with a draft distribution
q. Our drafts are a point mass, q = δ_t on the proposed token t, so the rule "accept with probability
min(1, p(t)/q(t)), else sample from norm(max(0, p - q)))" becomes:
  - accept t with probability p(t) (q(t) = 1);
  - on rejection, max(0, p - δ_t) is p on every x != t and max(0, p(t) - 1) = 0 at t: sample from p with t removed,
    renormalised by 1 - p(t).
Then P(next = t) = p(t), and for x != t, P(next = x) = (1 - p(t)) * p(x) / (1 - p(t)) = p(x): exactly p, whatever
the draft. By induction over the rows every kept token and the final sampled one follow the target's distribution
given the tokens before them, so the output's distribution is that of plain sampling. p is the distribution the
sampler would draw from (after temperature and top-k/top-p/min-p), so filtered tokens are never kept.
"""

from dataclasses import dataclass

import torch
import xgrammar as xgr

import kernels
from workers.engine.sampler import apply_logit_bias
from workers.engine.sequence import Sequence


@dataclass(slots=True)
class Verdict:
    num_accepted: int  # draft tokens kept
    token_id: int  # the token sampled after them


class Verifier:
    def __init__(self, vocab_size: int, seed: int, device: torch.device) -> None:
        self.vocab_size = vocab_size
        self.device = device
        self.generator = torch.Generator(device).manual_seed(seed ^ 0x5EC)  # for sequences without their own seed

    def __call__(self, logits: torch.Tensor, seqs: list[Sequence], drafts: list[list[int]]) -> list[Verdict]:
        # logits: [R, V] with R = sum(1 + len(draft)): the rows of seqs[i] are contiguous, in position order
        logits = logits.float()
        sizes = [1 + len(d) for d in drafts]
        row_seqs = [s for s, n in zip(seqs, sizes, strict=True) for _ in range(n)]
        apply_logit_bias(logits, row_seqs)
        if any(s.grammar is not None for s in seqs):
            self._apply_grammar(logits, seqs, drafts)
        sampled = [s.params.temperature > 0 for s in row_seqs]
        probs = self._probs(logits, row_seqs, sampled) if any(sampled) else None
        greedy: list[int] = logits.argmax(dim=-1).tolist()
        verdicts: list[Verdict] = []
        row = 0
        for seq, draft in zip(seqs, drafts, strict=True):
            if seq.params.temperature > 0:
                assert probs is not None
                verdicts.append(self._sample(probs[row : row + len(draft) + 1], seq, draft))
            else:
                a = 0
                while a < len(draft) and draft[a] == greedy[row + a]:
                    a += 1
                verdicts.append(Verdict(a, greedy[row + a]))
            row += len(draft) + 1
        return verdicts

    def _apply_grammar(self, logits: torch.Tensor, seqs: list[Sequence], drafts: list[list[int]]) -> None:
        # Row j's mask is the matcher's after draft[:j]: walk the matcher over the draft, filling a row per position,
        # then roll it back (the scheduler advances it over the tokens actually kept). A draft token the grammar
        # forbids gets probability 0 in its own row, so verification rejects it: the draft ends there.
        bitmask = xgr.allocate_token_bitmask(logits.shape[0], self.vocab_size)  # [R, ceil(V / 32)] int32
        masked: list[int] = []
        row = 0
        for seq, draft in zip(seqs, drafts, strict=True):
            state = seq.grammar
            if state is not None:
                failed = state.failed
                for j in range(len(draft) + 1):
                    if state.is_terminated:
                        break  # the draft completed the grammar: the scheduler ends the output there
                    if state.fill(bitmask, row + j):
                        masked.append(row + j)
                        word = int(bitmask[row + j, draft[j] // 32]) if j < len(draft) else 0
                        if j < len(draft) and not (word >> (draft[j] % 32)) & 1:
                            break  # forbidden: rows after it are never read
                    if j < len(draft) and not state.accept(draft[j]):
                        break
                state.failed = failed  # walking the draft is no refusal of an appended token
                state.sync(seq.num_output_tokens)
            row += len(draft) + 1
        if masked:
            xgr.apply_token_bitmask_inplace(logits, bitmask.to(logits.device), vocab_size=self.vocab_size,
                                            indices=masked)  # fmt: skip
            if logits.shape[1] > self.vocab_size:
                logits[masked, self.vocab_size :] = float("-inf")

    def _probs(self, logits: torch.Tensor, row_seqs: list[Sequence], sampled: list[bool]) -> torch.Tensor:
        # -> [R, V] the distribution the sampler draws from (rows of greedy sequences are unused)
        temps = torch.tensor([s.params.temperature if ok else 1.0 for s, ok in zip(row_seqs, sampled, strict=True)],
                             dtype=torch.float32, device=logits.device)  # fmt: skip
        scaled = logits / temps[:, None]
        if any(s.params.top_k > 0 or s.params.top_p < 1.0 or s.params.min_p > 0.0 for s in row_seqs):
            dev = logits.device
            top_k = torch.tensor([s.params.top_k for s in row_seqs], dtype=torch.int64, device=dev)
            top_p = torch.tensor([s.params.top_p for s in row_seqs], dtype=torch.float32, device=dev)
            min_p = torch.tensor([s.params.min_p for s in row_seqs], dtype=torch.float32, device=dev)
            scaled = kernels.top_k_top_p_min_p_mask(scaled, top_k, top_p, min_p)
        return torch.softmax(scaled, dim=-1)

    def _uniform(self, seq: Sequence) -> float:
        if seq.generator is not None:
            return float(torch.rand(1, generator=seq.generator))
        return float(torch.rand(1, generator=self.generator, device=self.device))

    def _sample(self, probs: torch.Tensor, seq: Sequence, draft: list[int]) -> Verdict:
        # probs: [1 + k, V] of one sequence
        dev = probs.device
        p_draft: list[float] = probs[torch.arange(len(draft), device=dev), torch.tensor(draft, dtype=torch.int64,
                                                                                      device=dev)].tolist()
        for j, t in enumerate(draft):
            if self._uniform(seq) < p_draft[j]:
                continue  # kept with probability p(t)
            residual = probs[j].clone()
            residual[t] = 0.0  # p with t removed; _draw renormalises
            return Verdict(j, self._draw(residual, seq))
        return Verdict(len(draft), self._draw(probs[len(draft)], seq))

    def _draw(self, p: torch.Tensor, seq: Sequence) -> int:
        # inverse CDF over an unnormalised [V] distribution; never a zero-probability token
        cdf = p.cumsum(0)
        u = self._uniform(seq) * float(cdf[-1])
        tok = int(torch.searchsorted(cdf, torch.tensor([u], device=cdf.device), right=True).clamp_(max=p.shape[0] - 1))
        return tok if float(p[tok]) > 0 else int(p.argmax())
