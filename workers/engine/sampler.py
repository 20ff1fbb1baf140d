"""Logits -> next tokens for a batch of sequences, each with its own SamplingParams.

Order: repetition/presence/frequency penalties, logit_bias, grammar masks (constrained rows), (logprobs taken here), temperature,
top-k/top-p/min-p, then an inverse-CDF draw from the sequence's own generator when it has a seed. Every step is batched torch; Python loops only over the rows
that use a rare feature (penalties, logit_bias, seeds), never over the vocabulary.
"""

import torch

import kernels
from workers.engine.outputs import SamplerOutput, TokenLogprob
from workers.engine.sequence import Sequence
from workers.structured.matcher import GrammarMasker


class Sampler:
    def __init__(self, vocab_size: int, seed: int, device: torch.device | str = "cpu") -> None:
        self.vocab_size = vocab_size
        self.device = torch.device(device)
        self.generator = torch.Generator(self.device).manual_seed(seed)  # for sequences without a seed
        self.masker = GrammarMasker(vocab_size)  # constrained rows: -inf where the sequence's grammar forbids

    def __call__(self, logits: torch.Tensor, seqs: list[Sequence]) -> SamplerOutput:
        # logits: [N, V] fp32, one row per sampling sequence (V may exceed the tokenizer's vocab: padded rows)
        logits = logits.float()
        self._apply_penalties(logits, seqs)
        apply_logit_bias(logits, seqs)
        if any(s.grammar is not None for s in seqs):
            self.masker.apply(logits, [s.grammar for s in seqs])
        want_logprobs = [s.params.logprobs for s in seqs]
        # Logprobs are the log-softmax after penalties and logit_bias, before temperature and top-k/p: what the
        # model (as steered by the request) believes, independent of how the token is then drawn.
        logprobs = torch.log_softmax(logits, dim=-1) if any(want_logprobs) else None
        sample_rows = [i for i, s in enumerate(seqs) if s.params.temperature > 0]
        if len(sample_rows) == len(seqs):  # full-vocab passes cost ~3-20 ms each at [64, 49152]: no extra copies
            tokens = self._sample(seqs, logits)
        else:
            tokens = logits.argmax(dim=-1)
            if sample_rows:
                tokens[sample_rows] = self._sample([seqs[i] for i in sample_rows], logits[sample_rows])
        token_ids: list[int] = tokens.tolist()
        if logprobs is None:
            return SamplerOutput(token_ids)
        return SamplerOutput(token_ids, self._logprobs(logprobs, tokens, seqs, want_logprobs, token_ids))

    def _sample(self, seqs: list[Sequence], logits: torch.Tensor) -> torch.Tensor:
        # logits: [M, V] of the rows with temperature > 0, scaled in place (the caller is done with them) -> [M]
        temps = torch.tensor([s.params.temperature for s in seqs], dtype=torch.float32, device=logits.device)
        logits = logits.div_(temps[:, None])
        if any(s.params.top_k > 0 or s.params.top_p < 1.0 or s.params.min_p > 0.0 for s in seqs):
            top_k = torch.tensor([s.params.top_k for s in seqs], dtype=torch.int64, device=logits.device)
            top_p = torch.tensor([s.params.top_p for s in seqs], dtype=torch.float32, device=logits.device)
            min_p = torch.tensor([s.params.min_p for s in seqs], dtype=torch.float32, device=logits.device)
            logits = kernels.top_k_top_p_min_p_mask(logits, top_k, top_p, min_p)
        probs = torch.softmax(logits, dim=-1)
        # Inverse CDF: one uniform per row and a binary search. An exponential race (what torch.multinomial does)
        # draws V randoms per row: 170 ms for [64, 49152] on one core here, against ~3 ms for the cumsum.
        cdf = probs.cumsum(dim=-1)  # [M, V]
        u = torch.rand(len(seqs), 1, generator=self.generator, device=self.device)
        for i, seq in enumerate(seqs):
            if seq.generator is not None:  # one draw per step from the sequence's own stream: batch-independent
                u[i] = torch.rand(1, generator=seq.generator).to(u.device)
        tokens = torch.searchsorted(cdf, u * cdf[:, -1:], right=True).clamp_(max=probs.shape[1] - 1)  # [M, 1]
        # u * total can round up to total itself: never return a token the filters removed
        ok = probs.gather(1, tokens) > 0
        return torch.where(ok, tokens, probs.argmax(dim=-1, keepdim=True)).squeeze(1)

    def _apply_penalties(self, logits: torch.Tensor, seqs: list[Sequence]) -> None:
        rows = [
            i
            for i, s in enumerate(seqs)
            if s.params.repetition_penalty != 1.0 or s.params.presence_penalty or s.params.frequency_penalty
        ]
        if not rows:
            return
        vocab = logits.shape[1]
        sub = [seqs[i] for i in rows]
        dev = logits.device
        # Output token counts [R, V+1] by one scatter_add over a padded [R, L] id matrix (pad id = V, dropped).
        outs = [s.output_token_ids for s in sub]
        width = max(1, max(len(o) for o in outs))
        ids = torch.tensor([o + [vocab] * (width - len(o)) for o in outs], dtype=torch.int64, device=dev)
        counts = torch.zeros(len(rows), vocab + 1, device=dev).scatter_add_(1, ids, torch.ones_like(ids, dtype=torch.float32))
        counts = counts[:, :vocab]
        row_idx = torch.tensor(rows, dtype=torch.int64, device=dev)
        x = logits[row_idx]
        rep = torch.tensor([s.params.repetition_penalty for s in sub], device=dev)
        if (rep != 1.0).any():
            # Repetition penalty (CTRL, as vLLM/HF): over prompt and output tokens, divide positive logits and
            # multiply negative ones.
            prompts = [s.token_ids[: s.num_prompt_tokens] for s in sub]
            pw = max(len(p) for p in prompts)
            pids = torch.tensor([p + [vocab] * (pw - len(p)) for p in prompts], dtype=torch.int64, device=dev)
            seen = torch.zeros(len(rows), vocab + 1, dtype=torch.bool, device=dev)
            seen.scatter_(1, pids, True)
            seen = seen[:, :vocab] | (counts > 0)
            r = rep[:, None]
            x = torch.where(seen, torch.where(x > 0, x / r, x * r), x)
        freq = torch.tensor([s.params.frequency_penalty for s in sub], device=dev)[:, None]
        pres = torch.tensor([s.params.presence_penalty for s in sub], device=dev)[:, None]
        x = x - freq * counts - pres * (counts > 0).float()
        logits[row_idx] = x


    def _logprobs(
        self,
        logprobs: torch.Tensor,
        tokens: torch.Tensor,
        seqs: list[Sequence],
        want: list[bool],
        token_ids: list[int],
    ) -> list[TokenLogprob | None]:
        chosen: list[float] = logprobs.gather(1, tokens[:, None]).squeeze(1).tolist()
        k = max(s.params.top_logprobs for s in seqs)
        top_vals: list[list[float]] = []
        top_ids: list[list[int]] = []
        if k:
            vals, ids = logprobs.topk(k, dim=-1)
            top_vals, top_ids = vals.tolist(), ids.tolist()
        out: list[TokenLogprob | None] = []
        for i, s in enumerate(seqs):
            if not want[i]:
                out.append(None)
                continue
            kk = s.params.top_logprobs
            # a grammar may allow fewer than k tokens: the forbidden ones (-inf) are not alternatives
            top = [(t, v) for t, v in zip(top_ids[i][:kk], top_vals[i][:kk], strict=True) if v != float("-inf")] if kk else []
            out.append(TokenLogprob(token_ids[i], chosen[i], top))
        return out


def apply_logit_bias(logits: torch.Tensor, seqs: list[Sequence]) -> None:
    """Adds each row's `logit_bias` in place (row i belongs to seqs[i]): one scatter for the whole batch."""
    rows: list[int] = []
    cols: list[int] = []
    vals: list[float] = []
    for i, s in enumerate(seqs):
        for tok, bias in s.params.logit_bias.items():
            rows.append(i)
            cols.append(tok)
            vals.append(bias)
    if rows:
        dev = logits.device
        logits.index_put_((torch.tensor(rows, device=dev), torch.tensor(cols, device=dev)),
                          torch.tensor(vals, dtype=logits.dtype, device=dev), accumulate=True)  # fmt: skip
