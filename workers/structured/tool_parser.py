"""Model text -> content and tool calls, incrementally, so streamed and whole responses come from one parser.

Fed the decoded text as it arrives, the parser yields events in OpenAI's streaming order: content text (never a
partial `<tool_call>` marker), then per call its start (index, id, name) and its `arguments` in fragments. A
fragment is only emitted once it can't be the call's closing `}` (the arguments end at the last `}` before
`</tool_call>`), so the fragments always concatenate to exactly the final arguments.
"""

import json
import re
import secrets
from dataclasses import dataclass, field

from workers.structured.tools import CALL_CLOSE, CALL_OPEN

_HEADER = re.compile(r'\s*\{\s*"name"\s*:\s*"((?:[^"\\]|\\.)*)"\s*,\s*"arguments"\s*:\s*')
_MAX_HEADER = 256  # a call whose header hasn't matched within this many characters is not a call: text


def new_call_id() -> str:
    return f"call_{secrets.token_hex(12)}"


@dataclass(slots=True)
class Text:
    text: str


@dataclass(slots=True)
class CallStart:
    index: int
    id: str
    name: str


@dataclass(slots=True)
class CallArguments:
    index: int
    fragment: str


Event = Text | CallStart | CallArguments


@dataclass(slots=True)
class ToolCall:
    id: str
    name: str
    arguments: str


@dataclass(slots=True)
class ToolCallParser:
    calls: list[ToolCall] = field(default_factory=list)
    _buf: str = ""  # text not yet classified
    _state: str = "text"  # "text" | "header" | "args"
    _args: str = ""  # the current call's arguments text received so far (emitted up to _emitted)
    _emitted: int = 0
    _after_call: bool = False  # the newline separating a call from what follows is not content

    def feed(self, text: str, final: bool = False) -> list[Event]:
        self._buf += text
        events: list[Event] = []
        while True:
            before = (self._state, len(self._buf))
            if self._state == "text":
                self._text(events, final)
            elif self._state == "header":
                self._header(events, final)
            else:
                self._arguments(events, final)
            if (self._state, len(self._buf)) == before:
                return events

    def _text(self, events: list[Event], final: bool) -> None:
        if self._after_call and self._buf:
            self._buf = self._buf.lstrip("\n")
            self._after_call = not self._buf
        at = self._buf.find(CALL_OPEN)
        if at >= 0:
            if at:
                events.append(Text(self._buf[:at]))
            self._buf = self._buf[at + len(CALL_OPEN) :]
            self._state = "header"
            return
        keep = 0 if final else _partial_suffix(self._buf, CALL_OPEN)
        if len(self._buf) > keep:
            events.append(Text(self._buf[: len(self._buf) - keep]))
            self._buf = self._buf[len(self._buf) - keep :]

    def _header(self, events: list[Event], final: bool) -> None:
        m = _HEADER.match(self._buf)
        if m and m.end() < len(self._buf):  # the value after "arguments": has started
            name = json.loads(f'"{m.group(1)}"')
            call = ToolCall(new_call_id(), name, "")
            self.calls.append(call)
            events.append(CallStart(len(self.calls) - 1, call.id, name))
            self._buf = self._buf[m.end() :]
            self._state, self._args, self._emitted = "args", "", 0
        elif final or len(self._buf) > _MAX_HEADER or CALL_CLOSE in self._buf:
            events.append(Text(CALL_OPEN + self._buf))  # not a call after all: give the text back
            self._buf, self._state = "", "text"

    def _arguments(self, events: list[Event], final: bool) -> None:
        end = self._buf.find(CALL_CLOSE)
        if end >= 0:
            self._args += self._buf[:end]
            self._buf = self._buf[end + len(CALL_CLOSE) :]
        else:  # keep what may be the start of </tool_call> until the next text tells
            keep = 0 if final else _partial_suffix(self._buf, CALL_CLOSE)
            self._args += self._buf[: len(self._buf) - keep]
            self._buf = self._buf[len(self._buf) - keep :]
        closed = end >= 0 or final
        # The arguments end before the call object's closing brace, the last "}" once the call closes; until then
        # everything from the last "}" on is held back (it may be that brace). Monotone: a new "}" only comes later.
        brace = self._args.rfind("}")
        upto = brace if brace >= 0 else len(self._args)
        if upto > self._emitted:
            events.append(CallArguments(len(self.calls) - 1, self._args[self._emitted : upto]))
            self.calls[-1].arguments += self._args[self._emitted : upto]
            self._emitted = upto
        if closed:
            self._state, self._args, self._emitted, self._after_call = "text", "", 0, True


def _partial_suffix(text: str, marker: str) -> int:
    """Length of the longest suffix of text that is a proper prefix of marker."""
    for n in range(min(len(marker) - 1, len(text)), 0, -1):
        if text.endswith(marker[:n]):
            return n
    return 0
