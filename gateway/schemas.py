"""Request bodies following the OpenAI API. Every numeric sampling parameter is typed and bounded here (the bounds
below are the gateway's one definition; the worker checks the same ones plus the model's own vocabulary and context
in workers/engine/sampling_params.py), every float must be finite, and anything out of range is a 400
invalid_request_error naming the parameter. Other OpenAI or worker parameters are listed in PASS_THROUGH and go to
the worker unchanged; anything else is refused as OpenAI refuses it."""

import json
from typing import Annotated, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from contracts.model_kinds import MODEL_KIND_CHAT
from gateway.errors import InvalidRequest

MAX_N = 16  # n and best_of: choices one request may ask for (the worker's cap; OpenAI documents 128)
MAX_TOP_LOGPROBS = 20  # chat top_logprobs and completions logprobs, as OpenAI
MAX_TOKEN_ID = (1 << 20) - 1  # above every vocabulary served; the worker checks the model's own size
MAX_TOKENS = (1 << 31) - 1  # max_tokens / max_completion_tokens; the worker bounds them by the context
INT64_MIN, INT64_MAX = -(1 << 63), (1 << 63) - 1  # seed
TOP_K_OFF = (-1, 0)  # vLLM's "no top-k" values
MAX_STOP = 4
MAX_STOP_TOKEN_IDS = 64
MAX_LOGIT_BIAS_ENTRIES = 300  # as the worker (workers/engine/sampling_params.py)
LOGIT_BIAS_RANGE = (-100.0, 100.0)
PENALTY_RANGE = (-2.0, 2.0)  # presence_penalty, frequency_penalty
MAX_REPETITION_PENALTY = 2.0

# Allowances for tokens a prompt gets beyond its text (gateway/budget.py bounds the prompt by them): a chat template's
# default system prompt and markers, each message's role markers, the tool-calling instructions, a text prompt's BOS.
CHAT_TEMPLATE_TOKENS = 256
MESSAGE_TEMPLATE_TOKENS = 16
TOOL_PROMPT_TOKENS = 512
TEXT_SPECIAL_TOKENS = 8

TokenId = Annotated[int, Field(ge=0, le=MAX_TOKEN_ID)]
Penalty = Annotated[float, Field(ge=PENALTY_RANGE[0], le=PENALTY_RANGE[1])]

# Forwarded untouched: the worker validates them (and answers 400 in OpenAI's shape for what it can't do).
# Structured output and tools (workers/structured): response_format, tools, tool_choice, parallel_tool_calls;
# prediction is kept for speculative decoding; prompt_cache_key and reasoning_effort are accepted by the worker.
PASS_THROUGH = frozenset({
    "response_format", "tools", "tool_choice", "parallel_tool_calls", "prediction", "prompt_cache_key",
    "reasoning_effort", "echo", "suffix", "ignore_eos", "skip_special_tokens",
})
# Valid for OpenAI but the platform's own bookkeeping (nothing is stored; one service tier): accepted, not sent on.
DROPPED = frozenset({"user", "metadata", "store", "service_tier"})


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    include_usage: bool = False


class InferenceRequest(BaseModel):
    model_config = ConfigDict(extra="allow", allow_inf_nan=False)
    kind: ClassVar[str] = MODEL_KIND_CHAT  # what the named model must serve (lifecycle checks the catalog's)

    model: str = Field(min_length=1)
    stream: bool = False
    stream_options: StreamOptions | None = None
    max_tokens: int | None = Field(default=None, ge=1, le=MAX_TOKENS)
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, gt=0, le=1)
    stop: str | Annotated[list[str], Field(max_length=MAX_STOP)] | None = None
    n: int | None = Field(default=None, ge=1, le=MAX_N)
    best_of: int | None = Field(default=None, ge=1, le=MAX_N)
    top_logprobs: int | None = Field(default=None, ge=0, le=MAX_TOP_LOGPROBS)
    seed: int | None = Field(default=None, ge=INT64_MIN, le=INT64_MAX)
    presence_penalty: Penalty | None = None
    frequency_penalty: Penalty | None = None
    logit_bias: dict[str, float] | None = None
    # the worker's sampling extras (vLLM's names)
    top_k: int | None = Field(default=None, ge=TOP_K_OFF[0], le=MAX_TOKEN_ID)
    min_p: float | None = Field(default=None, ge=0, le=1)
    repetition_penalty: float | None = Field(default=None, gt=0, le=MAX_REPETITION_PENALTY)
    stop_token_ids: Annotated[list[TokenId], Field(max_length=MAX_STOP_TOKEN_IDS)] | None = None
    # Hearth's own: the most this request may cost, USD as a decimal string (gateway/budget.py); never sent on
    max_cost: str | None = Field(default=None, max_length=40)

    @field_validator("logit_bias")
    @classmethod
    def _bounded_logit_bias(cls, bias: dict[str, float] | None) -> dict[str, float] | None:
        if bias is None:
            return None
        if len(bias) > MAX_LOGIT_BIAS_ENTRIES:
            raise ValueError(f"at most {MAX_LOGIT_BIAS_ENTRIES} entries")
        low, high = LOGIT_BIAS_RANGE
        for token, value in bias.items():
            if not token.isascii() or not token.isdigit() or int(token) > MAX_TOKEN_ID:
                raise ValueError(f"keys must be token ids from 0 to {MAX_TOKEN_ID}, got {token[:20]!r}")
            if not low <= value <= high:
                raise ValueError(f"values must be between {low:g} and {high:g}, got {value:g} for token {token}")
        return bias

    def check_extras(self) -> None:
        for name in self.model_extra or {}:
            if name not in PASS_THROUGH and name not in DROPPED:
                raise InvalidRequest(f"Unrecognized request argument supplied: {name}", param=name)
        if self.stream_options is not None and not self.stream:
            raise InvalidRequest(
                "The 'stream_options' parameter is only allowed when 'stream' is enabled.", param="stream_options"
            )

    def upstream_body(self, worker_model: str) -> dict[str, Any]:
        body = self.model_dump(exclude_unset=True, exclude_none=True)
        for name in DROPPED:
            body.pop(name, None)
        body.pop("max_cost", None)
        body["model"] = worker_model
        if self.stream:
            # Always metered from the worker's own count, which it puts on every chunk (continuous_usage_stats) so a
            # stream the client abandons is billed for its prompt too; the relay strips it from what the client sees.
            body["stream_options"] = {"include_usage": True, "continuous_usage_stats": True}
        return body

    @property
    def client_wants_usage(self) -> bool:
        return self.stream_options is not None and self.stream_options.include_usage

    def prompt_chars(self) -> int:
        raise NotImplementedError

    def prompt_token_bound(self) -> int:
        """At most this many prompt tokens (gateway/budget.py): one per UTF-8 byte, plus the template's own."""
        raise NotImplementedError

    def num_choices(self) -> int:
        """Completions the worker generates (and bills) for this request."""
        return max(self.n or 1, self.best_of or 1)

    def with_completion_limit(self, body: dict[str, Any], limit: int) -> dict[str, Any]:
        """The upstream body with every choice's completion capped at `limit` tokens."""
        for name in ("max_tokens", "max_completion_tokens"):
            if name in body:
                body[name] = min(int(body[name]), limit)
        body.setdefault("max_tokens", limit)
        return body

    def max_new_tokens(self) -> int | None:
        return self.max_tokens


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow")
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[dict[str, Any]] | None = None


class ChatCompletionRequest(InferenceRequest):
    messages: list[ChatMessage] = Field(min_length=1)
    max_completion_tokens: int | None = Field(default=None, ge=1, le=MAX_TOKENS)
    logprobs: bool | None = None

    def prompt_chars(self) -> int:
        total = 0
        for m in self.messages:
            if isinstance(m.content, str):
                total += len(m.content)
            elif m.content:
                total += sum(len(str(part.get("text", ""))) for part in m.content)
            total += 16  # role markers of the chat template
            total += len(json.dumps((m.model_extra or {}).get("tool_calls") or []))  # an assistant's calls, rendered back
        return total + len(json.dumps((self.model_extra or {}).get("tools") or []))  # the tool prompt

    def max_new_tokens(self) -> int | None:
        return self.max_completion_tokens or self.max_tokens

    def prompt_token_bound(self) -> int:
        total = CHAT_TEMPLATE_TOKENS
        for m in self.messages:
            if isinstance(m.content, str):
                total += len(m.content.encode())
            elif m.content:
                total += sum(len(str(part.get("text", "")).encode()) for part in m.content)
            total += MESSAGE_TEMPLATE_TOKENS
            if calls := (m.model_extra or {}).get("tool_calls"):  # an assistant's calls, rendered back
                total += len(json.dumps(calls).encode())
        tools = (self.model_extra or {}).get("tools")
        if tools:
            total += TOOL_PROMPT_TOKENS + len(json.dumps(tools).encode())
        return total


class CompletionRequest(InferenceRequest):
    prompt: str | list[str] | list[TokenId] | list[list[TokenId]]
    max_tokens: int | None = Field(default=16, ge=1, le=MAX_TOKENS)  # OpenAI's documented default for completions
    logprobs: int | None = Field(default=None, ge=0, le=MAX_TOP_LOGPROBS)  # legacy: top alternatives per token

    def prompt_chars(self) -> int:
        p = self.prompt
        if isinstance(p, str):
            return len(p)
        if p and isinstance(p[0], list):
            return 4 * sum(len(ids) for ids in p)  # token ids: 4 "chars" each, matching the chars/4 estimate
        if p and isinstance(p[0], int):
            return 4 * len(p)
        return sum(len(s) for s in p)

    def upstream_body(self, worker_model: str) -> dict[str, Any]:
        body = super().upstream_body(worker_model)
        body.setdefault("max_tokens", self.max_tokens)
        return body

    def _prompts(self) -> list[str] | list[list[int]]:
        p = self.prompt
        if isinstance(p, str):
            return [p]
        if p and isinstance(p[0], int):
            return [p]  # type: ignore[list-item]
        return p  # type: ignore[return-value]

    def prompt_token_bound(self) -> int:
        # token ids are exact; text is a token per byte plus BOS/EOS-like specials
        return sum(len(p) if isinstance(p, list) else len(p.encode()) + TEXT_SPECIAL_TOKENS for p in self._prompts())

    def num_choices(self) -> int:
        return len(self._prompts()) * super().num_choices()
