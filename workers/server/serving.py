"""Engine deltas to OpenAI responses: whole (chat.completion / text_completion) or streamed as SSE chunks.

One request with n choices is one engine request; its deltas carry the choice index, so streamed chunks carry one
choice each (as OpenAI's do) and whole responses list choices by index.
"""

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from fastapi import Request
from pydantic import BaseModel

from workers.engine.outputs import CompletionDelta, TokenLogprob
from workers.server.async_engine import RequestStream
from workers.server.chat_tools import ChoiceOutput, message_tool_calls
from workers.server.errors import EngineError, error_body
from workers.server.protocol import (
    ChatChoice,
    ChatChunkChoice,
    ChatCompletion,
    ChatCompletionChunk,
    ChatDelta,
    ChatLogprobs,
    ChatResponseMessage,
    ChatTokenLogprob,
    Completion,
    CompletionChoice,
    CompletionLogprobs,
    CompletionTokensDetails,
    PromptTokensDetails,
    ToolCallDelta,
    TopLogprob,
    Usage,
)

DONE = "data: [DONE]\n\n"


def _byte_level_alphabet() -> dict[str, int]:
    """GPT-2's byte-level BPE writes each byte as one printable character; this maps the characters back."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("\xa1"), ord("\xac") + 1), *range(ord("\xae"), 256)]
    chars = {b: chr(b) for b in printable}
    shifted = 0
    for b in range(256):
        if b not in chars:
            chars[b] = chr(256 + shifted)
            shifted += 1
    return {c: b for b, c in chars.items()}


_BYTE_OF = _byte_level_alphabet()


class TokenText:
    """Token id -> (text, bytes) as logprobs show them. For byte-level BPE vocabularies (SmolLM2, Llama 3, Qwen2)
    the bytes are exact, so a token that ends mid-character shows U+FFFD as text but its true bytes; other
    vocabularies fall back to decoding the single token."""

    def __init__(self, tokenizer: Any):
        self._tokenizer = tokenizer
        self._cache: dict[int, tuple[str, bytes]] = {}

    def _lookup(self, token_id: int) -> tuple[str, bytes]:
        hit = self._cache.get(token_id)
        if hit is not None:
            return hit
        piece = getattr(self._tokenizer, "id_to_token", lambda _: None)(token_id)
        if piece and all(c in _BYTE_OF for c in piece):
            raw = bytes(_BYTE_OF[c] for c in piece)
            hit = (raw.decode("utf-8", errors="replace"), raw)
        else:
            text = self._tokenizer.decode([token_id], skip_special_tokens=False)
            hit = (text, text.encode("utf-8"))
        if len(self._cache) < 1 << 17:
            self._cache[token_id] = hit
        return hit

    def __call__(self, token_id: int) -> str:
        return self._lookup(token_id)[0]

    def top(self, token_id: int, logprob: float) -> TopLogprob:
        text, raw = self._lookup(token_id)
        return TopLogprob(token=text, logprob=logprob, bytes=list(raw))

    def chat(self, lp: TokenLogprob) -> ChatTokenLogprob:
        text, raw = self._lookup(lp.token_id)
        top = [self.top(t, v) for t, v in lp.top]
        return ChatTokenLogprob(token=text, logprob=lp.logprob, bytes=list(raw), top_logprobs=top)


@dataclass(slots=True)
class _Choice:
    text: list[str] = field(default_factory=list)
    logprobs: list[TokenLogprob] = field(default_factory=list)
    finish_reason: str | None = None
    text_offset: int = 0  # completions logprobs: characters of token text emitted so far


class UsageTracker:
    def __init__(self, num_prompt_tokens: int = 0) -> None:
        self.prompt = num_prompt_tokens
        self.cached: int | None = None
        self.output: dict[int, int] = {}
        self.predicted: dict[int, tuple[int, int]] = {}  # choice -> (accepted, rejected) prediction tokens so far

    def add(self, delta: CompletionDelta) -> None:
        self.prompt = delta.num_prompt_tokens
        # With n > 1 the engine may serve later choices' prompts from the first one's blocks; the prompt is billed
        # once, at the least cached count any choice saw.
        self.cached = delta.num_cached_tokens if self.cached is None else min(self.cached, delta.num_cached_tokens)
        self.output[delta.index] = delta.num_output_tokens
        self.predicted[delta.index] = (delta.num_accepted_prediction_tokens, delta.num_rejected_prediction_tokens)

    def usage(self) -> Usage:
        accepted = sum(a for a, _ in self.predicted.values())
        rejected = sum(r for _, r in self.predicted.values())
        # OpenAI counts rejected prediction tokens as completion tokens (billing, output and context limits)
        completion = sum(self.output.values()) + rejected
        return Usage(
            prompt_tokens=self.prompt,
            completion_tokens=completion,
            total_tokens=self.prompt + completion,
            prompt_tokens_details=PromptTokensDetails(cached_tokens=self.cached or 0),
            completion_tokens_details=CompletionTokensDetails(
                accepted_prediction_tokens=accepted, rejected_prediction_tokens=rejected
            ),
        )


def _completion_logprobs(tokens: TokenText, items: list[TokenLogprob], choice: _Choice) -> CompletionLogprobs:
    out = CompletionLogprobs()
    for lp in items:
        text = tokens(lp.token_id)
        out.tokens.append(text)
        out.token_logprobs.append(lp.logprob)
        out.top_logprobs.append({tokens(t): v for t, v in lp.top})
        out.text_offset.append(choice.text_offset)
        choice.text_offset += len(text)
    return out


async def _wait_for_disconnect(request: Request) -> None:
    # After the body is read, the next ASGI message is http.disconnect, whenever the client goes away.
    while (await request.receive())["type"] != "http.disconnect":
        pass


async def collect(
    stream: RequestStream, request: Request, n: int
) -> tuple[dict[int, _Choice], UsageTracker] | None:
    """Gathers a whole response; None if the client went away first (the request is then aborted)."""
    choices = {i: _Choice() for i in range(n)}
    usage = UsageTracker()

    async def gather() -> None:
        async for deltas in stream:
            for d in deltas:
                usage.add(d)
                c = choices[d.index]
                c.text.append(d.text)
                c.logprobs.extend(d.logprobs or [])
                if d.finished:
                    c.finish_reason = d.finish_reason

    gather_task = asyncio.create_task(gather())
    watch_task = asyncio.create_task(_wait_for_disconnect(request))
    try:
        await asyncio.wait({gather_task, watch_task}, return_when=asyncio.FIRST_COMPLETED)
        if not gather_task.done():
            return None
        gather_task.result()  # re-raises EngineError
        return choices, usage
    finally:
        for task in (gather_task, watch_task):
            task.cancel()
        stream.close()


def chat_completion(
    request_id: str, model: str, result: tuple[dict[int, _Choice], UsageTracker], tokens: TokenText, logprobs: bool,
    *, parses_calls: bool = False,
) -> ChatCompletion:  # fmt: skip
    """With `parses_calls` each choice's text goes through the same tool-call parser as a stream's."""
    choices, usage = result
    out = []
    for i, c in sorted(choices.items()):
        content: str | None = "".join(c.text)
        finish, calls = c.finish_reason, None
        if parses_calls:
            parsed = ChoiceOutput()
            content = parsed.feed(content, final=True)[0]
            calls, finish = message_tool_calls(parsed.calls), parsed.finish_reason(c.finish_reason)
            if calls and not content.strip():
                content = None  # OpenAI: a message that only calls has no content
        lps = ChatLogprobs(content=[tokens.chat(lp) for lp in c.logprobs]) if logprobs else None
        message = ChatResponseMessage.model_validate({"content": content, "tool_calls": calls})
        out.append(ChatChoice(index=i, message=message, logprobs=lps, finish_reason=finish))
    return ChatCompletion(id=request_id, model=model, choices=out, usage=usage.usage())


def completion(
    request_id: str, model: str, result: tuple[dict[int, _Choice], UsageTracker], tokens: TokenText, logprobs: bool
) -> Completion:
    choices, usage = result
    return Completion(
        id=request_id,
        model=model,
        choices=[
            CompletionChoice(
                index=i,
                text="".join(c.text),
                logprobs=_completion_logprobs(tokens, c.logprobs, c) if logprobs else None,
                finish_reason=c.finish_reason,
            )
            for i, c in sorted(choices.items())
        ],
        usage=usage.usage(),
    )


def _sse(obj: BaseModel | dict[str, Any]) -> str:
    data = obj.model_dump_json() if isinstance(obj, BaseModel) else json.dumps(obj)
    return f"data: {data}\n\n"


class ChatChunks:
    """chat.completion.chunk objects: one role chunk per choice first, then content deltas. With `parses_calls`,
    text goes through a tool-call parser per choice: content, and calls as OpenAI streams them."""

    def __init__(
        self, request_id: str, model: str, tokens: TokenText, logprobs: bool, n: int, *, parses_calls: bool = False
    ) -> None:
        self.request_id, self.model, self.tokens, self.logprobs, self.n = request_id, model, tokens, logprobs, n
        self.outputs = {i: ChoiceOutput() for i in range(n)} if parses_calls else None

    def opening(self, usage: Usage | None) -> list[BaseModel]:
        return [self._chunk([ChatChunkChoice(index=i, delta=ChatDelta(role="assistant", content=""))], usage)
                for i in range(self.n)]  # fmt: skip

    def delta(self, d: CompletionDelta, usage: Usage | None) -> BaseModel | None:
        lps = ChatLogprobs(content=[self.tokens.chat(lp) for lp in d.logprobs or []]) if self.logprobs else None
        delta, finish = ChatDelta(content=d.text), d.finish_reason
        if self.outputs is not None:
            out = self.outputs[d.index]
            text, calls = out.feed(d.text, final=d.finished)
            finish = out.finish_reason(d.finish_reason) if d.finished else None
            if not (text or calls or finish or lps):
                return None  # held back: maybe the start of a call
            delta = ChatDelta(content=text if text or not calls else None,
                              tool_calls=[ToolCallDelta.model_validate(c) for c in calls] or None)
        choice = ChatChunkChoice(index=d.index, delta=delta, logprobs=lps, finish_reason=finish)
        return self._chunk([choice], usage)

    def _chunk(self, choices: list[ChatChunkChoice], usage: Usage | None) -> BaseModel:
        return ChatCompletionChunk(id=self.request_id, model=self.model, choices=choices, usage=usage)

    def usage(self, usage: Usage) -> BaseModel:
        return self._chunk([], usage)


class CompletionChunks:
    """text_completion objects, one choice each; logprobs' text_offset runs on per choice."""

    def __init__(self, request_id: str, model: str, tokens: TokenText, logprobs: bool, n: int) -> None:
        self.request_id, self.model, self.tokens, self.logprobs = request_id, model, tokens, logprobs
        self.choices = {i: _Choice() for i in range(n)}

    def opening(self, usage: Usage | None) -> list[BaseModel]:
        return []

    def delta(self, d: CompletionDelta, usage: Usage | None) -> BaseModel:
        lps = _completion_logprobs(self.tokens, d.logprobs or [], self.choices[d.index]) if self.logprobs else None
        choice = CompletionChoice(index=d.index, text=d.text, logprobs=lps, finish_reason=d.finish_reason)
        return Completion(id=self.request_id, model=self.model, choices=[choice], usage=usage)

    def usage(self, usage: Usage) -> BaseModel:
        return Completion(id=self.request_id, model=self.model, choices=[], usage=usage)


async def sse_stream(
    stream: RequestStream, chunks: ChatChunks | CompletionChunks, include_usage: bool,
    *, continuous_usage: bool = False, num_prompt_tokens: int = 0,
) -> AsyncIterator[str]:  # fmt: skip
    """The one streaming path of chat and completions. With `continuous_usage` every chunk carries the usage so far
    (vLLM's continuous_usage_stats)."""
    usage = UsageTracker(num_prompt_tokens)

    def so_far() -> Usage | None:
        return usage.usage() if continuous_usage else None

    try:
        for chunk in chunks.opening(so_far()):
            yield _sse(chunk)
        async for deltas in stream:
            for d in deltas:
                usage.add(d)
                if d.text or d.finished or d.logprobs:
                    chunk = chunks.delta(d, so_far())
                    if chunk is not None:
                        yield _sse(chunk)
        if include_usage:
            yield _sse(chunks.usage(usage.usage()))
        yield DONE
    except EngineError as exc:
        yield _sse(error_body(exc.message, type=exc.type, code=exc.code))
        yield DONE
    finally:
        stream.close()  # a disconnected client lands here (cancellation): the engine aborts and frees its blocks
