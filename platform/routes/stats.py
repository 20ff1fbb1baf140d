"""Per-variant figures of one route over a period, from the ledger's rows of that route: requests, tokens, cost,
TTFT and end-to-end latency p50/p99 (ms), error rate. One SQL pass (Postgres percentile_cont), scoped to the
account explicitly in its WHERE clause; the route index (usage_route_finished) keeps it to the route's own rows."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from django.db import connection

from routes.models import Route

_SQL = """
SELECT variant_id,
       count(*) AS num_requests,
       coalesce(sum(prompt_tokens), 0), coalesce(sum(cached_prompt_tokens), 0), coalesce(sum(completion_tokens), 0),
       coalesce(sum(cost_usd), 0),
       percentile_cont(0.5) WITHIN GROUP (ORDER BY ttft_ms) FILTER (WHERE ttft_ms IS NOT NULL),
       percentile_cont(0.99) WITHIN GROUP (ORDER BY ttft_ms) FILTER (WHERE ttft_ms IS NOT NULL),
       percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM finished_at - started_at) * 1000),
       percentile_cont(0.99) WITHIN GROUP (ORDER BY extract(epoch FROM finished_at - started_at) * 1000),
       count(*) FILTER (WHERE status = 'error')
FROM billing_usagerecord
WHERE account_id = %s AND route_id = %s AND finished_at >= %s AND finished_at < %s
GROUP BY variant_id
"""


def _ms(value: float | Decimal | None) -> float | None:
    return None if value is None else round(float(value), 1)


def route_stats(*, route: Route, start: datetime, end: datetime) -> dict[str, Any]:
    with connection.cursor() as cur:
        cur.execute(_SQL, [route.account_id, route.pk, start, end])
        rows = {r[0]: r for r in cur.fetchall()}
    variants = list(route.variants.all())
    known = {v.pk for v in variants}
    out = []
    for variant_id, label in [(v.pk, v.model_name) for v in variants] + [
            (vid, "(removed variant)") for vid in sorted(rows, key=lambda x: (x is None, x or 0)) if vid not in known]:
        r = rows.get(variant_id)
        n = r[1] if r else 0
        out.append({
            "variant_id": variant_id, "model": label, "num_requests": n,
            "prompt_tokens": int(r[2]) if r else 0, "cached_prompt_tokens": int(r[3]) if r else 0,
            "completion_tokens": int(r[4]) if r else 0,
            "cost_usd": format(Decimal(r[5]).normalize(), "f") if r and r[5] else "0",
            "ttft_ms_p50": _ms(r[6]) if r else None, "ttft_ms_p99": _ms(r[7]) if r else None,
            "latency_ms_p50": _ms(r[8]) if r else None, "latency_ms_p99": _ms(r[9]) if r else None,
            "error_rate": round(r[10] / n, 6) if r and n else 0.0,
        })
    total_cost = sum((Decimal(x["cost_usd"]) for x in out), Decimal(0))
    total = {"num_requests": sum(x["num_requests"] for x in out),
             "prompt_tokens": sum(x["prompt_tokens"] for x in out),
             "completion_tokens": sum(x["completion_tokens"] for x in out),
             "cost_usd": format(total_cost.normalize(), "f") if total_cost else "0"}
    return {"object": "route.stats", "route": route.public_name, "start": start, "end": end, "data": out,
            "total": total}
