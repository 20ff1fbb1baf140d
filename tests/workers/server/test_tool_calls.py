"""Tool calling against a real worker on SmolLM2 through the openai SDK: a forced call whose arguments validate, its
result sent back as a `tool` message and answered, streamed deltas as OpenAI sends them and equal to the whole
response, parallel calls, `none`, and bad input as 400s naming the param."""

import json

import jsonschema
import openai
import pytest

from tests.workers.server._serve import MODEL

WEATHER_PARAMS = {"type": "object", "properties": {"city": {"type": "string", "maxLength": 20},
                                                   "unit": {"enum": ["celsius", "fahrenheit"]}},
                  "required": ["city", "unit"], "additionalProperties": False}
TOOLS = [
    {"type": "function", "function": {"name": "get_weather", "description": "Current weather in a city.",
                                      "parameters": WEATHER_PARAMS}},
    {"type": "function", "function": {"name": "get_time", "description": "Local time in a city.",
                                      "parameters": {"type": "object", "properties": {
                                          "city": {"type": "string", "maxLength": 20}}, "required": ["city"]}}},
]
ASK = [{"role": "user", "content": "What is the weather in Paris?"}]
NAMED = {"type": "function", "function": {"name": "get_weather"}}


def _call(client: openai.OpenAI, **kw):
    kw.setdefault("messages", ASK)
    kw.setdefault("temperature", 0)
    kw.setdefault("max_tokens", 120)
    return client.chat.completions.create(model=MODEL, tools=TOOLS, **kw)


def test_forced_call_then_the_tool_result_is_answered(client: openai.OpenAI):
    first = _call(client, tool_choice=NAMED)
    choice = first.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content is None and len(choice.message.tool_calls) == 1
    call = choice.message.tool_calls[0]
    assert call.type == "function" and call.id.startswith("call_") and call.function.name == "get_weather"
    jsonschema.validate(json.loads(call.function.arguments), WEATHER_PARAMS)
    history = [*ASK, choice.message,  # the SDK's own message object, sent back as the README shows
               {"role": "tool", "tool_call_id": call.id, "content": '{"temperature": 18, "sky": "clear"}'}]
    answer = _call(client, messages=history, max_tokens=40)
    assert answer.choices[0].finish_reason in ("stop", "length")
    assert answer.choices[0].message.content and not answer.choices[0].message.tool_calls
    required = _call(client, tool_choice="required")
    assert required.choices[0].finish_reason == "tool_calls"
    for c in required.choices[0].message.tool_calls:
        schema = next(t["function"]["parameters"] for t in TOOLS if t["function"]["name"] == c.function.name)
        jsonschema.validate(json.loads(c.function.arguments), schema)


def test_streamed_calls_equal_the_whole_response(client: openai.OpenAI):
    whole = _call(client, tool_choice="required", parallel_tool_calls=True).choices[0]
    chunks = list(_call(client, tool_choice="required", parallel_tool_calls=True, stream=True))
    calls: dict[int, dict] = {}
    for chunk in chunks:
        for tc in (chunk.choices[0].delta.tool_calls or []) if chunk.choices else []:
            if tc.index not in calls:  # OpenAI's first delta of a call: index, id, type and name, empty arguments
                assert tc.id and tc.type == "function" and tc.function.name and tc.function.arguments == ""
                calls[tc.index] = {"id": tc.id, "name": tc.function.name, "arguments": ""}
            else:
                assert tc.id is None and tc.function.name is None
                calls[tc.index]["arguments"] += tc.function.arguments
    fragments = sum(1 for c in chunks if c.choices and c.choices[0].delta.tool_calls)
    assert fragments > len(calls), "arguments arrive in fragments, not in one piece"
    finish = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finish == [whole.finish_reason] == ["tool_calls"]
    assert [(c["name"], c["arguments"]) for _, c in sorted(calls.items())] == [
        (c.function.name, c.function.arguments) for c in whole.message.tool_calls]


def test_parallel_calls_when_allowed_and_one_when_not(client: openai.OpenAI):
    messages = [{"role": "system", "content": "Call get_weather once for each city the user names."},
                {"role": "user", "content": "Weather in Paris, in London and in Rome?"}]
    tools = [TOOLS[0]]
    parallel = client.chat.completions.create(model=MODEL, tools=tools, tool_choice="required", messages=messages,
                                              temperature=0, max_tokens=120, parallel_tool_calls=True)
    calls = parallel.choices[0].message.tool_calls
    assert parallel.choices[0].finish_reason == "tool_calls" and len(calls) >= 2
    assert len({c.id for c in calls}) == len(calls)
    for c in calls:
        jsonschema.validate(json.loads(c.function.arguments), WEATHER_PARAMS)
    single = client.chat.completions.create(model=MODEL, tools=tools, tool_choice="required", messages=messages,
                                            temperature=0, max_tokens=120, parallel_tool_calls=False)
    assert len(single.choices[0].message.tool_calls) == 1


def test_tool_choice_none_answers_in_text(client: openai.OpenAI):
    reply = _call(client, tool_choice="none", max_tokens=16)
    assert reply.choices[0].message.tool_calls is None and reply.choices[0].finish_reason in ("stop", "length")


@pytest.mark.parametrize(
    ("kw", "param"),
    [
        ({"tool_choice": {"type": "function", "function": {"name": "launch_rockets"}}}, "tool_choice"),
        ({"tool_choice": "sometimes"}, "tool_choice"),
        ({"tools": [{"type": "function", "function": {"name": "bad name"}}]}, "tools"),
        ({"tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "objekt"}}}]}, "tools"),
        ({"messages": [*ASK, {"role": "tool", "tool_call_id": "call_missing", "content": "18C"}]},
         "messages.[1].tool_call_id"),
        ({"messages": [*ASK, {"role": "tool", "content": "18C"}]}, "messages.[1].tool_call_id"),
    ],
)
def test_bad_tool_input_is_a_400_naming_the_param(client: openai.OpenAI, kw, param):
    body = {"model": MODEL, "messages": ASK, "tools": TOOLS, "max_tokens": 4, **kw}
    with pytest.raises(openai.BadRequestError) as exc:
        client.chat.completions.create(**body)
    assert exc.value.status_code == 400 and exc.value.body["param"] == param
