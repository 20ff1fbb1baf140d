"""Every check of a request the engine could be handed, in one place: sampling bounds, prompt ids, context length.

Pure functions of the request and two facts of the engine (vocabulary size, context it serves), so the server can
run them on the caller's thread and answer a 400 before the request reaches the stepping thread. The engine's
parameter names are `prompt` and `max_tokens`; `param_names` maps them to what the client sent (chat: `messages`,
`max_completion_tokens`; completions: `logprobs` for top_logprobs).
"""

from collections.abc import Mapping

from workers.engine.sampling_params import InvalidRequestError, SamplingParams


def check_request(
    prompt: list[int], params: SamplingParams, *, vocab_size: int, max_model_len: int,
    param_names: Mapping[str, str] | None = None,
) -> int:  # fmt: skip
    """Raises InvalidRequestError naming the client's parameter; returns the resolved max_tokens."""
    try:
        params.validate(vocab_size)
        check_prompt_ids(prompt, vocab_size)
        return check_fits(len(prompt), params.max_tokens, max_model_len)
    except InvalidRequestError as exc:
        if param_names and exc.param in param_names:
            name = param_names[exc.param]
            exc.message = exc.message.replace(exc.param, name, 1) if exc.message.startswith(exc.param) else exc.message
            exc.args = (exc.message,)
            exc.param = name
        raise


def check_prompt_ids(ids: list[int], vocab_size: int) -> None:
    if not ids:
        raise InvalidRequestError("The prompt is empty.", param="prompt")
    bad = next((t for t in ids if not 0 <= t < vocab_size), None)
    if bad is not None:
        raise InvalidRequestError(f"Prompt token id {bad} is out of range.", param="prompt")


def check_fits(num_prompt_tokens: int, max_tokens: int | None, max_model_len: int) -> int:
    """The completion budget: max_tokens, or what the context leaves when it is None."""
    if num_prompt_tokens >= max_model_len:
        raise InvalidRequestError(
            f"This model's maximum context length is {max_model_len} tokens. However, your prompt is "
            f"{num_prompt_tokens} tokens, which leaves no room for the completion. Please reduce the length of the "
            "prompt.",
            param="prompt",
            code="context_length_exceeded",
        )
    if max_tokens is None:
        return max_model_len - num_prompt_tokens
    if num_prompt_tokens + max_tokens > max_model_len:
        raise InvalidRequestError(
            f"This model's maximum context length is {max_model_len} tokens. However, you requested "
            f"{num_prompt_tokens + max_tokens} tokens ({num_prompt_tokens} in the prompt, {max_tokens} in the "
            "completion). Please reduce the length of the prompt or completion.",
            param="max_tokens",
            code="context_length_exceeded",
        )
    return max_tokens
