"""Routes (A/B splits): an account's own model name that serves one of several weighted variants, each a catalog model
or one of the account's ready adapters. Cached per account like the adapter list, dropped at once when the control
plane announces a change (contracts.ROUTES_CHANGED_CHANNEL, the account's id) or an adapter is deleted, so new weights
apply within a second.

Assignment: with `user` in the request, a hash of (account, route, user) picks the variant, so one user always gets
the same one while the weights stay put; without it, a random draw. Only ready variants take part; a route with none
is a 404 that says why."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import random
import time
from dataclasses import dataclass, field

import redis.asyncio as aioredis

from contracts import ADAPTERS_DELETED_CHANNEL, ROUTES_CHANGED_CHANNEL
from contracts.pubsub import listen_forever
from gateway.db import Database, ModelEntry
from gateway.errors import ModelNotFound

log = logging.getLogger("hearth.gateway.routes")

_MAX_ACCOUNTS = 10_000

ROUTES_SQL = """
SELECT r.id, r.name, r.created_at, a.slug, v.id, v.weight, b.id, b.slug, b.context_length, b.public_name,
       ad.id, ad.uid, ad.name, ad.status
FROM routes_route r
JOIN accounts_account a ON a.id = r.account_id
JOIN routes_routevariant v ON v.route_id = r.id
JOIN catalog_basemodel b ON b.id = v.base_model_id
LEFT JOIN adapters_adapter ad ON ad.id = v.adapter_id
WHERE r.account_id = %s AND b.is_active
ORDER BY r.id, v.id
"""


@dataclass(frozen=True, slots=True)
class Variant:
    variant_id: int
    weight: int
    entry: ModelEntry  # what the worker is asked for (base model or base:adapter_uid)


@dataclass(slots=True)
class Route:
    route_id: int
    public_name: str
    created: int
    owned_by: str
    variants: list[Variant] = field(default_factory=list)  # ready ones only
    not_ready: list[str] = field(default_factory=list)

    def pick(self, account_id: int, user: str | None) -> Variant:
        if not self.variants:
            detail = f" (not ready: {', '.join(self.not_ready)})" if self.not_ready else ""
            raise ModelNotFound(f"The route `{self.public_name}` has no ready variant to serve this request{detail}.")
        total = sum(v.weight for v in self.variants)
        if user:
            digest = hashlib.sha256(f"{account_id}\x00{self.route_id}\x00{user}".encode()).digest()
            point = int.from_bytes(digest[:8], "big") % total
        else:
            point = random.randrange(total)
        for variant in self.variants:
            if point < variant.weight:
                return variant
            point -= variant.weight
        return self.variants[-1]  # unreachable: the weights sum to total


@dataclass(frozen=True, slots=True)
class RoutedModel:
    """A request for a route, after the variant was picked."""

    route_id: int
    route_name: str  # the name the client called, kept in the response's `model`
    variant_id: int
    variant_name: str  # x-hearth-variant
    entry: ModelEntry


def _routes_of(rows: list[tuple]) -> dict[str, Route]:
    routes: dict[str, Route] = {}
    for (route_id, name, created_at, account_slug, variant_id, weight, base_id, base_slug, context_length,
         base_public, adapter_id, adapter_uid, adapter_name, adapter_status) in rows:
        public = f"accounts/{account_slug}/models/{name}"
        route = routes.get(public)
        if route is None:
            route = routes[public] = Route(route_id, public, int(created_at.timestamp()), account_slug)
        if adapter_id is None:
            entry = ModelEntry(base_public, base_id, base_slug, context_length, int(created_at.timestamp()), "hearth")
        else:
            variant_public = f"accounts/{account_slug}/models/{adapter_name}"
            if adapter_status != "ready":
                route.not_ready.append(variant_public)
                continue
            entry = ModelEntry(variant_public, base_id, base_slug, context_length, int(created_at.timestamp()),
                               account_slug, adapter_id=adapter_id, adapter_uid=adapter_uid)
        route.variants.append(Variant(variant_id, weight, entry))
    return routes


class RouteTable:
    def __init__(self, db: Database, *, ttl_s: float) -> None:
        self._db = db
        self._ttl_s = ttl_s
        self._cache: dict[int, tuple[float, dict[str, Route]]] = {}
        self._inflight: dict[int, asyncio.Future[list[tuple]]] = {}

    async def _for_account(self, account_id: int) -> dict[str, Route]:
        hit = self._cache.get(account_id)
        if hit is not None and hit[0] + self._ttl_s > time.monotonic():
            return hit[1]
        task = self._inflight.get(account_id)
        if task is None:  # one query per account however many requests miss at once
            task = asyncio.ensure_future(self._db.fetch(ROUTES_SQL, (account_id,)))
            self._inflight[account_id] = task
            task.add_done_callback(lambda _: self._inflight.pop(account_id, None))
        routes = _routes_of(await asyncio.shield(task))
        if len(self._cache) >= _MAX_ACCOUNTS:
            self._cache.clear()
        self._cache[account_id] = (time.monotonic(), routes)
        return routes

    async def routes_for(self, account_id: int) -> list[Route]:
        return list((await self._for_account(account_id)).values())

    async def resolve(self, account_id: int, name: str, user: str | None) -> RoutedModel | None:
        """None when `name` is not one of the account's routes; ModelNotFound when it is but nothing can serve."""
        route = (await self._for_account(account_id)).get(name)
        if route is None:
            return None
        variant = route.pick(account_id, user)
        return RoutedModel(route.route_id, route.public_name, variant.variant_id, variant.entry.public_name,
                           variant.entry)

    def forget_account(self, account_id: int | str) -> None:
        try:
            self._cache.pop(int(account_id), None)
        except ValueError:
            log.warning("ignoring a malformed route change message %r", account_id)

    async def listen_changes(self, client: aioredis.Redis) -> None:
        """Runs for the life of the process; after a Redis outage every cached route is dropped (changes published
        meanwhile were lost)."""
        await listen_forever(client, ROUTES_CHANGED_CHANNEL, self.forget_account, self._cache.clear)

    async def listen_adapter_deletions(self, client: aioredis.Redis) -> None:
        # A deleted adapter's variants are gone from the database (cascade); re-read every account's routes.
        await listen_forever(client, ADAPTERS_DELETED_CHANNEL, lambda _uid: self._cache.clear(), self._cache.clear)
