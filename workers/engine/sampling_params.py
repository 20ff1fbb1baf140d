from dataclasses import dataclass, field

MAX_TOP_LOGPROBS = 20  # top_logprobs (chat) and logprobs (completions) are both capped here


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

    def validate(self, vocab_size: int) -> None:
        if not 1 <= self.n <= 16:
            raise InvalidRequestError("n must be between 1 and 16", param="n")
        if not 0.0 <= self.temperature <= 2.0:
            raise InvalidRequestError("temperature must be between 0 and 2", param="temperature")
        if not 0.0 < self.top_p <= 1.0:
            raise InvalidRequestError("top_p must be in (0, 1]", param="top_p")
        if self.top_k < 0:
            raise InvalidRequestError("top_k must be >= 0 (0 disables it)", param="top_k")
        if not 0.0 <= self.min_p <= 1.0:
            raise InvalidRequestError("min_p must be between 0 and 1", param="min_p")
        for name in ("presence_penalty", "frequency_penalty"):
            if not -2.0 <= getattr(self, name) <= 2.0:
                raise InvalidRequestError(f"{name} must be between -2 and 2", param=name)
        if self.repetition_penalty <= 0:
            raise InvalidRequestError("repetition_penalty must be > 0", param="repetition_penalty")
        if self.max_tokens is not None and self.max_tokens < 1:
            raise InvalidRequestError("max_tokens must be at least 1", param="max_tokens")
        if not 0 <= self.top_logprobs <= MAX_TOP_LOGPROBS:
            raise InvalidRequestError(f"top_logprobs must be between 0 and {MAX_TOP_LOGPROBS}", param="top_logprobs")
        if len(self.stop) > 4:
            raise InvalidRequestError("at most 4 stop sequences", param="stop")
        for tok, bias in self.logit_bias.items():
            if not 0 <= tok < vocab_size:
                raise InvalidRequestError(f"logit_bias token id {tok} is out of range", param="logit_bias")
            if not -100 <= bias <= 100:
                raise InvalidRequestError("logit_bias values must be between -100 and 100", param="logit_bias")
        for tok in self.stop_token_ids:
            if not 0 <= tok < vocab_size:
                raise InvalidRequestError(f"stop token id {tok} is out of range", param="stop_token_ids")
