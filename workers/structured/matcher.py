"""Per-sequence grammar state and the batched mask step.

Each constrained Sequence holds a GrammarState (its own xgrammar matcher: n > 1 choices don't share one). The sampler
calls GrammarMasker.apply once per step for the whole batch: one bitmask row per constrained sequence is filled on
the CPU and applied to those rows of the logits in place (-inf for tokens the grammar forbids); free rows are not
touched. The matcher advances when the scheduler appends the sampled token, so its history is always the
sequence's output tokens; `sync` rolls it back if the sequence ever holds fewer output tokens than it accepted.
"""

import time
from collections.abc import Sequence as Seq

import torch
import xgrammar as xgr


class GrammarState:
    __slots__ = ("matcher", "num_accepted", "failed")

    def __init__(self, compiled: xgr.CompiledGrammar) -> None:
        self.matcher = xgr.GrammarMatcher(compiled)
        self.num_accepted = 0
        self.failed = False  # a token the grammar refused was appended (only possible when the mask was bypassed)

    def accept(self, token_id: int) -> bool:
        if self.matcher.is_terminated():
            return False
        ok = self.matcher.accept_token(token_id)
        if ok:
            self.num_accepted += 1
        else:
            self.failed = True
        return ok

    def sync(self, num_output_tokens: int) -> None:
        """Roll the matcher back to a sequence that lost output tokens (preemption or speculation that drops them)."""
        if num_output_tokens < self.num_accepted:
            self.matcher.rollback(self.num_accepted - num_output_tokens)
            self.num_accepted = num_output_tokens

    @property
    def is_terminated(self) -> bool:
        """The grammar is complete and its stop token accepted: nothing more may follow."""
        return self.matcher.is_terminated()

    def fill(self, bitmask: torch.Tensor, row: int) -> bool:
        """Writes the allowed next tokens into bitmask[row]; False when every token is allowed (no need to apply)."""
        return bool(self.matcher.fill_next_token_bitmask(bitmask, row))


class GrammarMasker:
    """Owns the step's bitmask buffer and the time spent masking (bench/structured.py reports it)."""

    def __init__(self, vocab_size: int) -> None:
        self.vocab_size = vocab_size
        self._bitmask = xgr.allocate_token_bitmask(1, vocab_size)  # [B, ceil(V / 32)] int32, grown on demand
        self.num_steps = 0  # steps that masked at least one row
        self.num_rows = 0
        self.seconds = 0.0

    def apply(self, logits: torch.Tensor, states: Seq[GrammarState | None]) -> None:
        # logits: [N, V'] fp32 (V' >= vocab_size when the model pads its vocabulary), rows aligned with states
        rows = [i for i, s in enumerate(states) if s is not None and not s.is_terminated]
        if not rows:
            return
        t0 = time.perf_counter()
        n = logits.shape[0]
        if self._bitmask.shape[0] < n:
            self._bitmask = xgr.allocate_token_bitmask(max(n, 2 * self._bitmask.shape[0]), self.vocab_size)
        masked = [i for i in rows if states[i].fill(self._bitmask, i)]  # type: ignore[union-attr]
        if masked:
            bitmask = self._bitmask[:n].to(logits.device, non_blocking=True)  # filled on the host, [N, V/32]
            xgr.apply_token_bitmask_inplace(logits, bitmask, vocab_size=self.vocab_size, indices=masked)
            if logits.shape[1] > self.vocab_size:  # padded ids past the vocabulary are never a valid token
                logits[masked, self.vocab_size:] = float("-inf")
        self.num_steps += 1
        self.num_rows += len(rows)
        self.seconds += time.perf_counter() - t0
