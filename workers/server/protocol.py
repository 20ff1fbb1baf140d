"""OpenAI request/response models for the worker, to the letter of the public API (plus vLLM's sampling extras).

Requests validate in pydantic's strict mode from JSON, so `"temperature": "hot"` or `"n": "2"` is a 400, not a
silent coercion. Unknown fields are ignored, as OpenAI-compatible servers do. `tools` and `response_format` are
checked and compiled by workers.structured (via workers.server.chat_tools); the accepted-but-inert OpenAI fields are
typed here so a wrong type is still a 400: prompt_cache_key (prefix caching is automatic and per account),
reasoning_effort (no reasoning models are served), service_tier (one tier), metadata and
store (nothing is stored), prediction (kept on the request for speculative decoding).
"""

import hashlib
import importlib.metadata
import time
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class _Request(BaseModel):
    # NaN and Infinity (JSON extensions Python writes) and overflowing numbers like 1e400 are refused as not finite.
    model_config = ConfigDict(strict=True, extra="ignore", allow_inf_nan=False)


class StreamOptions(_Request):
    include_usage: bool = False
    # vLLM's extra: usage so far on every streamed chunk (the gateway meters a stream the client abandons from it)
    continuous_usage_stats: bool = False


class TextContentPart(_Request):
    type: Literal["text"]
    text: str


class OtherContentPart(_Request):
    """image_url, input_audio, file...: recognised so the error can name the part, never served."""

    type: str


ContentPart = TextContentPart | OtherContentPart


class FunctionCall(_Request):
    name: str
    arguments: str


class ToolCallIn(_Request):
    """A call an assistant message made, sent back in the history."""

    id: str
    type: Literal["function"] = "function"
    function: FunctionCall


class ChatMessage(_Request):
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[ContentPart] | None = None
    name: str | None = None
    tool_calls: list[ToolCallIn] | None = None  # assistant
    tool_call_id: str | None = None  # tool


class Prediction(_Request):
    """Predicted output (OpenAI's `prediction`): accepted and kept for speculative decoding."""

    type: Literal["content"]
    content: str | list[TextContentPart]


class ChatCompletionRequest(_Request):
    model: str
    messages: list[ChatMessage]
    stream: bool = False
    stream_options: StreamOptions | None = None
    n: int = 1
    max_tokens: int | None = None
    max_completion_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    seed: int | None = None
    stop: str | list[str] | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    logit_bias: dict[str, float] | None = None
    logprobs: bool = False
    top_logprobs: int | None = None
    user: str | None = None
    tools: list[Any] | None = None
    tool_choice: str | dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None
    response_format: dict[str, Any] | None = None
    # accepted OpenAI fields (see the module docstring for what each does here)
    prompt_cache_key: str | None = None
    reasoning_effort: str | None = None
    service_tier: str | None = None
    metadata: dict[str, str] | None = None
    store: bool | None = None
    prediction: Prediction | None = None
    # vLLM's extras
    top_k: int | None = None
    min_p: float | None = None
    repetition_penalty: float | None = None
    stop_token_ids: list[int] | None = None
    ignore_eos: bool = False
    skip_special_tokens: bool = True


class CompletionRequest(_Request):
    model: str
    prompt: str | list[int] | list[str] | list[list[int]]
    stream: bool = False
    stream_options: StreamOptions | None = None
    n: int = 1
    max_tokens: int | None = 16  # OpenAI's default for the legacy endpoint
    temperature: float | None = None
    top_p: float | None = None
    seed: int | None = None
    stop: str | list[str] | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    logit_bias: dict[str, float] | None = None
    logprobs: int | None = None  # legacy: how many top alternatives per token, 0..20
    echo: bool = False
    suffix: str | None = None
    best_of: int | None = None
    user: str | None = None
    top_k: int | None = None
    min_p: float | None = None
    repetition_penalty: float | None = None
    stop_token_ids: list[int] | None = None
    ignore_eos: bool = False
    skip_special_tokens: bool = True


# ---- responses -----------------------------------------------------------------------------------------------------


class PromptTokensDetails(BaseModel):
    cached_tokens: int = 0


class CompletionTokensDetails(BaseModel):
    # Predicted outputs: prediction tokens verification kept / rejected. Rejected ones are counted in
    # completion_tokens too (OpenAI bills them as completion tokens; README, "Predicted outputs").
    accepted_prediction_tokens: int = 0
    rejected_prediction_tokens: int = 0
    reasoning_tokens: int = 0


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    prompt_tokens_details: PromptTokensDetails
    completion_tokens_details: CompletionTokensDetails = CompletionTokensDetails()


class TopLogprob(BaseModel):
    token: str
    logprob: float
    bytes: list[int] | None


class ChatTokenLogprob(TopLogprob):
    top_logprobs: list[TopLogprob]


class ChatLogprobs(BaseModel):
    content: list[ChatTokenLogprob]


class ToolCallFunction(BaseModel):
    name: str
    arguments: str


class ToolCall(BaseModel):
    id: str
    type: Literal["function"] = "function"
    function: ToolCallFunction


class ChatResponseMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str | None
    tool_calls: list[ToolCall] | None = None


class ChatChoice(BaseModel):
    index: int
    message: ChatResponseMessage
    logprobs: ChatLogprobs | None = None
    finish_reason: str | None


def _now() -> int:
    return int(time.time())


def _fingerprint() -> str:
    # OpenAI's system_fingerprint names the serving configuration; ours changes with the code's version.
    try:
        version = importlib.metadata.version("hearth")
    except importlib.metadata.PackageNotFoundError:
        version = "dev"
    return "fp_hearth_" + hashlib.sha256(version.encode()).hexdigest()[:10]


SYSTEM_FINGERPRINT = _fingerprint()


class ChatCompletion(BaseModel):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int = Field(default_factory=_now)
    model: str
    system_fingerprint: str = SYSTEM_FINGERPRINT
    choices: list[ChatChoice]
    usage: Usage


class ToolCallDeltaFunction(BaseModel):
    name: str | None = None
    arguments: str | None = None


class ToolCallDelta(BaseModel):
    """OpenAI streams a call as: index, id, type and name (arguments "") first, then `arguments` fragments."""

    index: int
    id: str | None = None
    type: Literal["function"] | None = None
    function: ToolCallDeltaFunction


class ChatDelta(BaseModel):
    role: Literal["assistant"] | None = None
    content: str | None = None
    tool_calls: list[ToolCallDelta] | None = None


class ChatChunkChoice(BaseModel):
    index: int
    delta: ChatDelta
    logprobs: ChatLogprobs | None = None
    finish_reason: str | None = None


class ChatCompletionChunk(BaseModel):
    id: str
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    created: int = Field(default_factory=_now)
    model: str
    system_fingerprint: str = SYSTEM_FINGERPRINT
    choices: list[ChatChunkChoice]
    usage: Usage | None = None


class CompletionLogprobs(BaseModel):
    tokens: list[str] = Field(default_factory=list)
    token_logprobs: list[float] = Field(default_factory=list)
    top_logprobs: list[dict[str, float]] = Field(default_factory=list)
    text_offset: list[int] = Field(default_factory=list)


class CompletionChoice(BaseModel):
    index: int
    text: str
    logprobs: CompletionLogprobs | None = None
    finish_reason: str | None = None


class Completion(BaseModel):
    id: str
    object: Literal["text_completion"] = "text_completion"
    created: int = Field(default_factory=_now)
    model: str
    system_fingerprint: str = SYSTEM_FINGERPRINT
    choices: list[CompletionChoice]
    usage: Usage | None = None


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int = Field(default_factory=_now)
    owned_by: str = "hearth"
    root: str
    parent: str | None = None
    max_model_len: int | None = None


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]

