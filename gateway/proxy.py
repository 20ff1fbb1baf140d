"""Forwarding to workers over one shared UpstreamClient (gateway/upstream_http.py): connect with fall-through to the next candidate, then
either read a JSON answer or relay the worker's SSE stream to the client.

The relay parses only what it must. The gateway asks the worker for `continuous_usage_stats`, so each content chunk
carries the usage so far: the relay keeps the latest and puts `"usage":null` in its place (the bytes the worker sends
without it), so the client sees OpenAI's format, usage only in the final chunk and only if it asked. The final usage
chunk (`"choices":[]`) is JSON-decoded, priced, and dropped unless the client asked for usage; every other line is
forwarded as bytes, with the worker's internal model name swapped for the one the client used. If the client hangs up
or the worker dies before the final chunk, the last usage seen is billed (prompt included); only if the worker never
reported any is the completion counted as the number of content chunks delivered (our worker sends one chunk per
decode step, so about one token each) and the prompt as 0: nothing is guessed beyond what was delivered.
"""

import json
import logging
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

from contracts import WORKER_SECRET_HEADER
from gateway.errors import NoCapacity, UpstreamError, UpstreamFailed, error_body
from gateway.registry import Registry, WorkerInfo
from gateway.upstream_http import NotStarted, ResponseFailed, UpstreamClient, UpstreamHTTPError, UpstreamResponse

log = logging.getLogger("hearth.gateway.proxy")


@dataclass(slots=True)
class Usage:
    prompt_tokens: int = 0
    cached_prompt_tokens: int = 0
    completion_tokens: int = 0
    reported: bool = False  # False: counted by the gateway from delivered chunks

    @classmethod
    def from_worker(cls, usage: dict | None) -> "Usage":
        if not isinstance(usage, dict):
            return cls()
        details = usage.get("prompt_tokens_details") or {}
        return cls(
            prompt_tokens=int(usage.get("prompt_tokens") or 0),
            cached_prompt_tokens=int(details.get("cached_tokens") or 0),
            completion_tokens=int(usage.get("completion_tokens") or 0),
            reported=True,
        )


@dataclass(slots=True)
class RelayState:
    usage: Usage = field(default_factory=Usage)
    num_content_chunks: int = 0
    status: str = "aborted"  # until the worker's [DONE] arrives or it fails
    first_content_at: str | None = None  # ISO time the first text chunk was relayed (TTFT, streams only)

    def billed(self) -> Usage:
        if self.usage.reported:
            return self.usage
        return Usage(completion_tokens=self.num_content_chunks)


class Upstream:
    def __init__(
        self, registry: Registry, *, worker_secret: str, connect_timeout_s: float, read_timeout_s: float,
        max_connections: int, max_attempts: int,
    ) -> None:
        self._registry = registry
        self._max_attempts = max_attempts
        self._headers = {"content-type": "application/json"}
        if worker_secret:
            self._headers[WORKER_SECRET_HEADER] = worker_secret
        self.client = UpstreamClient(connect_timeout_s=connect_timeout_s, read_timeout_s=read_timeout_s,
                                     max_idle_per_worker=max_connections)

    async def aclose(self) -> None:
        await self.client.aclose()

    async def open(self, workers: list[WorkerInfo], path: str, body: bytes, request_id: str, *,
                   headers: Mapping[str, str] | None = None) -> tuple[WorkerInfo, UpstreamResponse]:
        """Sends to the first worker that answers with headers; the caller must `finish(worker, response)`.
        `headers`: internal ones for this request (contracts.http_headers)."""
        headers = {**self._headers, **(headers or {}), "x-request-id": request_id}
        last_error = ""
        for worker in workers[: self._max_attempts]:
            self._registry.acquire(worker)
            try:
                response = await self.client.post(worker.url, path, body, headers)
            except NotStarted as exc:
                self._registry.release(worker)
                last_error = f"{type(exc).__name__} from worker {worker.worker_id}"
                log.warning("worker %s unreachable (%s); trying the next one", worker.worker_id, type(exc).__name__)
                continue
            except ResponseFailed as exc:  # it took the request, then broke off before the status line
                self._registry.release(worker)
                raise UpstreamFailed(f"The worker failed before answering ({exc}).") from exc
            except BaseException:
                self._registry.release(worker)
                raise
            if response.status_code == 503 and worker is not workers[-1]:  # draining or full: try another
                await self.finish(worker, response)
                last_error = f"worker {worker.worker_id} answered 503"
                continue
            return worker, response
        raise NoCapacity(f"No worker could take the request right now ({last_error}). Please retry shortly.")

    async def finish(self, worker: WorkerInfo, response: UpstreamResponse) -> None:
        self._registry.release(worker)
        await response.aclose()

    @staticmethod
    async def raise_for_error(response: UpstreamResponse) -> None:
        if response.status_code == 200:
            return
        try:
            raw = await response.aread()
        except UpstreamHTTPError as exc:
            raise UpstreamFailed(f"The worker answered {response.status_code} and failed ({exc}).") from exc
        try:
            body = json.loads(raw)
        except ValueError:
            body = None
        if isinstance(body, dict) and isinstance(body.get("error"), dict):
            raise UpstreamError(response.status_code, body)
        raise UpstreamFailed(f"The worker answered {response.status_code} without an error object.")

    @staticmethod
    async def read_json(response: UpstreamResponse) -> dict:
        try:
            raw = await response.aread()
        except UpstreamHTTPError as exc:
            raise UpstreamFailed(f"The worker failed while answering ({type(exc).__name__}).") from exc
        try:
            data = json.loads(raw)
        except ValueError as exc:
            raise UpstreamFailed("The worker's answer was not JSON.") from exc
        if not isinstance(data, dict):
            raise UpstreamFailed("The worker's answer was not a JSON object.")
        return data


def _model_swap(internal: str, public: str) -> Callable[[str], str]:
    if internal == public:
        return lambda s: s
    pairs = [(f'"model":{json.dumps(internal)}', f'"model":{json.dumps(public)}'),
             (f'"model": {json.dumps(internal)}', f'"model": {json.dumps(public)}')]

    def swap(s: str) -> str:
        for old, new in pairs:
            if old in s:
                return s.replace(old, new, 1)
        return s

    return swap


def _usage_present(data: str) -> bool:
    return '"usage"' in data and '"usage":null' not in data and '"usage": null' not in data


def _is_usage_only(data: str) -> bool:
    return '"choices":[]' in data or '"choices": []' in data


def _strip_usage(data: str) -> tuple[str, dict | None]:
    """A content chunk's `"usage":{...}` (continuous_usage_stats) becomes `"usage":null`; returns it decoded.
    Inside JSON strings every quote is escaped, so `"usage":` can only be the key; the usage object holds numbers
    and nested objects, no strings with braces, so counting braces finds its end."""
    key = data.rfind('"usage":')
    start = key + len('"usage":')
    while start < len(data) and data[start] == " ":
        start += 1
    if key < 0 or start >= len(data) or data[start] != "{":
        return data, None
    depth = 0
    for end in range(start, len(data)):
        if data[end] == "{":
            depth += 1
        elif data[end] == "}":
            depth -= 1
            if depth == 0:
                try:
                    usage = json.loads(data[start: end + 1])
                except ValueError:
                    return data, None
                return f"{data[:start]}null{data[end + 1:]}", usage if isinstance(usage, dict) else None
    return data, None


def _carries_text(data: str) -> bool:
    # Role-only and finish-only chunks carry "content":"" / "text":"", the usage chunk "choices":[]; only chunks
    # with text count as delivered tokens.
    return not any(marker in data for marker in ('"choices":[]', '"content":""', '"text":""', '"choices": []',
                                                 '"content": ""', '"text": ""'))


async def relay_sse(
    response: UpstreamResponse, state: RelayState, *, internal_model: str, public_model: str, include_usage: bool,
    cost: Callable[[Usage], str | None] = lambda _: None,
) -> AsyncIterator[bytes]:
    """Yields the client's SSE bytes; fills `state`. Ends with [DONE], or with an error event if the worker fails.
    The usage the client sees carries `cost` (USD string) from `cost(usage)`, as every billed response does."""
    swap = _model_swap(internal_model, public_model)
    try:
        async for line in response.aiter_lines():
            if not line.startswith("data:"):
                continue  # blank separators, comments, keep-alives
            data = line[5:].strip()
            if data == "[DONE]":
                state.status = "finished"
                yield b"data: [DONE]\n\n"
                break
            if _usage_present(data) and not _is_usage_only(data):
                data, usage = _strip_usage(data)  # the worker's usage so far, never shown to the client
                if usage is not None:
                    state.usage = Usage.from_worker(usage)
            if _usage_present(data):
                chunk = json.loads(data)
                state.usage = Usage.from_worker(chunk.get("usage"))
                if include_usage:
                    price = cost(state.usage)
                    if price is not None and isinstance(chunk.get("usage"), dict):
                        chunk["usage"]["cost"] = price
                        data = json.dumps(chunk, separators=(",", ":"))
                elif chunk.get("choices"):
                    chunk["usage"] = None
                    data = json.dumps(chunk, separators=(",", ":"))
                if not chunk.get("choices"):
                    if include_usage:
                        yield f"data: {swap(data)}\n\n".encode()
                    continue
            if _carries_text(data):
                state.num_content_chunks += 1
                if state.first_content_at is None:
                    state.first_content_at = datetime.now(UTC).isoformat(timespec="microseconds")
            if '"error"' in data and data.startswith('{"error"'):
                state.status = "error"  # the worker reported a failure in-band; relay it and stop
                yield f"data: {data}\n\n".encode()
                return
            yield f"data: {swap(data)}\n\n".encode()
        else:
            raise ResponseFailed("stream ended without [DONE]")
    except UpstreamHTTPError as exc:
        state.status = "error"
        log.warning("worker stream failed mid-request: %s", type(exc).__name__)
        err = error_body("The worker serving this request failed mid-stream. Please retry.", "server_error",
                         code="upstream_error")
        yield f"data: {json.dumps(err)}\n\n".encode()
