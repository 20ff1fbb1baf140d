"""Request bodies following the OpenAI API. Fields the gateway reads are typed; other OpenAI or worker parameters are
listed in PASS_THROUGH and go to the worker unchanged; anything else is refused as OpenAI refuses it."""

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from gateway.errors import InvalidRequest

# Forwarded untouched: the worker validates them (and answers 400 in OpenAI's shape for what it can't do).
PASS_THROUGH = frozenset({
    "frequency_penalty", "presence_penalty", "logit_bias", "logprobs", "top_logprobs", "seed", "response_format",
    "tools", "echo", "best_of", "suffix", "n",
    # the worker's sampling extras (vLLM's names)
    "top_k", "min_p", "repetition_penalty", "ignore_eos", "stop_token_ids", "skip_special_tokens",
})
# Valid for OpenAI but meaningless here (the platform's own bookkeeping, or tool choice without tool support, which
# the worker refuses via `tools`): accepted and not sent on.
DROPPED = frozenset({"user", "metadata", "store", "service_tier", "tool_choice", "parallel_tool_calls"})


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    include_usage: bool = False


class _Request(BaseModel):
    model_config = ConfigDict(extra="allow")

    model: str = Field(min_length=1)
    stream: bool = False
    stream_options: StreamOptions | None = None
    max_tokens: int | None = Field(default=None, ge=1)
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, gt=0, le=1)
    stop: str | list[str] | None = None

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

    def max_new_tokens(self) -> int | None:
        return self.max_tokens


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow")
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[dict[str, Any]] | None = None


class ChatCompletionRequest(_Request):
    messages: list[ChatMessage] = Field(min_length=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)

    def prompt_chars(self) -> int:
        total = 0
        for m in self.messages:
            if isinstance(m.content, str):
                total += len(m.content)
            elif m.content:
                total += sum(len(str(part.get("text", ""))) for part in m.content)
            total += 16  # role markers of the chat template
        return total

    def max_new_tokens(self) -> int | None:
        return self.max_completion_tokens or self.max_tokens


class CompletionRequest(_Request):
    prompt: str | list[str] | list[int] | list[list[int]]
    max_tokens: int | None = Field(default=16, ge=1)  # OpenAI's documented default for completions

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
