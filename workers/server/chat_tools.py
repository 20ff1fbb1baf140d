"""A chat request's tools and response_format -> what the engine runs (prompt messages, grammar), and the model's
text -> OpenAI's content / tool_calls, streamed or whole, through one parser per choice.

`response_format` and tools combine as: `tool_choice` required or named constrains the output to the call(s); with
`auto` the call grammar applies unless a response_format is given, which then wins (calls are still parsed).
"""

import json
from dataclasses import dataclass, field
from typing import Any

from workers.server.errors import OpenAIError
from workers.structured.compiler import GrammarSpec
from workers.structured.formats import response_format_spec
from workers.structured.tool_parser import CallArguments, CallStart, Text, ToolCall, ToolCallParser
from workers.structured.tools import (
    Tool,
    ToolChoice,
    default_tool_messages,
    parse_tool_choice,
    parse_tools,
    template_renders_tools,
    tool_grammar,
)


@dataclass(slots=True)
class ChatPlan:
    messages: list[dict[str, Any]]  # what the chat template renders
    template_tools: list[dict[str, Any]] | None  # `tools` for the template (when it lays them out itself)
    grammar: GrammarSpec | None
    parses_calls: bool  # whether the output goes through the tool-call parser


def plan_chat(
    messages: list[dict[str, Any]], *, tools: list[Any] | None, tool_choice: Any, parallel_tool_calls: bool | None,
    response_format: dict[str, Any] | None, chat_template: str | None,
) -> ChatPlan:  # fmt: skip
    """Raises GrammarError (an InvalidRequestError: 400 naming tools / tool_choice / response_format) or OpenAIError."""
    check_tool_history(messages)
    parsed = parse_tools(tools)
    choice = parse_tool_choice(tool_choice, parsed)
    fmt = response_format_spec(response_format)
    calls = tool_grammar(parsed, choice, parallel=parallel_tool_calls is not False)
    grammar = calls if choice.mode in ("required", "named") or fmt is None else fmt
    native = template_renders_tools(chat_template)
    if native:
        return ChatPlan(_native_messages(messages), [t.openai() for t in parsed] or None, grammar, _parses(choice))
    has_tool_turns = any(m["role"] == "tool" or m.get("tool_calls") for m in messages)
    shown = parsed if choice.mode != "none" else []
    if shown or has_tool_turns:
        messages = default_tool_messages(messages, shown)
    return ChatPlan(messages, None, grammar, _parses(choice) and bool(parsed))


def _parses(choice: ToolChoice) -> bool:
    return choice.mode != "none"


def _native_messages(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    # HF templates (Qwen2.5, Hermes) read a call's arguments as a mapping; OpenAI sends them as a JSON string.
    out = []
    for m in messages:
        if m.get("tool_calls"):
            calls = []
            for c in m["tool_calls"]:
                args = c["function"]["arguments"]
                try:
                    args = json.loads(args) if isinstance(args, str) else args
                except ValueError:
                    pass
                calls.append({**c, "function": {**c["function"], "arguments": args}})
            m = {**m, "tool_calls": calls}
        out.append(m)
    return out


def check_tool_history(messages: list[dict[str, Any]]) -> None:
    """Every `tool` message answers a call an earlier assistant message made, by its id."""
    ids: set[str] = set()
    for i, m in enumerate(messages):
        for call in m.get("tool_calls") or []:
            ids.add(call["id"])
        if m["role"] == "tool":
            call_id = m.get("tool_call_id")
            if not call_id:
                raise OpenAIError(f"Message {i} with role 'tool' needs a 'tool_call_id'.",
                                  param=f"messages.[{i}].tool_call_id", code="missing_required_parameter")
            if call_id not in ids:
                raise OpenAIError(
                    f"Message {i} with role 'tool' answers tool_call_id {call_id!r}, which no earlier assistant "
                    "message's 'tool_calls' holds.",
                    param=f"messages.[{i}].tool_call_id", code="invalid_value",
                )


@dataclass(slots=True)
class ChoiceOutput:
    """One choice's text through the tool-call parser: content deltas and OpenAI tool_call deltas."""

    parser: ToolCallParser = field(default_factory=ToolCallParser)

    def feed(self, text: str, final: bool) -> tuple[str, list[dict[str, Any]]]:
        content: list[str] = []
        deltas: list[dict[str, Any]] = []
        for event in self.parser.feed(text, final):
            if isinstance(event, Text):
                content.append(event.text)
            elif isinstance(event, CallStart):
                deltas.append({"index": event.index, "id": event.id, "type": "function",
                               "function": {"name": event.name, "arguments": ""}})
            elif isinstance(event, CallArguments):
                deltas.append({"index": event.index, "function": {"arguments": event.fragment}})
        return "".join(content), deltas

    @property
    def calls(self) -> list[ToolCall]:
        return self.parser.calls

    def finish_reason(self, engine_reason: str | None) -> str | None:
        """`tool_calls` when the model stopped after calling; a `length` cut stays `length`."""
        return "tool_calls" if engine_reason == "stop" and self.parser.calls else engine_reason


def message_tool_calls(calls: list[ToolCall]) -> list[dict[str, Any]] | None:
    if not calls:
        return None
    return [{"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}} for c in calls]


__all__ = ["ChatPlan", "ChoiceOutput", "Tool", "check_tool_history", "message_tool_calls", "plan_chat"]
