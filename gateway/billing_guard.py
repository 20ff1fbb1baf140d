"""Billing for the gateway: the per-request spend check and the request's cost. Reads Redis only for the check
(written by the control plane: billing/spend.py documents the keys) and the catalog prices for the cost; never
imports Django (billing.pricing is plain Decimal arithmetic, the same formula the ledger uses).

Wiring (see the billing issue's report): `guard.check(key.account_id)` after authentication and before admission;
`request_cost(await prices.prices(entry.base_model_id), ...)` for `usage.cost` and the `x-hearth-cost` header.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal

import redis.asyncio as aioredis

from billing.pricing import Prices, cost_usd, format_usd
from contracts import billing_state_key, spend_key
from gateway.errors import GatewayError, ServiceUnavailable
from gateway.outages import DB_ERRORS, REDIS_ERRORS

log = logging.getLogger("hearth.gateway.billing")

COST_HEADER = "x-hearth-cost"
_PRICES_SQL = (
    "SELECT id, price_input_per_mtok, price_cached_input_per_mtok, price_output_per_mtok FROM catalog_basemodel"
)


class InsufficientQuota(GatewayError):
    """OpenAI's billing refusal: 429 with type and code `insufficient_quota`; `x-should-retry: false` stops SDKs
    from retrying a request that can't succeed until someone pays."""

    status_code = 429
    error_type = "insufficient_quota"
    code = "insufficient_quota"

    def __init__(self, message: str) -> None:
        super().__init__(message, headers={"x-should-retry": "false"})


@dataclass(frozen=True, slots=True)
class QuotaState:
    spent_micros: int
    limit_micros: int
    credit_micros: int
    payment_status: str

    def refusal(self) -> str | None:
        if self.payment_status == "payment_failed":
            return ("Your last payment failed, so inference is paused for this account. Update your payment method "
                    "in the dashboard's billing settings; requests resume once the invoice is paid.")
        if self.spent_micros >= self.limit_micros + self.credit_micros:
            return (f"You exceeded your current quota: this month's spend (${_usd(self.spent_micros)}) reached your "
                    f"monthly spend limit (${_usd(self.limit_micros)}) plus credits (${_usd(self.credit_micros)}). "
                    "Add credits or a payment method, or raise your limit, in the dashboard's billing settings.")
        return None


def _usd(micros: int) -> str:
    return f"{Decimal(micros) / 1_000_000:.2f}"


# Accounts whose billing state isn't in Redis yet (never billed, or Redis lost it until the next 30 s sync); the
# gateway passes Settings.billing_default_spend_limit.
_DEFAULT_LIMIT_MICROS = 10_000_000


class BillingGuard:
    def __init__(self, client: aioredis.Redis, *, cache_ttl_s: float = 1.0, default_limit_micros: int | None = None,
                 max_entries: int = 100_000) -> None:
        self._client = client
        self._ttl_s = cache_ttl_s
        self._default_limit = _DEFAULT_LIMIT_MICROS if default_limit_micros is None else default_limit_micros
        self._max_entries = max_entries
        self._cache: dict[int, tuple[float, QuotaState]] = {}

    async def state(self, account_id: int) -> QuotaState | None:
        hit = self._cache.get(account_id)
        if hit is not None and hit[0] > time.monotonic():
            return hit[1]
        month = datetime.now(UTC).strftime("%Y%m")
        try:
            async with self._client.pipeline(transaction=False) as pipe:
                pipe.get(spend_key(account_id, month))
                pipe.hgetall(billing_state_key(account_id))
                spent, fields = await pipe.execute()
        except REDIS_ERRORS as exc:
            # Fail open: a Redis outage must not stop paid inference; usage is still metered (spooled) and billed.
            log.warning("billing state unreadable (%s); admitting on the last known state", type(exc).__name__)
            return hit[1] if hit is not None else None
        fields = {k.decode(): v.decode() for k, v in fields.items()}
        state = QuotaState(
            spent_micros=int(spent or 0),
            limit_micros=int(fields.get("limit_micros", self._default_limit)),
            credit_micros=int(fields.get("credit_micros", 0)),
            payment_status=fields.get("payment_status", "ok"),
        )
        if len(self._cache) >= self._max_entries:
            self._cache.clear()
        self._cache[account_id] = (time.monotonic() + self._ttl_s, state)
        return state

    async def check(self, account_id: int) -> None:
        """Raises InsufficientQuota when the account may not start another request."""
        state = await self.state(account_id)
        message = state.refusal() if state is not None else None
        if message is not None:
            raise InsufficientQuota(message)


def request_cost(prices: Prices, *, prompt_tokens: int, cached_prompt_tokens: int, completion_tokens: int) -> str:
    """USD as a string ("0.000035"), exactly what the ledger will charge for these tokens."""
    return format_usd(cost_usd(prices, prompt_tokens=prompt_tokens, cached_prompt_tokens=cached_prompt_tokens,
                               completion_tokens=completion_tokens))


Fetch = Callable[[str], Awaitable[list[tuple]]]


class PriceBook:
    """Catalog prices by base model id, read with the gateway's own pool and cached for ttl_s (an adapter is priced
    as its base model, so the gateway passes entry.base_model_id). `fetch(sql)` returns rows."""

    def __init__(self, fetch: Fetch, *, ttl_s: float = 5.0, stale_s: float = 0.0) -> None:
        self._fetch = fetch
        self._ttl_s = ttl_s
        self._stale_s = stale_s
        self._prices: dict[int, Prices] = {}
        self._expires = 0.0

    async def prices(self, base_model_id: int) -> Prices | None:
        """None: the model has no price row. Postgres away: the cached prices for up to stale_s past their TTL,
        then ServiceUnavailable (callers that only show a cost treat that as no price; the ledger rates anyway)."""
        if self._expires <= time.monotonic() or base_model_id not in self._prices:
            try:
                rows = await self._fetch(_PRICES_SQL)
            except DB_ERRORS as exc:
                if self._expires and self._expires + self._stale_s > time.monotonic():
                    log.warning("prices unreadable (%s); using the cached ones", type(exc).__name__)
                    return self._prices.get(base_model_id)
                raise ServiceUnavailable("Prices can't be read right now. Please retry shortly.") from exc
            self._prices = {row[0]: Prices(Decimal(row[1]), Decimal(row[2]), Decimal(row[3])) for row in rows}
            self._expires = time.monotonic() + self._ttl_s
        return self._prices.get(base_model_id)
