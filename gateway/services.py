"""The gateway's process-wide services: one DB pool, one Redis client, one upstream HTTP client, the caches built on
them, and the background tasks that keep them fresh. Built from `Settings` once per process, opened and closed by the
app's lifespan, and handed to handlers through `deps.ServicesDep`."""

import asyncio
import contextlib
import logging
from dataclasses import dataclass

import redis.asyncio as aioredis

from gateway.auth import Authenticator
from gateway.billing_guard import BillingGuard, PriceBook
from gateway.catalog import Catalog
from gateway.db import Database
from gateway.metering import Metering
from gateway.proxy import Upstream
from gateway.ratelimit import RateLimiter
from gateway.registry import Registry
from gateway.routes import RouteTable
from gateway.settings import Settings
from gateway.supervisor import Supervisor

log = logging.getLogger("hearth.gateway")


@dataclass(slots=True)
class Services:
    settings: Settings
    db: Database
    redis: aioredis.Redis
    auth: Authenticator
    catalog: Catalog
    routes: RouteTable
    limiter: RateLimiter
    registry: Registry
    upstream: Upstream
    metering: Metering
    billing: BillingGuard
    prices: PriceBook
    supervisor: Supervisor

    async def open(self) -> None:
        await self.db.open()
        # The pub/sub subscriptions need connections apart from the command pool (redis-py gives each pubsub its
        # own) and a loop each; every loop runs under the supervisor, which restarts it if it dies.
        start = self.supervisor.start
        start("revocations", lambda: self.auth.listen_revocations(self.redis))
        start("adapter-deletions", lambda: self.catalog.listen_deletions(self.redis))
        start("route-changes", lambda: self.routes.listen_changes(self.redis))
        start("route-adapter-deletions", lambda: self.routes.listen_adapter_deletions(self.redis))
        start("registry", self.registry.run)
        start("usage-writer", self.metering.run_writer)
        start("usage-replayer", self.metering.run_replayer)
        start("rate-limit-settler", self.limiter.run_settler)
        start("last-used", self._flush_last_used_forever)
        with contextlib.suppress(TimeoutError):  # start routing with a registry snapshot when Redis is there
            await asyncio.wait_for(self.registry.refreshed.wait(), timeout=2.0)

    async def _flush_last_used_forever(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            await self.auth.flush_last_used(self.redis)

    async def close(self) -> None:
        await self.supervisor.stop()
        await self.metering.drain()
        await self.limiter.flush()
        await self.auth.flush_last_used(self.redis)
        await self.upstream.aclose()
        await self.db.close()
        await self.redis.aclose()


def build_services(settings: Settings) -> Services:
    db = Database(settings.database_url, min_size=settings.db_pool_min, max_size=settings.db_pool_max,
                  timeout_s=settings.db_pool_timeout_s)
    client = aioredis.Redis.from_url(
        settings.redis_url,
        socket_timeout=settings.redis_socket_timeout_s,
        socket_connect_timeout=settings.redis_socket_timeout_s,
    )
    registry = Registry(client, refresh_s=settings.registry_refresh_s)
    return Services(
        settings=settings,
        db=db,
        redis=client,
        auth=Authenticator(db, ttl_s=settings.key_cache_ttl_s, negative_ttl_s=settings.key_negative_ttl_s,
                           max_entries=settings.key_cache_max_entries, stale_s=settings.stale_serve_s),
        catalog=Catalog(db, ttl_s=settings.catalog_ttl_s, miss_refresh_s=settings.adapter_miss_refresh_s,
                        stale_s=settings.stale_serve_s),
        routes=RouteTable(db, ttl_s=settings.catalog_ttl_s),
        limiter=RateLimiter(client, default_rpm=settings.default_rpm_limit, default_tpm=settings.default_tpm_limit,
                            key_rpm=settings.key_rpm_limit, key_tpm=settings.key_tpm_limit),
        registry=registry,
        upstream=Upstream(registry, worker_secret=settings.worker_secret,
                          connect_timeout_s=settings.upstream_connect_timeout_s,
                          read_timeout_s=settings.upstream_read_timeout_s,
                          max_connections=settings.upstream_max_connections,
                          max_attempts=settings.max_upstream_attempts),
        metering=Metering(client, settings.spool_dir, replay_interval_s=settings.spool_replay_interval_s),
        billing=BillingGuard(client, cache_ttl_s=settings.billing_cache_ttl_s,
                             default_limit_micros=settings.default_spend_limit_micros),
        prices=PriceBook(db.fetch, ttl_s=settings.price_cache_ttl_s, stale_s=settings.stale_serve_s),
        supervisor=Supervisor(),
    )
