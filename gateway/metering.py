"""Usage events to the Redis stream USAGE_STREAM (contracts; field USAGE_EVENT_FIELD = JSON, schema in DESIGN.md), never lost.

Requests hand events to an in-process queue (no await on the hot path, and safe from a cancelled handler); one writer
task XADDs them in pipelined batches. When Redis refuses, the batch is appended to this process's spool file
(`<spool_dir>/usage-<host>-<pid>.jsonl`, one JSON event per line, under flock) and a replayer moves every spool file in
the folder back into the stream once Redis answers. Files are truncated after replay, never unlinked, so a writer
holding an open descriptor can't append into a deleted inode. A crash between XADD and truncate replays events twice;
billing keys the ledger by request_id, so that is harmless, while the reverse (a lost event) would not be.
"""

import asyncio
import fcntl
import json
import logging
import os
import socket
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

import redis.asyncio as aioredis

from contracts import USAGE_EVENT_FIELD, USAGE_STREAM

log = logging.getLogger("hearth.gateway.metering")

_BATCH = 500


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


def utc_now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds")


class Metering:
    def __init__(self, client: aioredis.Redis, spool_dir: Path, *, replay_interval_s: float = 1.0) -> None:
        self._client = client
        self._spool_dir = spool_dir
        self._spool_file = spool_dir / f"usage-{socket.gethostname()}-{os.getpid()}.jsonl"
        self._replay_interval_s = replay_interval_s
        self._queue: asyncio.Queue[UsageEvent] = asyncio.Queue()
        self._down_until = 0.0
        self.num_spooled = 0
        self.num_replayed = 0

    def emit(self, event: UsageEvent) -> None:
        self._queue.put_nowait(event)

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
        lines = [json.dumps(asdict(e), separators=(",", ":")) for e in batch]
        if time.monotonic() >= self._down_until:
            try:
                await self._xadd(lines)
                return
            except (aioredis.ConnectionError, aioredis.TimeoutError, OSError) as exc:
                log.warning("usage stream unreachable (%s); spooling to %s", type(exc).__name__, self._spool_file)
                self._down_until = time.monotonic() + 1.0
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
            self._down_until = 0.0
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
        while True:
            await asyncio.sleep(self._replay_interval_s)
            try:
                moved = await self.replay()
                if moved:
                    log.info("replayed %d spooled usage events", moved)
            except (aioredis.ConnectionError, aioredis.TimeoutError, OSError):
                pass  # Redis still away; the events stay spooled


def _is_event(line: str) -> bool:
    # A line torn by a crash mid-write can't be billed correctly; it is logged and dropped rather than guessed.
    try:
        return isinstance(json.loads(line), dict)
    except ValueError:
        if line.strip():
            log.error("dropping unreadable spooled usage line (%d chars)", len(line))
        return False
