"""Sampled tokens -> CompletionDelta: incremental detokenization and stop strings.

Text that might be the start of a stop string is held back until it can't be, so a stream never shows a
stop string, not even its first half; a stop string found ends the sequence and is cut out of the text.
"""

from collections.abc import Callable

from workers.detokenizer import Decoder, IncrementalDetokenizer
from workers.engine.outputs import CompletionDelta
from workers.engine.sequence import Sequence


class SequenceText:
    __slots__ = ("detok", "pending", "stops")

    def __init__(self, tokenizer: Decoder, seq: Sequence) -> None:
        prompt = seq.token_ids[: seq.num_prompt_tokens]
        self.detok = IncrementalDetokenizer(tokenizer, prompt, skip_special_tokens=seq.params.skip_special_tokens)
        self.pending = ""  # decoded, not yet emitted (a possible stop-string prefix)
        self.stops = [s for s in seq.params.stop if s]

    def add(self, token_id: int | None, final: bool) -> tuple[str, bool]:
        """Feed one token (None: nothing new); -> (text safe to emit, whether a stop string ended the sequence)."""
        if token_id is not None:
            self.pending += self.detok.add(token_id)
        if final:
            self.pending += self.detok.flush()
        if not self.stops:
            text, self.pending = self.pending, ""
            return text, False
        cut = min((i for i in (self.pending.find(s) for s in self.stops) if i >= 0), default=-1)
        if cut >= 0:
            text, self.pending = self.pending[:cut], ""
            return text, True
        if final:
            text, self.pending = self.pending, ""
            return text, False
        keep = self._held_back()
        text = self.pending[: len(self.pending) - keep]
        self.pending = self.pending[len(self.pending) - keep :]
        return text, False

    def _held_back(self) -> int:
        # the longest suffix of pending that is a proper prefix of some stop string
        best = 0
        for stop in self.stops:
            for n in range(min(len(stop) - 1, len(self.pending)), best, -1):
                if self.pending.endswith(stop[:n]):
                    best = n
                    break
        return best


class OutputProcessor:
    def __init__(self, tokenizer: Decoder) -> None:
        self.tokenizer = tokenizer

    def process(self, seqs: list[Sequence], finish: Callable[[Sequence, str], None]) -> list[CompletionDelta]:
        """One delta per sequence that got a token this step; `finish` ends a sequence a stop string matched."""
        deltas: list[CompletionDelta] = []
        for seq in seqs:
            state = seq.detok
            if not isinstance(state, SequenceText):
                state = seq.detok = SequenceText(self.tokenizer, seq)
            # A step appends one token, or several when it kept draft tokens (speculative decoding).
            new = seq.token_ids[seq.num_tokens - max(seq.num_step_tokens, 1) :]
            # A stop token or EOS ends the text without appearing in it.
            stopped_by_token = seq.is_finished and seq.finish_reason == "stop"
            pieces: list[str] = []
            hit = False
            for i, token in enumerate(new[:-1] if stopped_by_token else new):
                piece, hit = state.add(token, final=False)
                pieces.append(piece)
                if hit and i < len(new) - 1:  # a stop string ended inside the step: the tokens after it never were
                    del seq.token_ids[seq.num_tokens - (len(new) - 1 - i) :]
                    new = new[: i + 1]
                    break
            if seq.is_finished and not hit:
                piece, hit = state.add(None, final=True)
                pieces.append(piece)
            if hit:
                if seq.is_finished:  # the last allowed token also completed a stop string: that is the reason
                    seq.finish_reason = "stop"
                else:
                    finish(seq, "stop")
            deltas.append(self.delta(seq, new, "".join(pieces)))
        return deltas

    @staticmethod
    def delta(seq: Sequence, new_token_ids: list[int], text: str) -> CompletionDelta:
        logprobs = None
        if seq.output_logprobs is not None:
            logprobs = seq.output_logprobs[len(seq.output_logprobs) - len(new_token_ids) :] if new_token_ids else []
        return CompletionDelta(
            request_id=seq.request_id,
            index=seq.index,
            new_token_ids=new_token_ids,
            text=text,
            logprobs=logprobs,
            finished=seq.is_finished,
            finish_reason=seq.finish_reason,
            num_prompt_tokens=seq.num_prompt_tokens,
            num_cached_tokens=max(seq.num_cached_tokens, 0),
            num_output_tokens=seq.num_output_tokens,
            num_accepted_prediction_tokens=seq.spec.num_accepted_prediction if seq.spec is not None else 0,
            num_rejected_prediction_tokens=seq.spec.num_rejected_prediction if seq.spec is not None else 0,
        )
