"""The gateway forwards structured-output and tool fields to the worker (it used to drop tool_choice and
parallel_tool_calls) and still refuses what OpenAI refuses."""

import pytest

from gateway.errors import InvalidRequest
from gateway.schemas import ChatCompletionRequest

TOOLS = [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}]


def test_tool_and_format_fields_reach_the_worker() -> None:
    body = {
        "model": "m", "messages": [{"role": "user", "content": "hi"}], "tools": TOOLS,
        "tool_choice": {"type": "function", "function": {"name": "get_weather"}}, "parallel_tool_calls": False,
        "response_format": {"type": "json_object"}, "prediction": {"type": "content", "content": "x"},
        "prompt_cache_key": "k", "reasoning_effort": "low", "metadata": {"a": "b"}, "store": True,
        "service_tier": "auto", "user": "u",
    }
    req = ChatCompletionRequest.model_validate(body)
    req.check_extras()
    up = req.upstream_body("worker-model")
    for name in ("tools", "tool_choice", "parallel_tool_calls", "response_format", "prediction", "prompt_cache_key",
                 "reasoning_effort"):
        assert up[name] == body[name], name
    for name in ("metadata", "store", "service_tier", "user"):
        assert name not in up, name


def test_tools_and_calls_count_toward_the_prompt_estimate() -> None:
    plain = ChatCompletionRequest.model_validate({"model": "m", "messages": [{"role": "user", "content": "hi"}]})
    with_tools = ChatCompletionRequest.model_validate(
        {"model": "m", "messages": [{"role": "user", "content": "hi"}], "tools": TOOLS})
    assert with_tools.prompt_chars() > plain.prompt_chars() + 50


def test_unknown_fields_are_still_refused() -> None:
    req = ChatCompletionRequest.model_validate({"model": "m", "messages": [{"role": "user", "content": "hi"}],
                                                "functionz": []})
    with pytest.raises(InvalidRequest) as exc:
        req.check_extras()
    assert exc.value.param == "functionz"
