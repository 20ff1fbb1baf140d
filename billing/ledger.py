"""Writes a batch of parsed usage events into the ledger, in one transaction: rate each at its base model's current
catalog price (recorded as a PriceVersion), insert keyed by request_id (ON CONFLICT DO NOTHING, so a replay adds
nothing), add only the rows actually inserted to the hourly roll-ups, and read back the touched accounts' month totals.
Plain SQL with unnest arrays: one statement per table per batch (the ORM's bulk_create can't say which rows were new).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

from django.db import connection, transaction

from billing.events import MalformedEvent, ParsedEvent
from billing.pricing import Prices, cost_usd
from billing.spend import month_start, month_totals

_INSERT_LEDGER = """
INSERT INTO billing_usagerecord (request_id, account_id, api_key_id, base_model_id, adapter_id, prompt_tokens,
    cached_prompt_tokens, completion_tokens, started_at, finished_at, status, price_version_id, cost_usd, route_id,
    variant_id, ttft_ms, ingested_at)
SELECT t.*, now() FROM unnest(%s::text[], %s::bigint[], %s::bigint[], %s::bigint[], %s::bigint[], %s::int[], %s::int[],
    %s::int[], %s::timestamptz[], %s::timestamptz[], %s::text[], %s::bigint[], %s::numeric[], %s::bigint[],
    %s::bigint[], %s::int[]) AS t
ON CONFLICT (request_id) DO NOTHING
RETURNING request_id
"""

_UPSERT_ROLLUP = """
INSERT INTO billing_usagerollup (account_id, hour, base_model_id, api_key_id, num_requests, prompt_tokens,
    cached_prompt_tokens, completion_tokens, cost_usd)
SELECT * FROM unnest(%s::bigint[], %s::timestamptz[], %s::bigint[], %s::bigint[], %s::int[], %s::bigint[],
    %s::bigint[], %s::bigint[], %s::numeric[])
ON CONFLICT (account_id, hour, base_model_id, api_key_id) DO UPDATE SET
    num_requests = billing_usagerollup.num_requests + EXCLUDED.num_requests,
    prompt_tokens = billing_usagerollup.prompt_tokens + EXCLUDED.prompt_tokens,
    cached_prompt_tokens = billing_usagerollup.cached_prompt_tokens + EXCLUDED.cached_prompt_tokens,
    completion_tokens = billing_usagerollup.completion_tokens + EXCLUDED.completion_tokens,
    cost_usd = billing_usagerollup.cost_usd + EXCLUDED.cost_usd
"""

_PRICE_VERSION = """
INSERT INTO billing_priceversion (base_model_id, price_input_per_mtok, price_cached_input_per_mtok,
    price_output_per_mtok, created_at)
VALUES (%s, %s, %s, %s, now())
ON CONFLICT ON CONSTRAINT uniq_priceversion_prices DO UPDATE SET base_model_id = EXCLUDED.base_model_id
RETURNING id
"""


@dataclass(slots=True)
class BatchResult:
    num_inserted: int = 0
    num_duplicates: int = 0
    rejected: list[tuple[int, str]] = field(default_factory=list)  # (index in the batch, reason)
    month_totals: dict[tuple[int, str], Decimal] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class _Model:
    id: int
    prices: Prices


class _References:
    """Which accounts, keys and models of a batch exist (three queries per batch)."""

    def __init__(self, events: list[ParsedEvent]) -> None:
        with connection.cursor() as cur:
            cur.execute("SELECT id FROM accounts_account WHERE id = ANY(%s)", [list({e.account_id for e in events})])
            self.accounts = {row[0] for row in cur.fetchall()}
            cur.execute("SELECT id, account_id FROM keys_apikey WHERE id = ANY(%s)",
                        [list({e.api_key_id for e in events})])
            self.key_owner = dict(cur.fetchall())
            ids = [e.model for e in events if isinstance(e.model, int)]
            names = [e.model for e in events if isinstance(e.model, str)]
            cur.execute(
                "SELECT id, slug, public_name, price_input_per_mtok, price_cached_input_per_mtok, price_output_per_mtok"
                " FROM catalog_basemodel WHERE id = ANY(%s) OR slug = ANY(%s) OR public_name = ANY(%s)",
                [ids, names, names],
            )
            self.models: dict[int | str, _Model] = {}
            for model_id, slug, public_name, p_in, p_cached, p_out in cur.fetchall():
                model = _Model(model_id, Prices(p_in, p_cached, p_out))
                self.models[model_id] = self.models[slug] = self.models[public_name] = model

    def check(self, event: ParsedEvent) -> _Model:
        if event.account_id not in self.accounts:
            raise MalformedEvent(f"unknown account {event.account_id}")
        if self.key_owner.get(event.api_key_id) != event.account_id:
            raise MalformedEvent(f"api key {event.api_key_id} does not belong to account {event.account_id}")
        model = self.models.get(event.model)
        if model is None:
            raise MalformedEvent(f"unknown model {event.model!r}")
        return model


def _price_version(cur, cache: dict[tuple[int, Prices], int], model: _Model) -> int:
    key = (model.id, model.prices)
    if key not in cache:
        p = model.prices
        cur.execute(_PRICE_VERSION, [model.id, p.input_per_mtok, p.cached_input_per_mtok, p.output_per_mtok])
        cache[key] = cur.fetchone()[0]
    return cache[key]


def _hour(moment: datetime) -> datetime:
    return moment.replace(minute=0, second=0, microsecond=0)


def write_batch(events: list[ParsedEvent]) -> BatchResult:
    """Events whose references don't exist come back in `rejected`; the rest are in the ledger when this returns."""
    result = BatchResult()
    if not events:
        return result
    refs = _References(events)
    rows: dict[str, tuple[ParsedEvent, int, Decimal, int]] = {}  # request_id -> (event, model id, cost, version)
    versions: dict[tuple[int, Prices], int] = {}
    with transaction.atomic(), connection.cursor() as cur:
        for index, event in enumerate(events):
            try:
                model = refs.check(event)
            except MalformedEvent as exc:
                result.rejected.append((index, exc.reason))
                continue
            if event.request_id in rows:  # the same request twice in one batch: the first one counts
                continue
            cost = cost_usd(model.prices, prompt_tokens=event.prompt_tokens,
                            cached_prompt_tokens=event.cached_prompt_tokens, completion_tokens=event.completion_tokens)
            rows[event.request_id] = (event, model.id, cost, _price_version(cur, versions, model))
        if not rows:
            return result
        values = list(rows.values())
        cur.execute(_INSERT_LEDGER, [
            [e.request_id for e, *_ in values], [e.account_id for e, *_ in values], [e.api_key_id for e, *_ in values],
            [m for _, m, _, _ in values], [e.adapter_id for e, *_ in values], [e.prompt_tokens for e, *_ in values],
            [e.cached_prompt_tokens for e, *_ in values], [e.completion_tokens for e, *_ in values],
            [e.started_at for e, *_ in values], [e.finished_at for e, *_ in values], [e.status for e, *_ in values],
            [v for *_, v in values], [c for _, _, c, _ in values], [e.route_id for e, *_ in values],
            [e.variant_id for e, *_ in values], [e.ttft_ms for e, *_ in values],
        ])
        inserted = {row[0] for row in cur.fetchall()}
        result.num_inserted = len(inserted)
        result.num_duplicates = len(rows) - len(inserted)
        buckets: dict[tuple[int, datetime, int, int], list] = defaultdict(lambda: [0, 0, 0, 0, Decimal(0)])
        for request_id in inserted:
            event, model_id, cost, _ = rows[request_id]
            b = buckets[(event.account_id, _hour(event.finished_at), model_id, event.api_key_id)]
            b[0] += 1
            b[1] += event.prompt_tokens
            b[2] += event.cached_prompt_tokens
            b[3] += event.completion_tokens
            b[4] += cost
        if buckets:
            keys, sums = list(buckets.keys()), list(buckets.values())
            cur.execute(_UPSERT_ROLLUP, [[k[i] for k in keys] for i in range(4)] + [[s[i] for s in sums] for i in range(5)])
            touched = {k[0] for k in keys}
            since = month_start(min(k[1] for k in keys))
            result.month_totals = month_totals(account_ids=touched, since=since)
    return result
