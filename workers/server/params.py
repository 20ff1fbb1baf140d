"""From a validated OpenAI request to what the engine takes: chat messages, prompt token ids and SamplingParams.

What only the protocol knows (fields this worker doesn't support, stream_options without stream, message shapes) is
checked here; every bound on the sampling parameters, the prompt and the context is checked once, by
workers.engine.validation (run by the engine's new_request on the caller's thread, before the stepping thread sees
the request). `param_names` tells it what the client called the engine's parameters.
"""

from typing import Any

from workers.engine.sampling_params import SamplingParams
from workers.server.errors import OpenAIError
from workers.server.protocol import ChatCompletionRequest, CompletionRequest, TextContentPart


def include_usage(req: ChatCompletionRequest | CompletionRequest) -> bool:
    if req.stream_options is not None and not req.stream:
        raise OpenAIError(
            "stream_options is only allowed when stream is true.", param="stream_options", code="invalid_value"
        )
    return bool(req.stream_options and req.stream_options.include_usage)


def continuous_usage(req: ChatCompletionRequest | CompletionRequest) -> bool:
    """vLLM's `stream_options.continuous_usage_stats`: every streamed chunk carries the usage so far."""
    return bool(req.stream and req.stream_options and req.stream_options.continuous_usage_stats)


def chat_messages(req: ChatCompletionRequest) -> list[dict[str, Any]]:
    """Role/content dicts for the chat template; an assistant's `tool_calls` and a tool's `tool_call_id` ride along
    (workers.server.chat_tools checks and lays them out)."""
    if not req.messages:
        raise OpenAIError("'messages' must contain at least one message.", param="messages", code="empty_array")
    out: list[dict[str, Any]] = []
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
        item: dict[str, Any] = {"role": role, "content": content}
        if msg.tool_calls and msg.role == "assistant":
            item["tool_calls"] = [c.model_dump() for c in msg.tool_calls]
        if msg.role == "tool":
            item["tool_call_id"] = msg.tool_call_id
        out.append(item)
    return out


def prediction_text(req: ChatCompletionRequest) -> str | None:
    """OpenAI's `prediction` content (a string or text parts, joined as given) or None."""
    if req.prediction is None:
        return None
    content = req.prediction.content
    return content if isinstance(content, str) else "".join(part.text for part in content)


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
        "top_k": 0 if req.top_k in (None, -1) else req.top_k,  # -1 is vLLM's "off"
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


def chat_param_names(req: ChatCompletionRequest) -> dict[str, str]:
    names = {"prompt": "messages"}
    if req.max_completion_tokens is not None:
        names["max_tokens"] = "max_completion_tokens"
    return names


COMPLETION_PARAM_NAMES = {"top_logprobs": "logprobs"}  # completions call the number of top logprobs `logprobs`


def chat_sampling_params(req: ChatCompletionRequest) -> SamplingParams:
    if req.top_logprobs is not None and not req.logprobs:
        raise OpenAIError("top_logprobs requires logprobs to be true.", param="top_logprobs", code="invalid_value")
    max_tokens = req.max_completion_tokens if req.max_completion_tokens is not None else req.max_tokens
    return SamplingParams(
        **_common(req), max_tokens=max_tokens, logprobs=req.logprobs, top_logprobs=req.top_logprobs or 0
    )


def completion_sampling_params(req: CompletionRequest) -> SamplingParams:
    if req.echo:
        raise OpenAIError("echo is not supported by this worker.", param="echo", code="unsupported_parameter")
    if req.suffix:
        raise OpenAIError("suffix is not supported by this worker.", param="suffix", code="unsupported_parameter")
    if req.best_of is not None and req.best_of != req.n:
        raise OpenAIError("best_of other than n is not supported.", param="best_of", code="unsupported_parameter")
    return SamplingParams(
        **_common(req),
        max_tokens=req.max_tokens,
        logprobs=req.logprobs is not None,
        top_logprobs=req.logprobs or 0,
    )


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
