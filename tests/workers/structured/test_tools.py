"""Tool definitions, tool_choice, the call grammar and the incremental call parser (SmolLM2's vocabulary)."""

import json

import pytest

from workers.structured.compiler import GrammarCompiler, GrammarError
from workers.structured.matcher import GrammarState
from workers.structured.tool_parser import CallArguments, CallStart, Text, ToolCallParser
from workers.structured.tools import (
    default_tool_messages,
    parse_tool_choice,
    parse_tools,
    render_call,
    template_renders_tools,
    tool_grammar,
)
from workers.tokenizer import Tokenizer

WEATHER = {"type": "function", "function": {"name": "get_weather", "description": "Weather in a city",
                                            "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                                                           "required": ["city"]}}}
TIME = {"type": "function", "function": {"name": "get_time", "parameters": {"type": "object", "properties": {}}}}


@pytest.fixture(scope="module")
def compiler(smollm2_tokenizer: Tokenizer) -> GrammarCompiler:
    c = GrammarCompiler(smollm2_tokenizer, smollm2_tokenizer.vocab_size, [2])
    yield c
    c.close()


def _accepts(compiler: GrammarCompiler, tok: Tokenizer, spec, text: str) -> bool:
    state = GrammarState(compiler.compile(spec))
    return all(state.accept(t) for t in tok.encode(text, add_special_tokens=False)) and state.accept(2)


def test_tool_choice_validation() -> None:
    tools = parse_tools([WEATHER, TIME])
    assert parse_tool_choice(None, tools).mode == "auto"
    assert parse_tool_choice(None, []).mode == "none"
    assert parse_tool_choice({"type": "function", "function": {"name": "get_time"}}, tools).name == "get_time"
    for bad in ({"type": "function", "function": {"name": "nope"}}, "sometimes", {"type": "function"}):
        with pytest.raises(GrammarError) as err:
            parse_tool_choice(bad, tools)
        assert err.value.param == "tool_choice"
    with pytest.raises(GrammarError) as err:
        parse_tool_choice("required", [])
    assert err.value.param == "tool_choice"


@pytest.mark.parametrize(
    "tools",
    [
        [{"type": "function", "function": {"name": "has space"}}],
        [{"type": "code_interpreter"}],
        [WEATHER, WEATHER],
        [{"type": "function", "function": {"name": "f", "parameters": {"type": "objekt"}}}],
    ],
)
def test_bad_tools_name_the_param(tools: list) -> None:
    with pytest.raises(GrammarError) as err:
        parse_tools(tools)
    assert err.value.param == "tools"


def test_forced_grammar_accepts_only_calls_of_the_named_tool(compiler, smollm2_tokenizer) -> None:
    tools = parse_tools([WEATHER, TIME])
    named = tool_grammar(tools, parse_tool_choice({"type": "function", "function": {"name": "get_weather"}}, tools),
                         parallel=False)
    call = render_call("get_weather", {"city": "Paris"})
    assert _accepts(compiler, smollm2_tokenizer, named, call)
    assert not _accepts(compiler, smollm2_tokenizer, named, render_call("get_time", {}))
    assert not _accepts(compiler, smollm2_tokenizer, named, render_call("get_weather", {"town": "Paris"}))
    assert not _accepts(compiler, smollm2_tokenizer, named, "Sure! " + call)
    assert not _accepts(compiler, smollm2_tokenizer, named, '<tool_call>\n{"name": "get_weather", "arguments": '
                        '{\n  "city": "Paris"}}\n</tool_call>'), "arguments are compact JSON"
    named_parallel = tool_grammar(tools, parse_tool_choice({"type": "function", "function": {"name": "get_weather"}},
                                                           tools), parallel=True)
    assert not _accepts(compiler, smollm2_tokenizer, named_parallel, call + "\n" + call), "a named function: once"
    required_parallel = tool_grammar(tools, parse_tool_choice("required", tools), parallel=True)
    assert _accepts(compiler, smollm2_tokenizer, required_parallel, call + "\n" + render_call("get_time", {}))
    assert not _accepts(compiler, smollm2_tokenizer, required_parallel, "")


def test_auto_grammar_allows_text_or_a_constrained_call(compiler, smollm2_tokenizer) -> None:
    tools = parse_tools([WEATHER])
    auto = tool_grammar(tools, parse_tool_choice("auto", tools), parallel=True)
    assert _accepts(compiler, smollm2_tokenizer, auto, "It is sunny.")
    assert _accepts(compiler, smollm2_tokenizer, auto, "Let me check.\n" + render_call("get_weather", {"city": "Oslo"}))
    assert not _accepts(compiler, smollm2_tokenizer, auto, render_call("get_weather", {"city": 3}))
    assert tool_grammar(tools, parse_tool_choice("none", tools), parallel=True) is None


def _events(chunks: list[str]) -> tuple[str, list[tuple[str, str, str]]]:
    parser = ToolCallParser()
    text, calls = "", []
    for i, chunk in enumerate(chunks):
        for e in parser.feed(chunk, final=i == len(chunks) - 1):
            if isinstance(e, Text):
                text += e.text
            elif isinstance(e, CallStart):
                assert e.index == len(calls) and e.id.startswith("call_")
                calls.append([e.id, e.name, ""])
            elif isinstance(e, CallArguments):
                calls[e.index][2] += e.fragment
    assert [(c[1], c[2]) for c in calls] == [(c.name, c.arguments) for c in parser.calls]
    return text, [tuple(c) for c in calls]


def test_parser_gives_the_same_calls_for_any_chunking() -> None:
    output = ("Checking both.\n" + render_call("get_weather", {"city": "Rome", "note": "a } b"}) + "\n"
              + render_call("get_time", {}))
    whole_text, whole = _events([output])
    assert whole_text == "Checking both.\n"
    assert [(n, json.loads(a)) for _, n, a in whole] == [("get_weather", {"city": "Rome", "note": "a } b"}),
                                                           ("get_time", {})]
    for size in (1, 2, 3, 7, 13):
        chunks = [output[i : i + size] for i in range(0, len(output), size)]
        text, calls = _events(chunks)
        assert text == whole_text and [c[1:] for c in calls] == [c[1:] for c in whole], size


def test_parser_never_streams_part_of_a_marker_and_gives_back_non_calls() -> None:
    parser = ToolCallParser()
    assert parser.feed("a <tool") == [Text("a ")]
    assert parser.feed("ing>") == [Text("<tooling>")]
    text, calls = _events(["x <tool_call>not json at all</tool_call> y"])
    assert calls == [] and text == "x <tool_call>not json at all</tool_call> y"


def test_length_cut_call_keeps_what_arrived() -> None:
    text, calls = _events(['<tool_call>\n{"name": "get_weather", "arguments": {"city": "Ly'])
    assert calls[0][1:] == ("get_weather", '{"city": "Ly')


def test_default_prompt_rewrites_history() -> None:
    tools = parse_tools([WEATHER])
    msgs = default_tool_messages([
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": "", "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "18C"},
    ], tools)
    assert msgs[0]["role"] == "system" and msgs[0]["content"].startswith("Be brief.") and "get_weather" in msgs[0]["content"]
    assert msgs[2] == {"role": "assistant", "content": render_call("get_weather", '{"city": "Paris"}')}
    assert msgs[3] == {"role": "user", "content": "<tool_response>\n18C\n</tool_response>"}
    assert not template_renders_tools(None)
    assert template_renders_tools("{% if tools %}<tool_call>{% endif %}")
