"""POST /v1/chat/completions and /v1/completions: authenticate, resolve the model, admit under the rate limits,
route, forward, and meter what the worker reports."""

import json
import logging
import math
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING

from fastapi import APIRouter, Request, Response
from fastapi.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from billing.pricing import InvalidUsage, Prices
from gateway.auth import CurrentKey
from gateway.billing_guard import COST_HEADER, request_cost
from gateway.db import KeyRecord, ModelEntry
from gateway.errors import NoCapacity, UpstreamFailed
from gateway.metering import UsageEvent, utc_now_iso
from gateway.proxy import RelayState, Upstream, Usage, relay_sse
from gateway.ratelimit import Admission
from gateway.registry import WorkerInfo
from gateway.routing import candidates
from gateway.schemas import ChatCompletionRequest, CompletionRequest, _Request
from gateway.upstream_http import UpstreamResponse

if TYPE_CHECKING:
    from gateway.app import Services

log = logging.getLogger("hearth.gateway.inference")
router = APIRouter(prefix="/v1")


class RelayResponse(StreamingResponse):
    """A StreamingResponse that runs its cleanup even if the body iterator never started (client gone early)."""

    def __init__(self, content: AsyncIterator[bytes], on_close: Callable[[], object], **kwargs: object) -> None:
        super().__init__(content, **kwargs)  # type: ignore[arg-type]
        self._on_close = on_close

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            await self._on_close()  # type: ignore[misc]


@router.post("/chat/completions")
async def chat_completions(body: ChatCompletionRequest, key: CurrentKey, request: Request) -> Response:
    return await _handle(request, key, body, "/v1/chat/completions")


@router.post("/completions")
async def completions(body: CompletionRequest, key: CurrentKey, request: Request) -> Response:
    return await _handle(request, key, body, "/v1/completions")


async def _handle(request: Request, key: KeyRecord, body: _Request, path: str) -> Response:
    services: Services = request.app.state.services
    settings = services.settings
    request_id: str = request.state.request_id
    body.check_extras()
    entry = await services.catalog.resolve(key, body.model)
    await services.billing.check(key.account_id)  # over the spend limit: 429 insufficient_quota, never retried
    prices = await services.prices.prices(entry.base_model_id)  # an adapter is priced as its base model
    max_new = body.max_new_tokens() or settings.default_max_tokens_estimate
    admission = await services.limiter.admit(key, math.ceil(body.prompt_chars() / 4) + max_new)
    workers = candidates(services.registry.workers(), base_model=entry.base_slug, adapter_uid=entry.adapter_uid,
                         region=settings.region, load_factor=settings.affinity_load_factor)
    if not workers:
        services.limiter.settle(key, admission, 0)
        raise NoCapacity(f"No worker is serving the model `{body.model}` right now. Please retry shortly.")
    payload = json.dumps(body.upstream_body(entry.worker_model), separators=(",", ":")).encode()
    started_at = utc_now_iso()
    upstream: Upstream = services.upstream
    try:
        worker, response = await upstream.open(workers, path, payload, request_id)
    except NoCapacity:
        services.limiter.settle(key, admission, 0)
        raise
    try:
        await upstream.raise_for_error(response)
    except BaseException:
        await upstream.finish(worker, response)
        services.limiter.settle(key, admission, 0)
        raise

    def meter(usage: Usage, status: str) -> None:
        services.metering.emit(UsageEvent(
            request_id=request_id, account_id=key.account_id, api_key_id=key.key_id, model_id=entry.base_model_id,
            adapter_id=entry.adapter_id, prompt_tokens=usage.prompt_tokens,
            cached_prompt_tokens=usage.cached_prompt_tokens, completion_tokens=usage.completion_tokens,
            started_at=started_at, finished_at=utc_now_iso(), status=status,
        ))
        services.limiter.settle(key, admission, usage.prompt_tokens + usage.completion_tokens)

    if not body.stream:
        try:
            data = await upstream.read_json(response)
        except UpstreamFailed:
            meter(Usage(), "error")  # nothing reached the client, so nothing is billed, but the attempt is on record
            raise
        finally:
            await upstream.finish(worker, response)
        usage = Usage.from_worker(data.get("usage"))
        meter(usage, "finished")
        data["model"] = body.model
        headers = admission.headers
        cost = _cost(prices, usage)
        if cost is not None and isinstance(data.get("usage"), dict):
            data["usage"]["cost"] = cost
            headers = {**headers, COST_HEADER: cost}
        return Response(json.dumps(data, separators=(",", ":")), media_type="application/json", headers=headers)
    return _stream(services, worker, response, entry, body, admission, meter, lambda u: _cost(prices, u))


def _cost(prices: Prices | None, usage: Usage) -> str | None:
    """USD string by the ledger's formula (billing.pricing), or None when the model has no price row or the worker's
    counts can't be rated (the ledger dead-letters those; the response goes out without a cost)."""
    if prices is None:
        return None
    try:
        return request_cost(prices, prompt_tokens=usage.prompt_tokens, cached_prompt_tokens=usage.cached_prompt_tokens,
                            completion_tokens=usage.completion_tokens)
    except InvalidUsage:
        log.warning("worker usage can't be rated: %s", usage)
        return None


def _stream(services: "Services", worker: WorkerInfo, response: UpstreamResponse, entry: ModelEntry, body: _Request,
            admission: Admission, meter: Callable[[Usage, str], None], cost: Callable[[Usage], str | None]
            ) -> RelayResponse:
    state = RelayState()
    metered = False

    async def close() -> None:
        # Called from the body's finally and again by RelayResponse: a client disconnect cancels the first call at
        # its first await, so the synchronous part (metering, load accounting) comes first and runs exactly once,
        # and the second call, outside the cancelled scope, closes the worker connection (aclose is idempotent).
        nonlocal metered
        if not metered:
            metered = True
            meter(state.billed(), state.status)
            services.registry.release(worker)
        await response.aclose()

    async def body_iter() -> AsyncIterator[bytes]:
        try:
            async for chunk in relay_sse(response, state, internal_model=entry.worker_model,
                                         public_model=body.model, include_usage=body.client_wants_usage,
                                         cost=cost):
                yield chunk
        finally:
            await close()

    headers = {**admission.headers, "cache-control": "no-cache", "x-accel-buffering": "no"}
    return RelayResponse(body_iter(), close, media_type="text/event-stream", headers=headers)
