"""Structured output and tool calls end to end, every part real: the openai SDK through a gateway process to a
SmolLM2 worker. The gateway forwards tool_choice / parallel_tool_calls / response_format (it used to drop the first
two), a forced call's arguments validate, its result goes back as a `tool` message and is answered, a streamed call
equals the whole one, and a malformed schema comes back as the worker's 400 naming `response_format`."""

import json

import jsonschema
import openai
import pytest

from tests.gateway.gateway_testlib import sdk

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]
SMOLLM2 = "smollm2-135m-instruct"
PARAMS = {"type": "object", "properties": {"city": {"type": "string", "maxLength": 20}}, "required": ["city"],
          "additionalProperties": False}
TOOLS = [{"type": "function", "function": {"name": "get_weather", "description": "Weather in a city.",
                                           "parameters": PARAMS}},
         {"type": "function", "function": {"name": "get_time", "parameters": PARAMS}}]
ASK = [{"role": "user", "content": "What is the weather in Oslo?"}]


def test_tool_loop_and_json_schema_through_the_gateway(gateway, e2e_account, smollm2_catalog) -> None:
    client = sdk(gateway.url, e2e_account("tools").secret)
    kw = dict(model=SMOLLM2, messages=ASK, tools=TOOLS, temperature=0, max_tokens=60, parallel_tool_calls=False,
              tool_choice={"type": "function", "function": {"name": "get_time"}})
    first = client.chat.completions.create(**kw)
    choice = first.choices[0]
    assert choice.finish_reason == "tool_calls" and first.system_fingerprint
    [call] = choice.message.tool_calls
    assert call.function.name == "get_time", "the gateway passed tool_choice on (auto would pick get_weather)"
    jsonschema.validate(json.loads(call.function.arguments), PARAMS)

    chunks = list(client.chat.completions.create(**kw, stream=True))
    streamed = "".join(tc.function.arguments or "" for c in chunks if c.choices for tc in c.choices[0].delta.tool_calls or [])
    assert streamed == call.function.arguments

    history = [*ASK, choice.message, {"role": "tool", "tool_call_id": call.id, "content": "10:42"}]
    answer = client.chat.completions.create(model=SMOLLM2, messages=history, tools=TOOLS, max_tokens=24,
                                            temperature=0)
    assert answer.choices[0].message.content and answer.choices[0].finish_reason in ("stop", "length")

    schema = {"type": "object", "properties": {"city": {"type": "string", "maxLength": 16},
                                               "sunny": {"type": "boolean"}}, "required": ["city", "sunny"]}
    reply = client.chat.completions.create(
        model=SMOLLM2, messages=ASK, temperature=0, max_tokens=60,
        response_format={"type": "json_schema", "json_schema": {"name": "w", "schema": schema, "strict": True}},
    )
    assert reply.choices[0].finish_reason == "stop"
    jsonschema.validate(json.loads(reply.choices[0].message.content), schema)

    with pytest.raises(openai.BadRequestError) as exc:
        client.chat.completions.create(model=SMOLLM2, messages=ASK, max_tokens=4, response_format={
            "type": "json_schema", "json_schema": {"name": "w", "schema": {"type": "objekt"}}})
    assert exc.value.body["param"] == "response_format"
    with pytest.raises(openai.BadRequestError) as exc:
        client.chat.completions.create(model=SMOLLM2, messages=ASK, max_tokens=4, tools=TOOLS,
                                       tool_choice={"type": "function", "function": {"name": "launch"}})
    assert exc.value.body["param"] == "tool_choice"
