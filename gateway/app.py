"""The gateway application: one set of process-wide services (DB pool, Redis client, HTTP client, caches, background
tasks) opened in the lifespan and shared by every request through `app.state.services`."""

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Coroutine
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import redis.asyncio as aioredis
from fastapi import FastAPI
from starlette.middleware.cors import CORSMiddleware

from gateway.auth import Authenticator
from gateway.billing_guard import BillingGuard, PriceBook
from gateway.catalog import Catalog
from gateway.db import Database
from gateway.errors import install_error_handlers
from gateway.metering import Metering
from gateway.middleware import RequestIdMiddleware
from gateway.proxy import Upstream
from gateway.ratelimit import RateLimiter
from gateway.registry import Registry
from gateway.routers import health, inference, models
from gateway.settings import Settings, get_settings

log = logging.getLogger("hearth.gateway")


@dataclass
class Services:
    settings: Settings
    db: Database
    redis: aioredis.Redis
    auth: Authenticator
    catalog: Catalog
    limiter: RateLimiter
    registry: Registry
    upstream: Upstream
    metering: Metering
    billing: BillingGuard
    prices: PriceBook
    _tasks: set[asyncio.Task[Any]] = field(default_factory=set)

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        """Fire-and-forget work that must outlive a cancelled request handler."""
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


def build_services(settings: Settings) -> Services:
    db = Database(settings.database_url, min_size=settings.db_pool_min, max_size=settings.db_pool_max)
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
                           max_entries=settings.key_cache_max_entries),
        catalog=Catalog(db, ttl_s=settings.catalog_ttl_s, miss_refresh_s=settings.adapter_miss_refresh_s),
        limiter=RateLimiter(client, default_rpm=settings.default_rpm_limit, default_tpm=settings.default_tpm_limit,
                            key_rpm=settings.key_rpm_limit, key_tpm=settings.key_tpm_limit),
        registry=registry,
        upstream=Upstream(registry, worker_secret=settings.worker_secret,
                          connect_timeout_s=settings.upstream_connect_timeout_s,
                          read_timeout_s=settings.upstream_read_timeout_s,
                          max_connections=settings.upstream_max_connections,
                          max_attempts=settings.max_upstream_attempts),
        metering=Metering(client, settings.spool_dir, replay_interval_s=settings.spool_replay_interval_s),
        billing=BillingGuard(client),
        prices=PriceBook(db.fetch),
    )


async def _every(interval_s: float, fn: Any) -> None:
    while True:
        await asyncio.sleep(interval_s)
        await fn()


async def _cancel_all(tasks: list[asyncio.Task[Any]]) -> None:
    # Cancelled again until done: on Python 3.11 a cancel that lands as redis-py's own asyncio.timeout expires can
    # surface as TimeoutError, which the loops catch as a Redis outage and go on (seen as a hung test shutdown).
    pending = set(tasks)
    while pending:
        for task in pending:
            task.cancel()
        _, pending = await asyncio.wait(pending, timeout=0.5)


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    services: Services = build_services(app.state.settings)
    app.state.services = services
    await services.db.open()
    # The pub/sub and registry subscriptions need a pubsub connection apart from the command pool (redis-py
    # gives each pubsub its own), and a sleeping loop each.
    background = [
        asyncio.create_task(services.auth.listen_revocations(services.redis), name="revocations"),
        asyncio.create_task(services.catalog.listen_deletions(services.redis), name="adapter-deletions"),
        asyncio.create_task(services.registry.run(), name="registry"),
        asyncio.create_task(services.metering.run_writer(), name="usage-writer"),
        asyncio.create_task(services.limiter.run_settler(), name="rate-limit-settler"),
        asyncio.create_task(services.metering.run_replayer(), name="usage-replayer"),
        asyncio.create_task(_every(1.0, lambda: services.auth.flush_last_used(services.redis)), name="last-used"),
    ]
    with contextlib.suppress(TimeoutError):  # start routing with a registry snapshot when Redis is there
        await asyncio.wait_for(services.registry.refreshed.wait(), timeout=2.0)
    try:
        yield
    finally:
        await _cancel_all(background)
        await asyncio.gather(*services._tasks, return_exceptions=True)
        await services.metering.drain()
        await services.limiter.flush()
        await services.auth.flush_last_used(services.redis)
        await services.upstream.aclose()
        await services.db.close()
        await services.redis.aclose()


_RATE_LIMIT_HEADERS = [
    f"x-ratelimit-{what}-{unit}" for what in ("limit", "remaining", "reset") for unit in ("requests", "tokens")
]


def create_app(settings: Settings | None = None) -> FastAPI:
    # FastAPI's native OpenTelemetry hook asks the global tracer/meter/logger providers (os.environ lookups) on every
    # request even when nothing is configured: ~3% of the gateway's CPU under bench/gateway.py. Off.
    app = FastAPI(title="Hearth gateway", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None,
                  telemetry={"tracing": False, "metrics": False, "logs": False})
    app.state.settings = settings or get_settings()
    install_error_handlers(app)
    app.add_middleware(RequestIdMiddleware)
    origins = [o.strip() for o in app.state.settings.cors_origins.split(",") if o.strip()]
    if origins:
        # Outermost, so preflights are answered before auth; credentials stay off (the key is a Bearer header).
        app.add_middleware(
            CORSMiddleware,
            allow_origins=origins,
            allow_methods=["GET", "POST", "OPTIONS"],
            allow_headers=["authorization", "content-type", "x-request-id"],
            expose_headers=["x-request-id", "x-hearth-cost", "retry-after", *_RATE_LIMIT_HEADERS],
            max_age=600,
        )
    app.include_router(inference.router)
    app.include_router(models.router)
    app.include_router(health.router)
    return app
