"""Usage events to the Redis stream USAGE_STREAM (contracts; field USAGE_EVENT_FIELD = JSON, schema in DESIGN.md), never lost.

Requests hand events to a bounded in-process queue (no await on the hot path, and safe from a cancelled handler); one
writer task XADDs them in pipelined batches. When Redis refuses — any error: unreachable, READONLY after a failover,
OOM — the batch is appended to this process's spool file (`<spool_dir>/usage-<host>-<pid>.jsonl`, one JSON event per
line, under flock), Redis is left alone for a backoff that doubles up to `_MAX_BACKOFF_S`, and a replayer moves every
spool file in the folder back into the stream once Redis takes writes again. An event that finds the queue full goes
to the spool at once: nothing is dropped, and memory stays bounded however long Redis is away. Files are truncated after replay, never unlinked, so a writer
holding an open descriptor can't append into a deleted inode. A crash between XADD and truncate replays events twice;
billing keys the ledger by request_id, so that is harmless, while the reverse (a lost event) would not be.
"""

import asyncio
import fcntl
import json
import logging
import os
import socket
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

import redis.asyncio as aioredis

from contracts import USAGE_EVENT_FIELD, USAGE_STREAM
from gateway.outages import REDIS_ERRORS, Backoff

log = logging.getLogger("hearth.gateway.metering")

_BATCH = 500
_QUEUE_MAX = 10_000


@dataclass(slots=True)
class UsageEvent:
    request_id: str
    account_id: int
    api_key_id: int
    model_id: int
    adapter_id: int | None
    prompt_tokens: int
    cached_prompt_tokens: int
    completion_tokens: int
    started_at: str  # ISO 8601, UTC
    finished_at: str
    status: str  # "finished" | "aborted" (client went away) | "error" (worker failed mid-request)
    # A route's request (gateway.routes): the route and variant that served it; TTFT for streams.
    route_id: int | None = None
    variant_id: int | None = None
    first_token_at: str | None = None


def utc_now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds")


class Metering:
    def __init__(self, client: aioredis.Redis, spool_dir: Path, *, replay_interval_s: float = 1.0,
                 queue_max: int = _QUEUE_MAX) -> None:
        self._client = client
        self._spool_dir = spool_dir
        self._spool_file = spool_dir / f"usage-{socket.gethostname()}-{os.getpid()}.jsonl"
        self._replay_interval_s = replay_interval_s
        self._queue: asyncio.Queue[UsageEvent] = asyncio.Queue(maxsize=queue_max)
        self._redis_backoff = Backoff(first_s=1.0, max_s=30.0)  # the writer's: spool without trying Redis meanwhile
        self.num_spooled = 0  # events written to the spool (Redis refused them, or the queue was full)
        self.num_overflowed = 0  # of those, events that found the queue full
        self.num_replayed = 0

    def emit(self, event: UsageEvent) -> None:
        try:
            self._queue.put_nowait(event)
        except asyncio.QueueFull:
            # Synchronous on purpose: the caller may be a cancelled request, and the event is money. Only reached
            # while the writer is behind by _QUEUE_MAX events.
            self._append_spool([_line(event)])
            self.num_spooled += 1
            self.num_overflowed += 1

    async def run_writer(self) -> None:
        while True:
            batch = [await self._queue.get()]
            while len(batch) < _BATCH and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            await self._write(batch)

    async def drain(self) -> None:
        """At shutdown: whatever is still queued goes to Redis or the spool."""
        batch: list[UsageEvent] = []
        while not self._queue.empty():
            batch.append(self._queue.get_nowait())
        if batch:
            await self._write(batch)

    async def _write(self, batch: list[UsageEvent]) -> None:
        lines = [_line(e) for e in batch]
        if self._redis_backoff.ready():
            try:
                await self._xadd(lines)
                self._redis_backoff.succeeded()
                return
            except REDIS_ERRORS as exc:
                # A pipeline that failed part-way may have added some events: spooling all of them replays those
                # twice, which the ledger's request_id key absorbs; losing one would not be absorbed.
                delay = self._redis_backoff.failed()
                log.warning("usage stream refused a write (%s: %s); spooling to %s for %.0f s", type(exc).__name__,
                            str(exc)[:80], self._spool_file, delay)
        await asyncio.to_thread(self._append_spool, lines)
        self.num_spooled += len(lines)

    async def _xadd(self, lines: list[str]) -> None:
        async with self._client.pipeline(transaction=False) as pipe:
            for line in lines:
                pipe.xadd(USAGE_STREAM, {USAGE_EVENT_FIELD: line})
            await pipe.execute()

    def _append_spool(self, lines: list[str]) -> None:
        self._spool_dir.mkdir(parents=True, exist_ok=True)
        with open(self._spool_file, "a", encoding="utf-8") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            try:
                f.write("".join(line + "\n" for line in lines))
                f.flush()
                os.fsync(f.fileno())
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)

    async def replay(self) -> int:
        """Moves spooled events into the stream; returns how many. Raises if Redis is still unreachable."""
        moved = 0
        for path in sorted(self._spool_dir.glob("usage-*.jsonl")) if self._spool_dir.exists() else []:
            if path.stat().st_size == 0:
                continue
            moved += await self._replay_file(path)
        self.num_replayed += moved
        if moved:
            self._redis_backoff.succeeded()
        return moved

    async def _replay_file(self, path: Path) -> int:
        f = await asyncio.to_thread(open, path, "r+", encoding="utf-8")
        try:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return 0  # another process is replaying or appending it; next round
            lines = [line for line in f.read().splitlines() if _is_event(line)]
            if lines:
                for i in range(0, len(lines), _BATCH):
                    await self._xadd(lines[i : i + _BATCH])
            f.seek(0)
            f.truncate()
            f.flush()
            os.fsync(f.fileno())
            return len(lines)
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)
            f.close()

    async def run_replayer(self) -> None:
        backoff = Backoff(first_s=self._replay_interval_s, max_s=30.0)
        while True:
            await asyncio.sleep(backoff.delay_s)
            try:
                moved = await self.replay()
                backoff.succeeded()
                if moved:
                    log.info("replayed %d spooled usage events", moved)
            except REDIS_ERRORS as exc:  # Redis still refuses; the events stay spooled, the next try comes later
                log.debug("usage replay refused (%s); next try in %.0f s", type(exc).__name__, backoff.failed())


def _line(event: UsageEvent) -> str:
    return json.dumps(asdict(event), separators=(",", ":"))


def _is_event(line: str) -> bool:
    # A line torn by a crash mid-write can't be billed correctly; it is logged and dropped rather than guessed.
    try:
        return isinstance(json.loads(line), dict)
    except ValueError:
        if line.strip():
            log.error("dropping unreadable spooled usage line (%d chars)", len(line))
        return False
