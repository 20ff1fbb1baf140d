"""From a validated OpenAI request to what the engine takes: chat messages, prompt token ids and SamplingParams.

Everything a client can get wrong beyond types is checked here (or by SamplingParams.validate), before the request
reaches the engine thread, so a bad request never costs the batch anything.
"""

from typing import Any

from workers.engine.sampling_params import InvalidRequestError, SamplingParams
from workers.server.errors import OpenAIError
from workers.server.protocol import ChatCompletionRequest, CompletionRequest, TextContentPart

MAX_TOP_LOGPROBS = 20


def include_usage(req: ChatCompletionRequest | CompletionRequest) -> bool:
    if req.stream_options is not None and not req.stream:
        raise OpenAIError(
            "stream_options is only allowed when stream is true.", param="stream_options", code="invalid_value"
        )
    return bool(req.stream_options and req.stream_options.include_usage)


def continuous_usage(req: ChatCompletionRequest | CompletionRequest) -> bool:
    """vLLM's `stream_options.continuous_usage_stats`: every streamed chunk carries the usage so far."""
    return bool(req.stream and req.stream_options and req.stream_options.continuous_usage_stats)


def chat_messages(req: ChatCompletionRequest) -> list[dict[str, str]]:
    if not req.messages:
        raise OpenAIError("'messages' must contain at least one message.", param="messages", code="empty_array")
    if req.tools:
        raise OpenAIError("Tool calling is not supported by this worker.", param="tools", code="unsupported_parameter")
    if req.response_format and req.response_format.get("type", "text") != "text":
        raise OpenAIError(
            "Only response_format {'type': 'text'} is supported.", param="response_format", code="unsupported_value"
        )
    out: list[dict[str, str]] = []
    for i, msg in enumerate(req.messages):
        if isinstance(msg.content, list):
            texts: list[str] = []
            for j, part in enumerate(msg.content):
                if not isinstance(part, TextContentPart):
                    raise OpenAIError(
                        f"Content parts of type '{part.type}' are not supported; send text.",
                        param=f"messages.[{i}].content.[{j}].type",
                        code="unsupported_value",
                    )
                texts.append(part.text)
            content = "\n".join(texts)
        elif msg.content is None:
            if msg.role != "assistant":
                raise OpenAIError(
                    f"Message {i} with role '{msg.role}' must have content.",
                    param=f"messages.[{i}].content",
                    code="missing_required_parameter",
                )
            content = ""
        else:
            content = msg.content
        # "developer" is OpenAI's newer name for the system role; open chat templates only know "system".
        role = "system" if msg.role == "developer" else msg.role
        out.append({"role": role, "content": content})
    return out


def _logit_bias(raw: dict[str, float] | None) -> dict[int, float]:
    bias: dict[int, float] = {}
    for key, value in (raw or {}).items():
        try:
            bias[int(key)] = float(value)
        except ValueError:
            raise OpenAIError(
                f"logit_bias keys must be token ids, got {key!r}.", param="logit_bias", code="invalid_value"
            ) from None
    return bias


def _stop(raw: str | list[str] | None) -> list[str]:
    if raw is None:
        return []
    stops = [raw] if isinstance(raw, str) else list(raw)
    if any(not s for s in stops):
        raise OpenAIError("Stop sequences must not be empty strings.", param="stop", code="invalid_value")
    return stops


def _common(req: ChatCompletionRequest | CompletionRequest) -> dict[str, Any]:
    return {
        "n": req.n,
        "temperature": 1.0 if req.temperature is None else req.temperature,
        "top_p": 1.0 if req.top_p is None else req.top_p,
        "top_k": req.top_k or 0,
        "min_p": req.min_p or 0.0,
        "seed": req.seed,
        "presence_penalty": req.presence_penalty or 0.0,
        "frequency_penalty": req.frequency_penalty or 0.0,
        "repetition_penalty": 1.0 if req.repetition_penalty is None else req.repetition_penalty,
        "logit_bias": _logit_bias(req.logit_bias),
        "stop": _stop(req.stop),
        "stop_token_ids": list(req.stop_token_ids or []),
        "ignore_eos": req.ignore_eos,
        "skip_special_tokens": req.skip_special_tokens,
    }


def _validated(params: SamplingParams, vocab_size: int) -> SamplingParams:
    try:
        params.validate(vocab_size)
    except InvalidRequestError as exc:
        raise OpenAIError(exc.message, param=exc.param, code=exc.code or "invalid_value") from None
    return params


def chat_sampling_params(req: ChatCompletionRequest, vocab_size: int) -> SamplingParams:
    if req.top_logprobs is not None and not req.logprobs:
        raise OpenAIError("top_logprobs requires logprobs to be true.", param="top_logprobs", code="invalid_value")
    max_tokens = req.max_completion_tokens if req.max_completion_tokens is not None else req.max_tokens
    param = "max_completion_tokens" if req.max_completion_tokens is not None else "max_tokens"
    if max_tokens is not None and max_tokens < 1:
        raise OpenAIError(f"{param} must be at least 1.", param=param, code="invalid_value")
    params = SamplingParams(
        **_common(req), max_tokens=max_tokens, logprobs=req.logprobs, top_logprobs=req.top_logprobs or 0
    )
    return _validated(params, vocab_size)


def completion_sampling_params(req: CompletionRequest, vocab_size: int) -> SamplingParams:
    if req.echo:
        raise OpenAIError("echo is not supported by this worker.", param="echo", code="unsupported_parameter")
    if req.suffix:
        raise OpenAIError("suffix is not supported by this worker.", param="suffix", code="unsupported_parameter")
    if req.best_of is not None and req.best_of != req.n:
        raise OpenAIError("best_of other than n is not supported.", param="best_of", code="unsupported_parameter")
    if req.logprobs is not None and not 0 <= req.logprobs <= MAX_TOP_LOGPROBS:
        raise OpenAIError(
            f"logprobs must be between 0 and {MAX_TOP_LOGPROBS}.", param="logprobs", code="invalid_value"
        )
    if req.max_tokens is not None and req.max_tokens < 1:
        raise OpenAIError("max_tokens must be at least 1.", param="max_tokens", code="invalid_value")
    params = SamplingParams(
        **_common(req),
        max_tokens=req.max_tokens,
        logprobs=req.logprobs is not None,
        top_logprobs=req.logprobs or 0,
    )
    return _validated(params, vocab_size)


def completion_prompt(req: CompletionRequest) -> str | list[int]:
    """One prompt per request: a string or a list of token ids (a batch of one is unwrapped)."""
    prompt = req.prompt
    if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], str | list):
        prompt = prompt[0]
    if isinstance(prompt, list) and prompt and not isinstance(prompt[0], int):
        raise OpenAIError(
            "Batched prompts are not supported; send one prompt per request.", param="prompt", code="invalid_value"
        )
    return prompt  # type: ignore[return-value]


def check_prompt_ids(ids: list[int], vocab_size: int) -> None:
    if not ids:
        raise OpenAIError("The prompt is empty.", param="prompt", code="invalid_value")
    bad = next((t for t in ids if not 0 <= t < vocab_size), None)
    if bad is not None:
        raise OpenAIError(f"Prompt token id {bad} is out of range.", param="prompt", code="invalid_value")


def check_fits(
    num_prompt_tokens: int, max_tokens: int | None, max_model_len: int | None, *, prompt_param: str, max_param: str
) -> None:
    """Mirror of the engine's own check, so the error names the right parameter; the engine re-checks."""
    if max_model_len is None:
        return
    if num_prompt_tokens >= max_model_len:
        raise OpenAIError(
            f"This model's maximum context length is {max_model_len} tokens, but the prompt has "
            f"{num_prompt_tokens} tokens. Shorten the prompt.",
            param=prompt_param,
            code="context_length_exceeded",
        )
    if max_tokens is not None and num_prompt_tokens + max_tokens > max_model_len:
        raise OpenAIError(
            f"This model's maximum context length is {max_model_len} tokens. However, you requested "
            f"{num_prompt_tokens + max_tokens} tokens ({num_prompt_tokens} in the prompt, "
            f"{max_tokens} for the completion). Reduce the prompt or the completion length.",
            param=max_param,
            code="context_length_exceeded",
        )
