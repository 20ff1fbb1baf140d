"""A small continuous batcher: every step takes waiting sequences (from any caller, oldest first) up to a token
budget, runs one packed forward on its own thread, and hands each caller its rows.

    step = take(budget) -> embed(seqs) -> deliver rows          (one thread owns the model; the loop never blocks)

A request's inputs may span steps; a cancelled caller's sequences are skipped when their turn comes. A step that
raises is retried one sequence at a time, so one bad input fails only its own request.
"""

import asyncio
import contextlib
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, InvalidStateError
from dataclasses import dataclass, field

import torch

from workers.embeddings.metrics import EmbeddingMetrics

log = logging.getLogger("hearth.embeddings.batcher")

EmbedFn = Callable[[list[list[int]]], torch.Tensor]  # [B] sequences -> [B, dimensions]


class BatcherStoppedError(RuntimeError):
    """The batcher is stopping (worker shutdown): the request is not served."""


@dataclass(slots=True)
class _Pending:
    ids: list[int]
    future: Future[torch.Tensor] = field(default_factory=Future)


class EmbeddingBatcher:
    def __init__(self, embed: EmbedFn, *, max_num_batched_tokens: int = 8192, max_num_seqs: int = 256,
                 metrics: EmbeddingMetrics | None = None):
        if max_num_batched_tokens < 1 or max_num_seqs < 1:
            raise ValueError("max_num_batched_tokens and max_num_seqs must be >= 1")
        self._embed = embed
        self.max_num_batched_tokens = max_num_batched_tokens
        self.max_num_seqs = max_num_seqs
        self._metrics = metrics
        self._waiting: deque[_Pending] = deque()
        self._cond = threading.Condition()
        self._stopping = False
        self._num_running = 0
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="embedding-batcher", daemon=True)
        self._thread.start()

    async def stop(self) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join)
            self._thread = None

    def stats(self) -> dict[str, int]:
        with self._cond:
            return {"num_waiting": len(self._waiting), "num_running": self._num_running}

    async def embed(self, seqs: list[list[int]]) -> list[torch.Tensor]:
        """One row per sequence, in order. Cancelling the awaiting task drops the sequences not yet run."""
        pending = [_Pending(ids) for ids in seqs]
        with self._cond:
            if self._stopping:
                raise BatcherStoppedError("the worker is shutting down")
            self._waiting.extend(pending)
            self._cond.notify()
        futures = [asyncio.wrap_future(p.future) for p in pending]
        try:
            return list(await asyncio.gather(*futures))
        except BaseException:
            for f in futures:
                f.cancel()
            raise

    def _take(self) -> list[_Pending] | None:
        """Oldest-first sequences within the step's budget (the first one always fits: inputs are <= max_seq_len,
        and a budget smaller than that still runs one long sequence alone). None once stopping."""
        with self._cond:
            while not self._waiting and not self._stopping:
                self._cond.wait()
            if self._stopping:
                for p in self._waiting:
                    with contextlib.suppress(InvalidStateError):  # the caller may cancel it at the same moment
                        p.future.set_exception(BatcherStoppedError("the worker is shutting down"))
                self._waiting.clear()
                return None
            batch: list[_Pending] = []
            num_tokens = 0
            while self._waiting and len(batch) < self.max_num_seqs:
                p = self._waiting[0]
                if batch and num_tokens + len(p.ids) > self.max_num_batched_tokens:
                    break
                self._waiting.popleft()
                if p.future.set_running_or_notify_cancel():  # False: the caller went away
                    batch.append(p)
                    num_tokens += len(p.ids)
            self._num_running = len(batch)
            return batch

    def _loop(self) -> None:
        while (batch := self._take()) is not None:
            if batch:
                self._step(batch)
            with self._cond:
                self._num_running = 0

    def _step(self, batch: list[_Pending]) -> None:
        started = time.perf_counter()
        try:
            rows = self._embed([p.ids for p in batch])
        except Exception as exc:
            if len(batch) == 1:
                log.exception("embedding a sequence of %d tokens failed", len(batch[0].ids))
                batch[0].future.set_exception(exc)
                return
            for p in batch:  # isolate the failing input: the others still get their rows
                self._step_one(p)
            return
        for p, row in zip(batch, rows, strict=True):
            p.future.set_result(row)
        if self._metrics is not None:
            self._metrics.observe_step(len(batch), sum(len(p.ids) for p in batch), time.perf_counter() - started)

    def _step_one(self, p: _Pending) -> None:
        try:
            p.future.set_result(self._embed([p.ids])[0])
        except Exception as exc:
            log.exception("embedding a sequence of %d tokens failed", len(p.ids))
            p.future.set_exception(exc)
