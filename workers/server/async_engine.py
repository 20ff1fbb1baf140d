"""The engine loop in one background thread, off the event loop; requests talk to it through queues.

The thread owns the LLMEngine outright: the event loop never calls into it, it sends commands (add, abort, drop an
adapter, stop) through a thread-safe queue that the thread drains between steps, and the thread answers through per-request
asyncio queues fed with `loop.call_soon_threadsafe` (one callback per step for all requests, not one per delta).
When nothing is running the thread blocks on the command queue, so an idle worker burns no CPU. The one call made
from the caller's side is `engine.new_request`, which only validates and builds sequences (a bad request is refused
there, synchronously, without costing the stepping thread anything).
"""

import asyncio
import logging
import queue
import threading
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from workers.engine.outputs import CompletionDelta
from workers.engine.sampling_params import SamplingParams
from workers.engine.sequence import Sequence
from workers.server.errors import AdapterDeletedError, EngineError
from workers.server.metrics import WorkerMetrics

log = logging.getLogger("hearth.worker.engine_loop")


class EngineLike(Protocol):
    """The engine interface pinned in docs/contracts.md ("Engine")."""

    tokenizer: Any
    vocab_size: int
    max_model_len: int
    serves_adapters: bool

    # Any thread: pure validation and construction (may load an adapter into host memory).
    def new_request(
        self, request_id: str, prompt_token_ids: list[int], params: SamplingParams, adapter_id: str | None = None,
        *, param_names: Mapping[str, str] | None = None, account_id: str | None = None,
    ) -> list[Sequence]: ...  # fmt: skip

    def resident_adapters(self) -> list[str]: ...

    # The stepping thread only.
    def add(self, seqs: list[Sequence]) -> None: ...

    def abort_request(self, request_id: str) -> list[CompletionDelta]: ...

    def step(self) -> list[CompletionDelta]: ...

    def has_unfinished_requests(self) -> bool: ...

    def drop_adapter(self, uid: str) -> int: ...

    def stats(self) -> dict[str, int]: ...


# What a request queue carries: the deltas of one step for that request, or the error that ended it.
StreamItem = list[CompletionDelta] | EngineError


@dataclass(slots=True)
class _Add:
    seqs: list[Sequence]  # from engine.new_request: validated
    arrival: float  # perf_counter at HTTP arrival, for TTFT
    out: asyncio.Queue[StreamItem]
    accepted: asyncio.Future[None]


@dataclass(slots=True)
class _Abort:
    request_id: str


@dataclass(slots=True)
class _DropAdapter:
    uid: str
    done: asyncio.Future[int]


@dataclass(slots=True)
class _Stop:
    pass


@dataclass(slots=True)
class _Tracked:
    """Engine-thread bookkeeping of one live request."""

    out: asyncio.Queue[StreamItem]
    n: int
    arrival: float
    adapter_id: str | None
    finished: set[int] = field(default_factory=set)
    first_token_seen: bool = False
    last_token_at: dict[int, float] = field(default_factory=dict)


class RequestStream:
    """The consumer side of one request: iterate for per-step delta lists; close() aborts it if unfinished."""

    def __init__(self, owner: "AsyncEngine", request_id: str, n: int, out: asyncio.Queue[StreamItem]):
        self.request_id = request_id
        self._owner = owner
        self._n = n
        self._out = out
        self._finished: set[int] = set()

    @property
    def done(self) -> bool:
        return len(self._finished) >= self._n

    async def __aiter__(self) -> AsyncIterator[list[CompletionDelta]]:
        while not self.done:
            item = await self._out.get()
            if isinstance(item, EngineError):
                self._finished = set(range(self._n))
                raise item
            for delta in item:
                if delta.finished:
                    self._finished.add(delta.index)
            yield item

    def close(self) -> None:
        if not self.done:
            self._finished = set(range(self._n))
            self._owner.abort(self.request_id)

    def __del__(self) -> None:
        # Safety net: a stream dropped unread (a client gone before its SSE body started) must not keep generating.
        self.close()


class AsyncEngine:
    def __init__(self, engine: EngineLike, metrics: WorkerMetrics | None = None):
        self.engine = engine
        self.metrics = metrics
        self._commands: queue.SimpleQueue[_Add | _Abort | _DropAdapter | _Stop] = queue.SimpleQueue()
        self._tracked: dict[str, _Tracked] = {}  # engine thread only
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._stats: dict[str, int] = dict(engine.stats())
        if metrics:
            metrics.update_engine_stats(self._stats)  # gauges exist from the first scrape, before any request

    @property
    def tokenizer(self) -> Any:
        return self.engine.tokenizer

    def stats(self) -> dict[str, int]:
        """The snapshot taken after the engine thread's latest step (safe to read from any thread)."""
        return self._stats

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._thread = threading.Thread(target=self._run, name="hearth-engine", daemon=True)
        self._thread.start()

    async def stop(self, timeout: float = 10.0) -> None:
        if self._thread is None:
            return
        self._commands.put(_Stop())
        await asyncio.to_thread(self._thread.join, timeout)
        if self._thread.is_alive():
            log.error("engine thread did not stop within %.0f s", timeout)
        self._thread = None

    async def add_request(
        self,
        request_id: str,
        prompt_token_ids: list[int],
        params: SamplingParams,
        adapter_id: str | None = None,
        arrival: float | None = None,
        *,
        param_names: Mapping[str, str] | None = None,
        account_id: str | None = None,
    ) -> RequestStream:
        """Validates the request here, then hands it to the engine thread; raises InvalidRequestError (bad input,
        unknown adapter: `param_names` maps the engine's parameter names to the client's). `account_id` namespaces
        the prefix cache."""
        if self._loop is None or self._thread is None:
            raise EngineError("The engine is not running.")
        args = (request_id, prompt_token_ids, params, adapter_id)
        if adapter_id is None:
            seqs = self.engine.new_request(*args, param_names=param_names, account_id=account_id)
        else:  # the first request for an adapter reads it from the store: off the event loop
            seqs = await asyncio.to_thread(self.engine.new_request, *args, param_names=param_names,
                                           account_id=account_id)
        out: asyncio.Queue[StreamItem] = asyncio.Queue()
        accepted: asyncio.Future[None] = self._loop.create_future()
        arrival = time.perf_counter() if arrival is None else arrival
        self._commands.put(_Add(seqs, arrival, out, accepted))
        try:
            await accepted
        except asyncio.CancelledError:
            self.abort(request_id)  # queued after the add, so the engine never runs it orphaned
            raise
        return RequestStream(self, request_id, params.n, out)

    def abort(self, request_id: str) -> None:
        self._commands.put(_Abort(request_id))

    async def drop_adapter(self, uid: str) -> int:
        """An adapter was deleted: its live requests end with an error, the engine forgets its weights (host cache,
        device slot) and unpublishes its prefix-cache blocks. Returns the number of blocks unpublished."""
        if self._loop is None or self._thread is None:
            raise EngineError("The engine is not running.")
        done: asyncio.Future[int] = self._loop.create_future()
        self._commands.put(_DropAdapter(uid, done))
        return await done

    # ---- engine thread ---------------------------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            try:
                block = not self.engine.has_unfinished_requests()
                if self._drain_commands(block=block):
                    return
                if self.engine.has_unfinished_requests():
                    self._step()
                self._snapshot()
            except Exception:  # the loop must outlive any one failure
                log.exception("engine loop error")
                self._fail_all("The engine failed while serving this request.")

    def _drain_commands(self, block: bool) -> bool:
        """Applies queued commands; True means stop. Blocks for the first command when the engine is idle."""
        while True:
            try:
                cmd = self._commands.get(block=block)
            except queue.Empty:
                return False
            block = False
            if isinstance(cmd, _Stop):
                self._fail_all("The worker is shutting down.")
                return True
            if isinstance(cmd, _Abort):
                self._abort(cmd.request_id)
            elif isinstance(cmd, _DropAdapter):
                self._drop_adapter(cmd)
            else:
                self._add(cmd)

    def _add(self, cmd: _Add) -> None:
        first = cmd.seqs[0]
        try:
            self.engine.add(cmd.seqs)
        except Exception as exc:  # a duplicate id (InvalidRequestError) and anything unexpected go back to the caller
            self._post(_reject, cmd.accepted, exc)
            return
        self._tracked[first.request_id] = _Tracked(cmd.out, len(cmd.seqs), cmd.arrival, first.adapter_id)
        if self.metrics:
            self.metrics.add_prompt(first.num_prompt_tokens)
        self._post(_accept, cmd.accepted)
        self._snapshot()

    def _abort(self, request_id: str) -> None:
        tracked = self._tracked.pop(request_id, None)
        if tracked is None:
            return  # finished already, or never accepted
        self.engine.abort_request(request_id)
        if self.metrics:
            self.metrics.finished("abort", tracked.n - len(tracked.finished))

    def _drop_adapter(self, cmd: _DropAdapter) -> None:
        try:
            for request_id, tracked in list(self._tracked.items()):
                if tracked.adapter_id == cmd.uid:
                    # Aborted before the engine drops the adapter: no sequence needs its slot any more.
                    del self._tracked[request_id]
                    self.engine.abort_request(request_id)
                    if self.metrics:
                        self.metrics.finished("abort", tracked.n - len(tracked.finished))
                    self._post(_fan_out, [(tracked.out, AdapterDeletedError(cmd.uid))])
            count = self.engine.drop_adapter(cmd.uid)
        except Exception as exc:
            self._post(_reject, cmd.done, exc)
            raise
        self._post(_resolve, cmd.done, count)
        self._snapshot()

    def _step(self) -> None:
        deltas = self.engine.step()
        now = time.perf_counter()
        per_request: dict[str, list[CompletionDelta]] = {}
        for delta in deltas:
            tracked = self._tracked.get(delta.request_id)
            if tracked is None:
                continue  # aborted between scheduling and now
            per_request.setdefault(delta.request_id, []).append(delta)
            self._account(tracked, delta, now)
        batch: list[tuple[asyncio.Queue[StreamItem], StreamItem]] = []
        for request_id, items in per_request.items():
            tracked = self._tracked[request_id]
            good = [d for d in items if d.finish_reason != "error"]
            if good:
                batch.append((tracked.out, good))
            if len(good) < len(items):  # this request made the step raise; the engine ended it, the rest went on
                batch.append((tracked.out, EngineError("The engine failed while serving this request.")))
                tracked.finished.update(range(tracked.n))
            if len(tracked.finished) >= tracked.n:
                del self._tracked[request_id]
        if batch:
            self._post(_fan_out, batch)

    def _account(self, tracked: _Tracked, delta: CompletionDelta, now: float) -> None:
        if delta.finished:
            tracked.finished.add(delta.index)
        if self.metrics is None:
            return
        if delta.finished and delta.finish_reason:
            self.metrics.finished(delta.finish_reason)
        if not delta.new_token_ids:
            return
        self.metrics.add_generated(len(delta.new_token_ids))
        if not tracked.first_token_seen:
            tracked.first_token_seen = True
            self.metrics.observe_ttft(now - tracked.arrival)
        last = tracked.last_token_at.get(delta.index)
        if last is not None:
            self.metrics.observe_itl((now - last) / len(delta.new_token_ids))
        tracked.last_token_at[delta.index] = now

    def _fail_all(self, message: str) -> None:
        for request_id, tracked in list(self._tracked.items()):
            try:
                self.engine.abort_request(request_id)
            except Exception:
                log.exception("abort of %s failed", request_id)
            if self.metrics:
                self.metrics.finished("error", tracked.n - len(tracked.finished))
            self._post(_fan_out, [(tracked.out, EngineError(message))])
        self._tracked.clear()
        self._snapshot()

    def _snapshot(self) -> None:
        try:
            self._stats = dict(self.engine.stats())
        except Exception:
            log.exception("engine.stats() failed")
            return
        if self.metrics:
            self.metrics.update_engine_stats(self._stats)

    def _post(self, fn: Any, *args: Any) -> None:
        assert self._loop is not None
        try:
            self._loop.call_soon_threadsafe(fn, *args)
        except RuntimeError:
            pass  # the event loop is closed: nobody is left to answer


def _accept(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


def _resolve(fut: asyncio.Future[int], value: int) -> None:
    if not fut.done():
        fut.set_result(value)


def _reject(fut: asyncio.Future[None], exc: BaseException) -> None:
    if not fut.done():
        fut.set_exception(exc)


def _fan_out(batch: list[tuple[asyncio.Queue[StreamItem], StreamItem]]) -> None:
    for out, item in batch:
        out.put_nowait(item)
