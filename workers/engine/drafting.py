"""Draft sources for speculative decoding: what a sequence proposes to verify in its next step.

Two cheap sources, no second model: the request's predicted output (OpenAI's `prediction`), aligned with the output
so far like a diff, and prompt lookup (an n-gram of the latest tokens found earlier in prompt + output, whose
continuation is proposed). Each choice owns one SpecState; the scheduler asks it for a draft before a decode step and
tells it how many draft tokens the verification kept (workers/engine/speculative.py decides that).
"""

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from workers.engine.config import EngineConfig
    from workers.engine.sampling_params import SamplingParams

PREDICTION = "prediction"
NGRAM = "ngram"
_SYNC_NGRAM = 4  # tokens of the output's tail looked up in the prediction to re-synchronise after a mismatch
_LOCAL_SYNC_NGRAM, _LOCAL_REACH = 2, 24  # ... or this many, found at most this far after the last synchronised point
_LOOKUP_NGRAMS = (3, 2)  # prompt lookup: longest n-gram first; a 1-gram match proposes mostly noise
_MIN_RATE = 0.3  # prompt lookup pauses when fewer of its draft tokens than this are kept (EMA)
_COOLDOWN_STEPS = 16  # ... for this many decode steps, doubling each time it is paused again
_NGRAM_MAX_K = 8  # prompt lookup's continuations are short: longer drafts are mostly rejected


class PredictionDraft:
    """Proposes the next tokens of a predicted output. `cursor` is the prediction index that the output's next token
    should match; it is None after a mismatch until the output's tail is found in the prediction again (the first
    occurrence at or after the last synchronised point, as a diff would pair them)."""

    __slots__ = ("ids", "cursor", "seen", "hint", "index")

    def __init__(self, prediction_ids: list[int]) -> None:
        self.ids = prediction_ids
        self.cursor: int | None = 0
        self.seen = 0  # output tokens already walked against the prediction
        self.hint = 0  # where the last synchronised stretch was: re-sync prefers matches after it
        self.index: dict[tuple[int, ...], list[int]] | None = None  # n-gram -> end positions, built on first mismatch

    def propose(self, output: list[int], k: int) -> list[int]:
        if len(output) < self.seen:  # the output lost tokens (never in practice): start over
            self.cursor, self.seen = None, 0
        for tok in output[self.seen :]:
            if self.cursor is not None and self.cursor < len(self.ids) and self.ids[self.cursor] == tok:
                self.cursor += 1
            else:
                self.cursor = None
        self.seen = len(output)
        if self.cursor is None:
            self.cursor = self._resync(output)
        if self.cursor is None:
            return []
        self.hint = self.cursor
        return self.ids[self.cursor : self.cursor + k]

    def _resync(self, output: list[int]) -> int | None:
        if self.index is None:
            self.index = {}
            for n in (_SYNC_NGRAM, _LOCAL_SYNC_NGRAM):
                for end in range(n, len(self.ids) + 1):
                    self.index.setdefault(tuple(self.ids[end - n : end]), []).append(end)
        # a long match anywhere (the first after the last synchronised point), else a short one close after it
        # (a few tokens replaced: the edit ends and the prediction resumes)
        for n, reach in ((_SYNC_NGRAM, len(self.ids)), (_LOCAL_SYNC_NGRAM, _LOCAL_REACH)):
            if len(output) < n:
                continue
            ends = self.index.get(tuple(output[-n:]))
            if not ends:
                continue
            after = next((e for e in ends if e >= self.hint), None)
            if after is not None and after - self.hint <= reach:
                return after
            if n == _SYNC_NGRAM:
                return ends[-1]
        return None


class NgramDraft:
    """Prompt lookup: the most recent earlier occurrence of the last n tokens (n = 3, then 2) in prompt + output;
    its continuation is the draft. The n-gram index grows incrementally as tokens are appended."""

    __slots__ = ("indexes", "indexed")

    def __init__(self) -> None:
        self.indexes: dict[int, dict[tuple[int, ...], int]] = {n: {} for n in _LOOKUP_NGRAMS}
        self.indexed = 0  # positions e < indexed are registered (n-gram ending at e -> continuation starting at e)

    def propose(self, tokens: list[int], k: int) -> list[int]:
        # register every n-gram whose continuation has begun (end < len(tokens)): the current tail is never its own hit
        for end in range(max(self.indexed, 1), len(tokens)):
            for n, index in self.indexes.items():
                if end >= n:
                    index[tuple(tokens[end - n : end])] = end
        self.indexed = max(self.indexed, len(tokens))
        for n, index in self.indexes.items():
            start = index.get(tuple(tokens[-n:]))
            if start is not None:
                return tokens[start : start + k]
        return []


class SpecState:
    """One choice's speculation: its draft sources, the draft of the step in flight, the adaptive draft length and
    the counts the usage reports (prediction tokens kept / rejected by verification)."""

    __slots__ = (
        "prediction", "ngram", "max_k", "k", "draft", "source", "rate", "cooldown", "pauses",
        "num_accepted_prediction", "num_rejected_prediction", "num_proposed", "num_accepted",
    )  # fmt: skip

    def __init__(self, prediction_ids: list[int] | None, ngram: bool, max_k: int) -> None:
        self.prediction = PredictionDraft(prediction_ids) if prediction_ids else None
        self.ngram = NgramDraft() if ngram else None
        self.max_k = max_k
        self.k = max_k if self.prediction is not None else min(4, max_k)  # grows on full acceptance
        self.draft: list[int] = []  # proposed for the step in flight (not in token_ids)
        self.source: str | None = None
        self.rate = 1.0  # EMA of the prompt-lookup acceptance rate
        self.cooldown = 0
        self.pauses = 0
        self.num_accepted_prediction = 0
        self.num_rejected_prediction = 0
        self.num_proposed = 0
        self.num_accepted = 0

    def propose(self, token_ids: list[int], num_prompt_tokens: int, limit: int, lookup: bool = True) -> list[int]:
        """Sets and returns the draft for the next step: at most min(k, limit) tokens, maybe none. `lookup`: prompt
        lookup may draft this step (the scheduler turns it off for large batches)."""
        self.draft, self.source = [], None
        k = min(self.k, limit)
        if k <= 0:
            return self.draft
        if self.prediction is not None:
            self.draft = self.prediction.propose(token_ids[num_prompt_tokens:], k)
            self.source = PREDICTION
        if not self.draft and self.ngram is not None and lookup:
            if self.cooldown > 0:
                self.cooldown -= 1
            else:
                self.draft = self.ngram.propose(token_ids, min(k, _NGRAM_MAX_K))
                self.source = NGRAM
        if not self.draft:
            self.source = None
        return self.draft

    def observe(self, num_kept: int) -> None:
        """Verification kept num_kept of the draft's tokens (those in the output now)."""
        k = len(self.draft)
        if not k:
            return
        self.num_proposed += k
        self.num_accepted += num_kept
        if self.source == PREDICTION:
            self.num_accepted_prediction += num_kept
            self.num_rejected_prediction += k - num_kept
        elif self.source == NGRAM:
            self.rate = 0.8 * self.rate + 0.2 * (num_kept / k)
            if self.rate < _MIN_RATE:  # plain chat: stop paying for drafts that are rarely kept
                self.cooldown = _COOLDOWN_STEPS << min(self.pauses, 6)
                self.pauses += 1
                self.rate = _MIN_RATE + 0.2  # one more chance after the pause
        # all kept: try longer drafts; a rejection: the next draft is as long as what was kept, plus one (a prediction
        # at least 4: past an edit it usually resumes)
        floor = 4 if self.source == PREDICTION else 1
        self.k = min(self.max_k, 2 * self.k) if num_kept == k else min(self.max_k, max(floor, num_kept + 1))
        self.draft, self.source = [], None

    def drop(self) -> None:
        """The step in flight will not verify the draft (preemption, or not enough KV blocks for it)."""
        self.draft, self.source = [], None


def speculates(params: "SamplingParams", config: "EngineConfig") -> bool:
    """Whether a request's choices draft at all. Not with penalties or logprobs (OpenAI's predicted outputs refuse
    those; here they simply decode one token a step): their per-position state is not worth verifying in bulk."""
    if config.num_speculative_tokens <= 0 or (not params.prediction and not config.ngram_speculation):
        return False
    penalised = params.repetition_penalty != 1.0 or params.presence_penalty or params.frequency_penalty
    return not (penalised or params.logprobs)
