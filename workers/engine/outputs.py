from dataclasses import dataclass, field


@dataclass(slots=True)
class TokenLogprob:
    token_id: int
    logprob: float
    top: list[tuple[int, float]] = field(default_factory=list)  # (token_id, logprob), best first


@dataclass(slots=True)
class CompletionDelta:
    """What one engine step produced for one choice (one Sequence) of a request."""

    request_id: str
    index: int  # choice index, 0..n-1
    new_token_ids: list[int]
    text: str  # newly decoded text, safe to stream (never half a UTF-8 character, stop strings cut out)
    logprobs: list[TokenLogprob] | None
    finished: bool
    finish_reason: str | None  # "stop" | "length" | "abort" when finished
    num_prompt_tokens: int
    num_cached_tokens: int  # prompt tokens served from the prefix cache
    num_output_tokens: int  # so far, for this choice
    # predicted output (OpenAI's `prediction`) tokens that verification kept / rejected so far, for this choice
    num_accepted_prediction_tokens: int = 0
    num_rejected_prediction_tokens: int = 0


@dataclass(slots=True)
class SamplerOutput:
    """What one model-runner step sampled (engine-internal)."""

    token_ids: list[int]  # one per sampling sequence, in batch order
    logprobs: list[TokenLogprob | None] | None = None  # None when no sequence asked for logprobs
    num_accepted: list[int] | None = None  # draft tokens kept before each token_ids entry (None: no drafts)
