"""Tools: OpenAI's `tools` / `tool_choice` / `parallel_tool_calls` -> the prompt the model sees and the grammar its
calls are constrained by.

The call syntax is Hermes' (Qwen2.5, Hermes, SmolLM3 and most open tool-tuned models use it):

    <tool_call>
    {"name": "get_weather", "arguments": {"city": "Paris"}}
    </tool_call>

A model whose own chat template renders `tools` and emits `<tool_call>` gets the tools and the history through its
template; any other model (SmolLM2 among them) gets DEFAULT_TOOL_PROMPT as a system message, its assistant calls
written back in the same syntax and tool results as user turns wrapped in <tool_response>. With `required` or a named
function the whole output is the call(s); with `auto` text may come first and each `<tool_call>` opened is then
constrained to a call of a known function, its arguments to that function's schema.
"""

import json
import re
from dataclasses import dataclass
from typing import Any, Literal

import xgrammar as xgr

from workers.structured.compiler import GrammarError, GrammarSpec
from workers.structured.formats import check_json_schema

CALL_OPEN, CALL_CLOSE = "<tool_call>", "</tool_call>"
_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_EMPTY_PARAMS: dict[str, Any] = {"type": "object", "properties": {}}

DEFAULT_TOOL_PROMPT = (
    "You are a function calling AI model. You are provided with function signatures within <tools></tools> XML "
    "tags. You may call one or more functions to assist with the user query. Don't make assumptions about what "
    "values to plug into functions. Here are the available tools:\n<tools>\n{tools}\n</tools>\n"
    "For each function call return a json object with function name and arguments within <tool_call></tool_call> "
    'XML tags:\n<tool_call>\n{{"name": <function-name>, "arguments": <args-json-object>}}\n</tool_call>'
)


@dataclass(frozen=True, slots=True)
class Tool:
    name: str
    description: str | None
    parameters: dict[str, Any]
    parameters_json: str  # canonical, as compiled

    def openai(self) -> dict[str, Any]:
        fn: dict[str, Any] = {"name": self.name, "parameters": self.parameters}
        if self.description:
            fn["description"] = self.description
        return {"type": "function", "function": fn}


ChoiceMode = Literal["none", "auto", "required", "named"]


@dataclass(frozen=True, slots=True)
class ToolChoice:
    mode: ChoiceMode
    name: str | None = None


def parse_tools(raw: list[Any] | None) -> list[Tool]:
    tools: list[Tool] = []
    for i, item in enumerate(raw or []):
        where = f"tools.[{i}]"
        if not isinstance(item, dict) or item.get("type", "function") != "function":
            raise GrammarError(f"{where}: only tools of type 'function' are supported.", param="tools",
                               code="invalid_value")
        fn = item.get("function")
        if not isinstance(fn, dict):
            raise GrammarError(f"{where}.function is required.", param="tools", code="missing_required_parameter")
        name = fn.get("name")
        if not isinstance(name, str) or not _NAME.match(name):
            raise GrammarError(f"{where}.function.name must be 1-64 characters of a-z, A-Z, 0-9, _ and -.",
                               param="tools", code="invalid_value")
        if any(t.name == name for t in tools):
            raise GrammarError(f"Duplicate tool name {name!r}.", param="tools", code="invalid_value")
        params = fn.get("parameters", _EMPTY_PARAMS)
        desc = fn.get("description")
        tools.append(Tool(name, desc if isinstance(desc, str) else None, params, check_json_schema(params, "tools")))
    return tools


def parse_tool_choice(raw: Any, tools: list[Tool]) -> ToolChoice:
    if raw is None:
        return ToolChoice("auto" if tools else "none")
    if raw in ("none", "auto", "required"):
        if raw != "none" and not tools:
            raise GrammarError(f"tool_choice '{raw}' needs at least one tool in 'tools'.", param="tool_choice",
                               code="invalid_value")
        return ToolChoice(raw)
    if isinstance(raw, dict) and raw.get("type") == "function" and isinstance(raw.get("function"), dict):
        name = raw["function"].get("name")
        if not any(t.name == name for t in tools):
            raise GrammarError(f"tool_choice names the function {name!r}, which is not in 'tools'.",
                               param="tool_choice", code="invalid_value")
        return ToolChoice("named", name)
    raise GrammarError(
        "tool_choice must be 'none', 'auto', 'required' or {'type': 'function', 'function': {'name': ...}}.",
        param="tool_choice", code="invalid_value",
    )


def _arguments_grammar(tool: Tool) -> str:
    # Compact JSON (", " and ": ", no newlines), as response_format's: a tag's json_schema content would allow any
    # whitespace, and SmolLM2 then spends its tokens indenting.
    try:
        return str(xgr.Grammar.from_json_schema(tool.parameters_json, any_whitespace=False, strict_mode=True))
    except (RuntimeError, ValueError) as exc:
        raise GrammarError(f"tools: the parameters of {tool.name!r} can't be compiled: {str(exc)[-200:]}",
                           param="tools", code="invalid_grammar") from None


def _call_tag(tool: Tool) -> dict[str, Any]:
    # begin ends where the arguments start, so the grammar constrains exactly the arguments object
    return {
        "type": "tag",
        "begin": f'{CALL_OPEN}\n{{"name": {json.dumps(tool.name)}, "arguments": ',
        "content": {"type": "grammar", "grammar": _arguments_grammar(tool)},
        "end": f"}}\n{CALL_CLOSE}",
    }


def tool_grammar(tools: list[Tool], choice: ToolChoice, parallel: bool) -> GrammarSpec | None:
    """The structural tag a request's calls follow; None when the model answers in free text (`none`)."""
    if choice.mode == "none" or not tools:
        return None
    allowed = [t for t in tools if choice.mode != "named" or t.name == choice.name]
    tags = [_call_tag(t) for t in allowed]
    if choice.mode == "auto":
        fmt: dict[str, Any] = {"type": "triggered_tags", "triggers": [CALL_OPEN], "tags": tags,
                               "stop_after_first": not parallel}
    else:  # a named function is called once (OpenAI's "forces the model to call that function")
        fmt = {"type": "tags_with_separator", "tags": tags, "separator": "\n", "at_least_one": True,
               "stop_after_first": not parallel or choice.mode == "named"}
    return GrammarSpec("structural_tag", json.dumps({"type": "structural_tag", "format": fmt}), "tools")


def template_renders_tools(chat_template: str | None) -> bool:
    """Whether the model's own template lays out `tools` in the call syntax this module parses."""
    return bool(chat_template) and "tools" in chat_template and CALL_OPEN in chat_template  # type: ignore[operator]


def _arguments_text(arguments: Any) -> str:
    return arguments if isinstance(arguments, str) else json.dumps(arguments, ensure_ascii=False)


def render_call(name: str, arguments: Any) -> str:
    return f'{CALL_OPEN}\n{{"name": {json.dumps(name)}, "arguments": {_arguments_text(arguments)}}}\n{CALL_CLOSE}'


def default_tool_messages(messages: list[dict[str, Any]], tools: list[Tool]) -> list[dict[str, Any]]:
    """The conversation rewritten for a template that knows nothing of tools: plain role/content messages."""
    out: list[dict[str, Any]] = []
    if tools:
        listing = "\n".join(json.dumps(t.openai(), ensure_ascii=False) for t in tools)
        prompt = DEFAULT_TOOL_PROMPT.format(tools=listing)
        if messages and messages[0]["role"] == "system":
            prompt = f"{messages[0]['content']}\n\n{prompt}"
            messages = messages[1:]
        out.append({"role": "system", "content": prompt})
    for msg in messages:
        if msg["role"] == "assistant" and msg.get("tool_calls"):
            calls = [render_call(c["function"]["name"], c["function"]["arguments"]) for c in msg["tool_calls"]]
            text = "\n".join(([msg["content"]] if msg.get("content") else []) + calls)
            out.append({"role": "assistant", "content": text})
        elif msg["role"] == "tool":
            out.append({"role": "user", "content": f"<tool_response>\n{msg['content']}\n</tool_response>"})
        else:
            out.append({"role": msg["role"], "content": msg["content"]})
    return out
