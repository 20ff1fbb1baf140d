"""What a request asks of the sampler, and the bounds of every parameter: one definition for the worker.

The gateway's request schema uses the same numbers (gateway side: keep them in step). Every float must be finite;
out of range is an InvalidRequestError naming the parameter (a 400 invalid_request_error).
"""

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from xgrammar import CompiledGrammar

MAX_N = 16
MAX_TOP_LOGPROBS = 20  # top_logprobs (chat) and logprobs (completions) are both capped here
TEMPERATURE_RANGE = (0.0, 2.0)
PENALTY_RANGE = (-2.0, 2.0)  # presence_penalty, frequency_penalty
MAX_REPETITION_PENALTY = 2.0  # (0, 2]; 1 is off
LOGIT_BIAS_RANGE = (-100.0, 100.0)
MAX_LOGIT_BIAS_ENTRIES = 300
MAX_STOP = 4
MAX_STOP_TOKEN_IDS = 64
MAX_PREDICTION_TOKENS = 1 << 17  # a predicted output is a draft: longer than any context is no use
SEED_RANGE = (-(2**63), 2**63 - 1)  # a signed 64-bit integer (choice i of n draws from seed + i: still fits torch)
# top_k: 0 (off; the protocol maps vLLM's -1 to it) or 1..vocab_size.


class InvalidRequestError(ValueError):
    """Bad input from outside; the server turns it into a 400 in OpenAI's error shape."""

    def __init__(self, message: str, param: str | None = None, code: str | None = "invalid_value"):
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code


@dataclass(slots=True)
class SamplingParams:
    n: int = 1
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0  # 0 = off
    min_p: float = 0.0
    seed: int | None = None
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    repetition_penalty: float = 1.0
    logit_bias: dict[int, float] = field(default_factory=dict)
    stop: list[str] = field(default_factory=list)
    stop_token_ids: list[int] = field(default_factory=list)
    max_tokens: int | None = None  # None = up to the context length
    ignore_eos: bool = False
    logprobs: bool = False
    top_logprobs: int = 0  # 0..MAX_TOP_LOGPROBS
    skip_special_tokens: bool = True
    # Constrained decoding: the output follows this grammar (compiled by workers.structured.compiler, off the
    # stepping thread); each choice gets its own matcher. None: free text.
    grammar: "CompiledGrammar | None" = None
    # Predicted output (OpenAI's `prediction`), tokenised: drafts for speculative decoding; never changes the output.
    prediction: list[int] | None = None

    def validate(self, vocab_size: int) -> None:
        if not 1 <= self.n <= MAX_N:
            raise InvalidRequestError(f"n must be between 1 and {MAX_N}", param="n")
        _check_float("temperature", self.temperature, *TEMPERATURE_RANGE)
        if not (math.isfinite(self.top_p) and 0.0 < self.top_p <= 1.0):
            raise InvalidRequestError("top_p must be in (0, 1]", param="top_p")
        if not 0 <= self.top_k <= vocab_size:
            raise InvalidRequestError(
                f"top_k must be between 0 and the vocabulary size {vocab_size} (0 or -1 disables it)", param="top_k"
            )
        _check_float("min_p", self.min_p, 0.0, 1.0)
        _check_float("presence_penalty", self.presence_penalty, *PENALTY_RANGE)
        _check_float("frequency_penalty", self.frequency_penalty, *PENALTY_RANGE)
        if not (math.isfinite(self.repetition_penalty) and 0.0 < self.repetition_penalty <= MAX_REPETITION_PENALTY):
            raise InvalidRequestError(
                f"repetition_penalty must be in (0, {MAX_REPETITION_PENALTY:g}]", param="repetition_penalty"
            )
        if self.seed is not None and not SEED_RANGE[0] <= self.seed <= SEED_RANGE[1]:
            raise InvalidRequestError("seed must be a signed 64-bit integer", param="seed")
        if self.max_tokens is not None and self.max_tokens < 1:
            raise InvalidRequestError("max_tokens must be at least 1", param="max_tokens")
        if not 0 <= self.top_logprobs <= MAX_TOP_LOGPROBS:
            raise InvalidRequestError(f"top_logprobs must be between 0 and {MAX_TOP_LOGPROBS}", param="top_logprobs")
        if len(self.stop) > MAX_STOP:
            raise InvalidRequestError(f"at most {MAX_STOP} stop sequences", param="stop")
        if len(self.logit_bias) > MAX_LOGIT_BIAS_ENTRIES:
            raise InvalidRequestError(f"logit_bias holds at most {MAX_LOGIT_BIAS_ENTRIES} entries", param="logit_bias")
        for tok, bias in self.logit_bias.items():
            if not 0 <= tok < vocab_size:
                raise InvalidRequestError(f"logit_bias token id {tok} is out of range", param="logit_bias")
            _check_float("logit_bias", bias, *LOGIT_BIAS_RANGE, what="logit_bias values")
        if len(self.stop_token_ids) > MAX_STOP_TOKEN_IDS:
            raise InvalidRequestError(f"at most {MAX_STOP_TOKEN_IDS} stop_token_ids", param="stop_token_ids")
        for tok in self.stop_token_ids:
            if not 0 <= tok < vocab_size:
                raise InvalidRequestError(f"stop token id {tok} is out of range", param="stop_token_ids")
        if self.prediction is not None:
            if len(self.prediction) > MAX_PREDICTION_TOKENS:
                raise InvalidRequestError(f"prediction holds at most {MAX_PREDICTION_TOKENS} tokens", param="prediction")
            if any(not 0 <= tok < vocab_size for tok in self.prediction):
                raise InvalidRequestError("prediction token id out of range", param="prediction")


def _check_float(name: str, value: float, lo: float, hi: float, *, what: str | None = None) -> None:
    if not (math.isfinite(value) and lo <= value <= hi):
        raise InvalidRequestError(f"{what or name} must be between {lo:g} and {hi:g}", param=name)
