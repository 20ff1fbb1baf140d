"""Which model names a key may call, cached in-process: the active catalog base models (the same for every account,
refreshed every `catalog_ttl_s`) plus the account's own `ready` adapters (per account, same TTL).

A request for a base model never reads the account's adapters. A name in the caller's own namespace that the cached
list lacks is looked up again (at most every `adapter_miss_refresh_s` per account), so an adapter is callable the moment validation
marks it ready; a deleted adapter is dropped at once on the control plane's ADAPTERS_DELETED_CHANNEL message (contracts).
"""

import asyncio
import logging
import time
from dataclasses import dataclass, field

import redis.asyncio as aioredis

from contracts import ADAPTERS_DELETED_CHANNEL
from contracts.pubsub import listen_forever
from gateway.db import Database, KeyRecord, ModelEntry
from gateway.errors import ModelNotFound, ServiceUnavailable
from gateway.outages import DB_ERRORS

log = logging.getLogger("hearth.gateway.catalog")

_MAX_ACCOUNTS = 10_000


@dataclass(slots=True)
class _Listing:
    fetched_at: float = 0.0
    entries: list[ModelEntry] = field(default_factory=list)
    by_name: dict[str, ModelEntry] = field(default_factory=dict)

    @classmethod
    def of(cls, entries: list[ModelEntry], *, bare_slugs: bool) -> "_Listing":
        by_name = {e.public_name: e for e in entries}
        if bare_slugs:  # `smollm2-135m-instruct` names the catalog model too
            by_name.update({e.base_slug: e for e in entries if e.base_slug not in by_name})
        return cls(time.monotonic(), entries, by_name)


class Catalog:
    def __init__(self, db: Database, *, ttl_s: float, miss_refresh_s: float = 1.0, stale_s: float = 0.0) -> None:
        self._db = db
        self._stale_s = stale_s  # Postgres away: a listing this old past its TTL is still served
        self._ttl_s = ttl_s
        self._miss_refresh_s = miss_refresh_s
        self._base = _Listing()
        self._base_lock = asyncio.Lock()
        self._adapters: dict[int, _Listing] = {}
        self._inflight: dict[int, asyncio.Future[list[ModelEntry]]] = {}

    async def _base_models(self) -> _Listing:
        if self._base.fetched_at + self._ttl_s > time.monotonic() and self._base.fetched_at:
            return self._base
        async with self._base_lock:  # one refresh however many requests find it stale
            if not self._base.fetched_at or self._base.fetched_at + self._ttl_s <= time.monotonic():
                try:
                    self._base = _Listing.of(await self._db.base_models(), bare_slugs=True)
                except DB_ERRORS as exc:
                    if not self._usable_stale(self._base):
                        raise ServiceUnavailable("The model catalog can't be read right now. Please retry "
                                                 "shortly.") from exc
                    log.warning("catalog unreadable (%s); serving the cached one", type(exc).__name__)
        return self._base

    def _usable_stale(self, listing: "_Listing | None") -> bool:
        return (listing is not None and listing.fetched_at > 0
                and listing.fetched_at + self._ttl_s + self._stale_s > time.monotonic())

    async def _account_adapters(self, account_id: int, *, max_age_s: float) -> _Listing:
        hit = self._adapters.get(account_id)
        if hit is not None and hit.fetched_at + max_age_s > time.monotonic():
            return hit
        task = self._inflight.get(account_id)
        if task is None:  # one query per account however many requests miss at once
            task = asyncio.ensure_future(self._db.adapters_for_account(account_id))
            self._inflight[account_id] = task
            task.add_done_callback(lambda _: self._inflight.pop(account_id, None))
        try:
            listing = _Listing.of(await asyncio.shield(task), bare_slugs=False)
        except DB_ERRORS as exc:
            if hit is None or not self._usable_stale(hit):
                raise ServiceUnavailable("Your models can't be read right now. Please retry shortly.") from exc
            return hit
        if len(self._adapters) >= _MAX_ACCOUNTS:
            self._adapters.clear()
        self._adapters[account_id] = listing
        return listing

    async def models_for(self, key: KeyRecord) -> list[ModelEntry]:
        base = await self._base_models()
        adapters = await self._account_adapters(key.account_id, max_age_s=self._ttl_s)
        return [*base.entries, *adapters.entries]

    async def resolve(self, key: KeyRecord, name: str) -> ModelEntry:
        """The public name, or a base model's bare slug (`smollm2-135m-instruct`)."""
        entry = (await self._base_models()).by_name.get(name)
        if entry is not None:
            return entry
        if name.startswith(f"accounts/{key.account_slug}/models/"):
            listing = await self._account_adapters(key.account_id, max_age_s=self._ttl_s)
            entry = listing.by_name.get(name)
            if entry is None and listing.fetched_at + self._miss_refresh_s <= time.monotonic():
                entry = (await self._account_adapters(key.account_id, max_age_s=0)).by_name.get(name)
            if entry is not None:
                return entry
        raise ModelNotFound(f"The model `{name}` does not exist or you do not have access to it.")

    def forget_adapter(self, uid: str) -> None:
        for account_id in [a for a, listing in self._adapters.items()
                           if any(e.adapter_uid == uid for e in listing.entries)]:
            self._adapters.pop(account_id, None)

    async def listen_deletions(self, client: aioredis.Redis) -> None:
        """Runs for the life of the process; after a Redis outage every cached adapter list is dropped, since
        deletions published meanwhile were lost."""
        await listen_forever(client, ADAPTERS_DELETED_CHANNEL, self.forget_adapter, self._adapters.clear)
