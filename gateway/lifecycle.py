"""One inference request's life after authentication, owned by one `InferenceCall`: resolve the model → billing
check → admit under the rate limits → route → open a worker → relay its answer (JSON, or SSE) → settle.

Settling — the usage event, the rate-limit correction (estimate -> real tokens), the worker's load slot and the
upstream connection — happens exactly once, in the one `finally` of `InferenceCall._life`, however the request ends:
no worker, a worker error, a client that hangs up mid-stream, or done. `_life` is an async generator whose first item
is the Response to send (JSON), or `_STREAM_STARTS` followed by the SSE bytes; the streaming response closes it when
the body ends or the client goes away, so its `finally` spans the stream too. The synchronous part of settling comes
first: a client disconnect cancels the stream at its next await.
"""

import contextlib
import json
import logging
import math
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Coroutine
from typing import Any, cast

from fastapi import Response
from fastapi.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from billing.pricing import InvalidUsage, Prices
from contracts import ACCOUNT_ID_HEADER
from gateway.billing_guard import COST_HEADER, request_cost
from gateway.budget import MAX_COST_HEADER, Budget, parse_max_cost
from gateway.db import KeyRecord, ModelEntry
from gateway.embeddings import EmbeddingRequest, check_model_kind
from gateway.errors import ModelNotFound, NoCapacity, ServiceUnavailable, UpstreamFailed
from gateway.metering import UsageEvent, utc_now_iso
from gateway.proxy import RelayState, Usage, relay_sse
from gateway.ratelimit import Admission
from gateway.registry import WorkerInfo
from gateway.routes import RoutedModel
from gateway.routing import candidates
from gateway.schemas import InferenceRequest
from gateway.services import Services
from gateway.upstream_http import UpstreamResponse

log = logging.getLogger("hearth.gateway.lifecycle")


VARIANT_HEADER = "x-hearth-variant"  # which variant of a route served the request (public model name)


class _StreamStarts:
    """First item of a streamed life: the status line and headers may go; SSE bytes follow."""


_STREAM_STARTS = _StreamStarts()


class RelayResponse(StreamingResponse):
    """A StreamingResponse that runs its cleanup even if the body iterator never started (client gone early)."""

    def __init__(self, content: AsyncIterator[bytes], on_close: Callable[[], Coroutine[Any, Any, None]],
                 **kwargs: Any) -> None:
        super().__init__(content, **kwargs)
        self._on_close = on_close

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            await self._on_close()


class InferenceCall:
    def __init__(self, services: Services, key: KeyRecord, body: InferenceRequest | EmbeddingRequest, path: str,
                 request_id: str, *, max_cost_header: str | None = None) -> None:
        self._services = services
        self._max_cost_header = max_cost_header  # x-hearth-max-cost; the body's max_cost wins
        self._key = key
        self._body = body
        self._path = path
        self._request_id = request_id
        self._entry: ModelEntry | None = None
        self._routed: RoutedModel | None = None  # the request named one of the account's routes
        self._prices: Prices | None = None
        self._completion_limit: int | None = None  # per choice, from max_cost (gateway/budget.py)
        self._admission: Admission | None = None
        self._worker: WorkerInfo | None = None
        self._response: UpstreamResponse | None = None
        self._answered = False  # the worker accepted the request (status 200): from here a usage event is due
        self._relay = RelayState()
        self._started_at = ""

    async def respond(self) -> Response:
        life = self._life()
        first = await anext(life)  # raises what refused the request; `_life` has settled by then
        if isinstance(first, Response):
            await life.aclose()
            return first
        assert self._admission is not None
        headers = {**self._admission.headers, **self._variant_header(), "cache-control": "no-cache",
                   "x-accel-buffering": "no"}
        return RelayResponse(cast(AsyncIterator[bytes], life), life.aclose, media_type="text/event-stream",
                             headers=headers)

    async def _life(self) -> AsyncGenerator[Response | _StreamStarts | bytes, None]:
        services, body = self._services, self._body
        body.check_extras()
        entry = self._entry = await self._resolve(body.model)
        await services.billing.check(self._key.account_id)  # over the spend limit: 429 insufficient_quota
        self._prices = await self._prices_of(entry)
        check_model_kind(entry, body, self._path)
        self._completion_limit = await self._budget_limit(entry)  # before admission: a refusal costs nothing
        max_new = body.max_new_tokens()
        if max_new is None:  # chat without max_tokens; embeddings generate nothing (0)
            max_new = services.settings.default_max_tokens_estimate
        if self._completion_limit is not None:
            max_new = min(max_new, self._completion_limit)
        self._admission = await services.limiter.admit(self._key, math.ceil(body.prompt_chars() / 4) + max_new)
        try:
            await self._open(entry)
            if not body.stream:
                yield await self._json_response()
                return
            yield _STREAM_STARTS
            relay = relay_sse(cast(UpstreamResponse, self._response), self._relay, internal_model=entry.worker_model,
                              public_model=body.model, include_usage=body.client_wants_usage, cost=self._cost)
            async with contextlib.aclosing(relay):
                async for chunk in relay:
                    yield chunk
        finally:
            self._settle()
            if self._worker is not None and self._response is not None:
                await services.upstream.finish(self._worker, self._response)

    async def _resolve(self, name: str) -> ModelEntry:
        """A catalog model or own adapter, else one of the account's routes (its variant picked here)."""
        try:
            return await self._services.catalog.resolve(self._key, name)
        except ModelNotFound:
            if not name.startswith(f"accounts/{self._key.account_slug}/models/"):
                raise
            user = (self._body.model_extra or {}).get("user")
            routed = await self._services.routes.resolve(self._key.account_id, name,
                                                         user if isinstance(user, str) and user else None)
            if routed is None:
                raise
            self._routed = routed
            return routed.entry

    def _variant_header(self) -> dict[str, str]:
        return {VARIANT_HEADER: self._routed.variant_name} if self._routed is not None else {}

    async def _budget_limit(self, entry: ModelEntry) -> int | None:
        """Each choice's completion cap under the request's max_cost; None without one (or on a free model)."""
        body = self._body
        if not isinstance(body, InferenceRequest):
            return None
        if body.max_cost is not None:
            max_cost = parse_max_cost(body.max_cost, source="body")
        else:
            max_cost = parse_max_cost(self._max_cost_header, source=MAX_COST_HEADER)
        if max_cost is None:
            max_cost = self._key.max_cost_per_request  # the key's default cap, when the request sets none
        if max_cost is None:
            return None
        prices = await self._services.prices.prices(entry.base_model_id)  # no stale fallback: 503 if unreadable
        if prices is None:
            return None  # no price row: the model costs nothing
        return Budget(max_cost).completion_limit(prices, prompt_token_bound=body.prompt_token_bound(),
                                                 num_choices=body.num_choices())

    async def _prices_of(self, entry: ModelEntry) -> Prices | None:
        try:
            return await self._services.prices.prices(entry.base_model_id)  # an adapter costs what its base costs
        except ServiceUnavailable:
            return None  # Postgres away past the stale bound: the response shows no cost; the ledger still rates

    async def _open(self, entry: ModelEntry) -> None:
        services, settings = self._services, self._services.settings
        workers = candidates(services.registry.workers(), base_model=entry.base_slug, adapter_uid=entry.adapter_uid,
                             region=settings.region, load_factor=settings.affinity_load_factor, kind=entry.kind)
        if not workers:
            raise NoCapacity(f"No worker is serving the model `{self._body.model}` right now. Please retry shortly.")
        upstream_body = self._body.upstream_body(entry.worker_model)
        if self._completion_limit is not None and isinstance(self._body, InferenceRequest):
            upstream_body = self._body.with_completion_limit(upstream_body, self._completion_limit)
        payload = json.dumps(upstream_body, separators=(",", ":")).encode()
        self._started_at = utc_now_iso()
        self._worker, self._response = await services.upstream.open(
            workers, self._path, payload, self._request_id, headers={ACCOUNT_ID_HEADER: str(self._key.account_id)})
        await services.upstream.raise_for_error(self._response)
        self._answered = True

    async def _json_response(self) -> Response:
        try:
            data = await self._services.upstream.read_json(cast(UpstreamResponse, self._response))
        except UpstreamFailed:
            self._relay.status = "error"  # nothing reached the client, so nothing is billed; the attempt is on record
            raise
        usage = self._relay.usage = Usage.from_worker(data.get("usage"))
        self._relay.status = "finished"
        data["model"] = self._body.model
        assert self._admission is not None
        headers = {**self._admission.headers, **self._variant_header()}
        cost = self._cost(usage)
        if cost is not None and isinstance(data.get("usage"), dict):
            data["usage"]["cost"] = cost
            headers = {**headers, COST_HEADER: cost}
        return Response(json.dumps(data, separators=(",", ":")), media_type="application/json", headers=headers)

    def _settle(self) -> None:
        """Synchronous, so a cancelled stream can't lose it; runs once, from `_life`'s finally."""
        if self._admission is None:
            return  # refused before admission: nothing was charged
        usage = self._relay.billed() if self._answered else Usage()
        if self._answered:
            entry = cast(ModelEntry, self._entry)
            self._services.metering.emit(UsageEvent(
                request_id=self._request_id, account_id=self._key.account_id, api_key_id=self._key.key_id,
                model_id=entry.base_model_id, adapter_id=entry.adapter_id, prompt_tokens=usage.prompt_tokens,
                cached_prompt_tokens=usage.cached_prompt_tokens, completion_tokens=usage.completion_tokens,
                started_at=self._started_at, finished_at=utc_now_iso(), status=self._relay.status,
                route_id=self._routed.route_id if self._routed else None,
                variant_id=self._routed.variant_id if self._routed else None,
                first_token_at=self._relay.first_content_at,
            ))
        self._services.limiter.settle(self._key, self._admission, usage.prompt_tokens + usage.completion_tokens)

    def _cost(self, usage: Usage) -> str | None:
        """USD string by the ledger's formula (billing.pricing), or None when the model has no price row or the
        worker's counts can't be rated (the ledger dead-letters those; the response goes out without a cost)."""
        if self._prices is None:
            return None
        try:
            return request_cost(self._prices, prompt_tokens=usage.prompt_tokens,
                                cached_prompt_tokens=usage.cached_prompt_tokens,
                                completion_tokens=usage.completion_tokens)
        except InvalidUsage:
            log.warning("worker usage can't be rated: %s", usage)
            return None
