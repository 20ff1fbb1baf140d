"""The gateway application: middleware, error handlers and routers around one `Services` (gateway/services.py),
built from `Settings` and opened for the app's lifespan."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from starlette.middleware.cors import CORSMiddleware

from gateway.body_limit import BodyLimitMiddleware
from gateway.budget import MAX_COST_HEADER
from gateway.errors import install_error_handlers
from gateway.middleware import RequestIdMiddleware
from gateway.routers import health, inference, metrics, models
from gateway.services import build_services
from gateway.settings import Settings, get_settings


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    services = build_services(app.state.settings)
    app.state.services = services
    await services.open()
    try:
        yield
    finally:
        await services.close()


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
    app.add_middleware(BodyLimitMiddleware, max_body_bytes=app.state.settings.max_body_bytes)
    app.add_middleware(RequestIdMiddleware)
    origins = [o.strip() for o in app.state.settings.cors_origins.split(",") if o.strip()]
    if origins:
        # Outermost, so preflights are answered before auth; credentials stay off (the key is a Bearer header).
        app.add_middleware(
            CORSMiddleware,
            allow_origins=origins,
            allow_methods=["GET", "POST", "OPTIONS"],
            allow_headers=["authorization", "content-type", "x-request-id", MAX_COST_HEADER],
            expose_headers=["x-request-id", "x-hearth-cost", "x-hearth-variant", "retry-after", *_RATE_LIMIT_HEADERS],
            max_age=600,
        )
    app.include_router(inference.router)
    app.include_router(models.router)
    app.include_router(health.router)
    app.include_router(metrics.router)
    return app
