"""The worker registry as this process sees it: a snapshot of the workers' heartbeats (contracts.worker_key), refreshed from Redis
every `registry_refresh_s` by a background task (never per request), plus this process's own in-flight count per
worker so load moves between heartbeats.

If Redis is unreachable the last snapshot is kept: workers can't heartbeat either, and a dead one is found by the
proxy's connect-failure retry.
"""

import asyncio
import json
import logging
from dataclasses import dataclass, field

import redis.asyncio as aioredis

from contracts import WORKERS_SET, worker_key
from contracts.model_kinds import MODEL_KIND_CHAT

log = logging.getLogger("hearth.gateway.registry")


@dataclass(slots=True)
class WorkerInfo:
    worker_id: str
    url: str
    base_model: str
    region: str
    max_loras: int = 0
    resident_adapters: frozenset[str] = field(default_factory=frozenset)
    num_running: int = 0
    num_waiting: int = 0
    num_free_blocks: int = 0
    kind: str = MODEL_KIND_CHAT  # what the worker serves (contracts.model_kinds); chat workers before #16 omit it
    inflight: int = 0  # this gateway process's requests on it since the last heartbeat was read

    @property
    def load(self) -> int:
        # A heartbeat is up to a second old; this process's in-flight count is current. Taking the larger avoids
        # counting a request twice once the worker reports it.
        return max(self.num_running + self.num_waiting, self.inflight)

    @classmethod
    def from_heartbeat(cls, raw: bytes | str) -> "WorkerInfo":
        data = json.loads(raw)
        return cls(
            worker_id=str(data["worker_id"]),
            url=str(data["url"]).rstrip("/"),
            base_model=str(data["base_model"]),
            region=str(data.get("region") or "local"),
            kind=str(data.get("kind") or MODEL_KIND_CHAT),
            max_loras=int(data.get("max_loras") or 0),
            resident_adapters=frozenset(str(a) for a in data.get("resident_adapters") or ()),
            num_running=int(data.get("num_running") or 0),
            num_waiting=int(data.get("num_waiting") or 0),
            num_free_blocks=int(data.get("num_free_blocks") or 0),
        )


class Registry:
    def __init__(self, client: aioredis.Redis, *, refresh_s: float) -> None:
        self._client = client
        self._refresh_s = refresh_s
        self._workers: dict[str, WorkerInfo] = {}
        self._inflight: dict[str, int] = {}
        self.refreshed = asyncio.Event()

    def workers(self) -> list[WorkerInfo]:
        return list(self._workers.values())

    def acquire(self, worker: WorkerInfo) -> None:
        self._inflight[worker.worker_id] = self._inflight.get(worker.worker_id, 0) + 1
        worker.inflight = self._inflight[worker.worker_id]

    def release(self, worker: WorkerInfo) -> None:
        n = self._inflight.get(worker.worker_id, 1) - 1
        if n <= 0:
            self._inflight.pop(worker.worker_id, None)
        else:
            self._inflight[worker.worker_id] = n
        current = self._workers.get(worker.worker_id)
        if current is not None:
            current.inflight = max(0, n)

    async def refresh(self) -> None:
        ids = sorted(m.decode() if isinstance(m, bytes) else str(m) for m in await self._client.smembers(WORKERS_SET))
        raws = await self._client.mget([worker_key(i) for i in ids]) if ids else []
        workers: dict[str, WorkerInfo] = {}
        for worker_id, raw in zip(ids, raws, strict=True):
            if raw is None:
                continue  # heartbeat expired: the worker is gone (its id lingers in the set until someone cleans it)
            try:
                info = WorkerInfo.from_heartbeat(raw)
            except (ValueError, KeyError, TypeError):
                log.warning("ignoring malformed heartbeat of worker %s", worker_id)
                continue
            info.inflight = self._inflight.get(info.worker_id, 0)
            workers[info.worker_id] = info
        self._workers = workers
        self.refreshed.set()

    async def run(self) -> None:
        while True:
            try:
                await self.refresh()
            except (aioredis.RedisError, OSError) as exc:
                log.warning("registry refresh failed (%s); keeping %d workers", type(exc).__name__, len(self._workers))
            await asyncio.sleep(self._refresh_s)
