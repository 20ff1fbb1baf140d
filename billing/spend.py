"""What the gateway's billing guard reads, kept in Redis by the control plane (the guard never touches Postgres).

  spend_key(account_id, YYYYMM)         string, integer micro-dollars: the account's ledger cost in that UTC month,
                                        rounded up. Written only by the ingest path, with "set if greater" (a month's
                                        spend only grows), so two consumers racing can't move it backwards.
  billing_state_key(account_id)        hash {limit_micros, credit_micros, payment_status}: written whenever the
                                        limit, the credits or the payment status change, and by the periodic sync.

Both are rebuilt from Postgres by `spend_sync` (the ingest loop runs it at start and every 30 s), so a Redis that lost
its data is whole again within one sync. Micro-dollars rather than a Decimal string because Redis compares and the
guard adds integers; rounding each month total up means the guard errs on the side of the ledger, by < $0.000001.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from decimal import Decimal

import redis
from django.db import connection

from billing.models import BillingProfile
from billing.pricing import to_micros_ceil
from contracts import billing_state_key, spend_key

SPEND_TTL_S = 40 * 24 * 3600  # a month key outlives its month by ~9 days, then Redis forgets it

# KEYS[1] spend key; ARGV[1] micros, ARGV[2] ttl. Sets only if larger: a stale reader can't lower the total.
_SET_IF_GREATER = """
local current = tonumber(redis.call('GET', KEYS[1]) or '-1')
if tonumber(ARGV[1]) > current then
  redis.call('SET', KEYS[1], ARGV[1], 'EX', tonumber(ARGV[2]))
  return 1
end
return 0
"""


def month_of(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y%m")


def month_start(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(day=1, hour=0, minute=0, second=0, microsecond=0)


def month_totals(*, account_ids: Iterable[int] | None, since: datetime) -> dict[tuple[int, str], Decimal]:
    """{(account_id, YYYYMM): ledger cost} from the hourly roll-ups (about 720 rows per model and key a month)."""
    where, params = "hour >= %s", [since]
    if account_ids is not None:
        where += " AND account_id = ANY(%s)"
        params.append(list(account_ids))
    sql = (
        "SELECT account_id, to_char(hour AT TIME ZONE 'UTC', 'YYYYMM'), SUM(cost_usd) "
        f"FROM billing_usagerollup WHERE {where} GROUP BY 1, 2"
    )
    with connection.cursor() as cur:
        cur.execute(sql, params)
        return {(account_id, month): total for account_id, month, total in cur.fetchall()}


def spend_publish(client: redis.Redis, totals: dict[tuple[int, str], Decimal]) -> None:
    if not totals:
        return
    script = client.register_script(_SET_IF_GREATER)
    pipe = client.pipeline(transaction=False)
    for (account_id, month), total in totals.items():
        script(keys=[spend_key(account_id, month)], args=[to_micros_ceil(total), SPEND_TTL_S], client=pipe)
    pipe.execute()


def state_publish(client: redis.Redis, profiles: Iterable[BillingProfile]) -> None:
    pipe = client.pipeline(transaction=False)
    for p in profiles:
        pipe.hset(billing_state_key(p.account_id), mapping={
            "limit_micros": to_micros_ceil(p.monthly_spend_limit_usd),
            "credit_micros": to_micros_ceil(p.credit_balance_usd),
            "payment_status": p.payment_status,
        })
    pipe.execute()


def spend_sync(client: redis.Redis, *, now: datetime | None = None) -> int:
    """Rebuilds this month's counters and every account's billing state from Postgres; returns accounts touched."""
    now = now or datetime.now(UTC)
    totals = month_totals(account_ids=None, since=month_start(now))
    spend_publish(client, totals)
    profiles = list(BillingProfile.dangerously_unscoped.all())  # system-wide sync, every tenant by design
    state_publish(client, profiles)
    return len(totals) + len(profiles)
