"""Billing benchmark: usage events/s from the Redis stream into the ledger (parse, rate, insert, roll up, ack), and the
usage API's latency for a 30-day query with N ledger rows behind it (default one million, bulk-made with
generate_series and rolled up with one INSERT ... SELECT). Targets: >= 5,000 events/s; 30-day query <= 100 ms.

    .venv/bin/python bench/billing.py [--events 20000] [--rows 1000000] [--no-write]

Uses DATABASE_URL / REDIS_URL when set, else starts the embedded test servers; works in its own database
(hearth_bench_billing when embedded), whose schema is dropped and re-created on each run: point DATABASE_URL
only at a database you mean to wipe."""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "platform")]
DB_NAME = "hearth_bench_billing"


def start_services() -> list:
    from devstack.services import DEFAULT_HOME, EmbeddedPostgres, EmbeddedRedis

    started: list = []
    if "DATABASE_URL" not in os.environ:
        pg = EmbeddedPostgres(DEFAULT_HOME / "test" / "postgres", database=DB_NAME)
        os.environ["DATABASE_URL"] = pg.start()
        started.append(pg)
    if "REDIS_URL" not in os.environ:
        rd = EmbeddedRedis(DEFAULT_HOME / "bench" / "redis")
        os.environ["REDIS_URL"] = rd.start()
        started.append(rd)
    return started


def fresh_database() -> None:
    import psycopg

    with psycopg.connect(os.environ["DATABASE_URL"], autocommit=True) as conn:
        conn.execute("DROP SCHEMA public CASCADE")
        conn.execute("CREATE SCHEMA public")


def setup_django() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "hearth_platform.settings")
    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", verbosity=0)


def bench_ingest(num_events: int) -> tuple[float, int]:
    import json
    import uuid
    from datetime import UTC, datetime

    import redis
    from accounts.services import account_signup
    from catalog.models import BaseModel
    from keys.services import api_key_create

    from billing.ingest import USAGE_STREAM, UsageConsumer

    _user, account = account_signup(email=f"bench-{uuid.uuid4().hex[:6]}@example.com", password="amber-kettle-orbit-42")
    key, _ = api_key_create(account=account, name="bench")
    model = BaseModel.objects.first()
    client = redis.Redis.from_url(os.environ["REDIS_URL"])
    client.delete(USAGE_STREAM)
    now = datetime.now(UTC).isoformat()
    pipe = client.pipeline(transaction=False)
    for i in range(num_events):
        pipe.xadd(USAGE_STREAM, {"event": json.dumps({
            "request_id": f"bench_{uuid.uuid4().hex}", "account_id": account.id, "api_key_id": key.id,
            "model_id": model.id, "adapter_id": None, "prompt_tokens": 100 + i % 50, "cached_prompt_tokens": i % 20,
            "completion_tokens": 30 + i % 40, "started_at": now, "finished_at": now, "status": "finished"})})
    pipe.execute()
    consumer = UsageConsumer(client, consumer="bench", batch_size=1000)
    inserted = 0
    t0 = time.perf_counter()
    while True:
        result = consumer.step(block=False)
        if not result.num_read:
            break
        inserted += result.num_inserted
    elapsed = time.perf_counter() - t0
    return inserted / elapsed, inserted


def bulk_ledger(num_rows: int) -> tuple[float, object]:
    """num_rows ledger rows over the last 60 days for one account, 4 keys; roll-ups built from them in SQL."""
    from accounts.services import account_signup
    from catalog.models import BaseModel
    from django.db import connection
    from keys.services import api_key_create

    from billing.models import PriceVersion

    _user, account = account_signup(email="bulk@example.com", password="amber-kettle-orbit-42")
    keys = [api_key_create(account=account, name=f"k{i}")[0].id for i in range(4)]
    model = BaseModel.objects.first()
    version, _ = PriceVersion.objects.get_or_create(
        base_model=model, price_input_per_mtok=model.price_input_per_mtok,
        price_cached_input_per_mtok=model.price_cached_input_per_mtok, price_output_per_mtok=model.price_output_per_mtok)
    t0 = time.perf_counter()
    with connection.cursor() as cur:
        cur.execute("""
            INSERT INTO billing_usagerecord (request_id, account_id, api_key_id, base_model_id, adapter_id,
                prompt_tokens, cached_prompt_tokens, completion_tokens, started_at, finished_at, status,
                price_version_id, cost_usd, ingested_at)
            SELECT 'bulk_' || g, %s, (%s::bigint[])[1 + g %% 4], %s, NULL, 100 + g %% 50, g %% 20, 30 + g %% 40,
                   now() - (g * interval '60 days' / %s), now() - (g * interval '60 days' / %s), 'finished', %s,
                   0.000012, now()
            FROM generate_series(1, %s) AS g""", [account.id, keys, model.id, num_rows, num_rows, version.id, num_rows])
        cur.execute("""
            INSERT INTO billing_usagerollup (account_id, hour, base_model_id, api_key_id, num_requests, prompt_tokens,
                cached_prompt_tokens, completion_tokens, cost_usd)
            SELECT account_id, date_trunc('hour', finished_at), base_model_id, api_key_id, count(*),
                   sum(prompt_tokens), sum(cached_prompt_tokens), sum(completion_tokens), sum(cost_usd)
            FROM billing_usagerecord WHERE account_id = %s GROUP BY 1, 2, 3, 4""", [account.id])
        cur.execute("ANALYZE billing_usagerecord; ANALYZE billing_usagerollup")
    return time.perf_counter() - t0, account


def bench_query(account: object, repeats: int = 20) -> dict[str, float]:
    from accounts.models import Membership
    from rest_framework.test import APIClient

    client = APIClient()
    client.force_login(Membership.objects.for_account(account).get().user)
    timings: dict[str, float] = {}
    for group in ("day", "model", "key"):
        samples = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            response = client.get("/api/v1/usage", {"group_by": group})  # default range: the last 30 days
            samples.append((time.perf_counter() - t0) * 1000)
            if response.status_code != 200:
                raise RuntimeError(f"usage API answered {response.status_code}: {response.content[:200]!r}")
        timings[group] = statistics.median(samples)
    return timings


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--no-write", action="store_true", help="print only; don't touch bench/RESULTS.md")
    args = parser.parse_args()
    started = start_services()
    try:
        fresh_database()
        setup_django()
        rate, inserted = bench_ingest(args.events)
        print(f"billing ingest: {rate:,.0f} events/s ({inserted:,} events, batches of 1000; target >= 5,000)")
        setup_s, account = bulk_ledger(args.rows)
        timings = bench_query(account)
        line = ", ".join(f"group_by={g} p50 {ms:.1f} ms" for g, ms in timings.items())
        print(f"usage API, 30 days over {args.rows:,} ledger rows: {line} (target <= 100 ms; setup {setup_s:.0f} s)")
        if not args.no_write:
            from bench._results import write_section

            write_section("billing", "\n".join([
                "| figure | value | target |", "|---|---|---|",
                f"| ingest (stream -> ledger + roll-ups + ack) | {rate:,.0f} events/s over {inserted:,} | >= 5,000 |",
                *(f"| usage API, 30 days, group_by={g}, {args.rows:,} ledger rows | p50 {ms:.1f} ms | <= 100 ms |"
                  for g, ms in timings.items()),
            ]))
    finally:
        for service in reversed(started):
            service.stop()


if __name__ == "__main__":
    main()
