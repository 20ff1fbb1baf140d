"""Which model names a key may call, cached in-process: the active catalog base models (the same for every account,
refreshed every `catalog_ttl_s`) plus the account's own adapters (per account, same TTL)."""

import asyncio
import time

from gateway.db import Database, KeyRecord, ModelEntry
from gateway.errors import ModelNotFound


class Catalog:
    def __init__(self, db: Database, *, ttl_s: float) -> None:
        self._db = db
        self._ttl_s = ttl_s
        self._base: tuple[float, list[ModelEntry]] = (0.0, [])
        self._adapters: dict[int, tuple[float, list[ModelEntry]]] = {}
        self._lock = asyncio.Lock()

    async def _base_models(self) -> list[ModelEntry]:
        if self._base[0] > time.monotonic():
            return self._base[1]
        async with self._lock:  # one refresh however many requests find it stale
            if self._base[0] <= time.monotonic():
                self._base = (time.monotonic() + self._ttl_s, await self._db.base_models())
        return self._base[1]

    async def _account_adapters(self, account_id: int) -> list[ModelEntry]:
        hit = self._adapters.get(account_id)
        if hit is not None and hit[0] > time.monotonic():
            return hit[1]
        adapters = await self._db.adapters_for_account(account_id)
        if len(self._adapters) > 10_000:
            self._adapters.clear()
        self._adapters[account_id] = (time.monotonic() + self._ttl_s, adapters)
        return adapters

    async def models_for(self, key: KeyRecord) -> list[ModelEntry]:
        return [*await self._base_models(), *await self._account_adapters(key.account_id)]

    async def resolve(self, key: KeyRecord, name: str) -> ModelEntry:
        """The public name, or a base model's bare slug (`smollm2-135m-instruct`)."""
        for entry in await self.models_for(key):
            if name == entry.public_name or (entry.adapter_uid is None and name == entry.base_slug):
                return entry
        raise ModelNotFound(f"The model `{name}` does not exist or you do not have access to it.")
