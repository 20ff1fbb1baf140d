"""Ingest: exactly once across a consumer crash between commit and XACK; malformed events dead-lettered, never
blocking; roll-ups and the Redis month total follow the ledger."""

from __future__ import annotations

import json
from dataclasses import asdict
from datetime import UTC, datetime
from decimal import Decimal

import pytest
import redis
from billing_testlib import usage_event, xadd_events

from billing.ingest import GROUP, UsageConsumer
from billing.models import UsageRecord, UsageRollup
from billing.spend import month_of
from contracts import USAGE_DEAD_STREAM, USAGE_STREAM, spend_key

# The crash test commits for real (transactional DB); the rest run inside the test's transaction, which the
# ingest's own transaction.atomic nests into as a savepoint.
pytestmark = pytest.mark.django_db

class CrashBeforeAck(RuntimeError):
    pass


class CrashingConsumer(UsageConsumer):
    """Dies after the ledger transaction committed and before XACK: the worst moment for exactly-once."""

    def acknowledge(self, entry_ids: list[bytes]) -> None:
        raise CrashBeforeAck()


def ledger_totals(account) -> tuple[int, int, int, int]:
    rows = UsageRecord.objects.for_account(account)
    return (rows.count(), sum(r.prompt_tokens for r in rows), sum(r.completion_tokens for r in rows),
            len({r.request_id for r in rows}))


@pytest.mark.django_db(transaction=True)
def test_crash_between_commit_and_ack_loses_nothing_and_duplicates_nothing(rclient: redis.Redis, tenant, smollm2):
    account, key = tenant("ada")
    events = [usage_event(account.id, key.id, smollm2.id, prompt=10 + i, completion=5 + i) for i in range(30)]
    xadd_events(rclient, events)

    crashing = CrashingConsumer(rclient, consumer="c1", batch_size=20, block_ms=10)
    with pytest.raises(CrashBeforeAck):
        crashing.step()
    assert UsageRecord.objects.for_account(account).count() == 20  # committed, but still pending in the stream
    assert rclient.xpending(USAGE_STREAM, GROUP)["pending"] == 20

    # A new consumer takes over the dead one's pending entries (claim_idle_ms=0 stands in for the idle timeout).
    survivor = UsageConsumer(rclient, consumer="c2", batch_size=20, block_ms=10, claim_idle_ms=0)
    first = survivor.step()
    assert (first.num_read, first.num_inserted, first.num_duplicates) == (20, 0, 20)
    second = survivor.step()
    assert (second.num_inserted, second.num_duplicates) == (10, 0)
    assert survivor.step(block=False).num_read == 0

    count, prompt, completion, distinct = ledger_totals(account)
    assert count == distinct == 30
    assert prompt == sum(e.prompt_tokens for e in events)
    assert completion == sum(e.completion_tokens for e in events)
    # Acknowledged entries are gone from the stream; nothing is left pending.
    assert rclient.xlen(USAGE_STREAM) == 0
    assert rclient.xpending(USAGE_STREAM, GROUP)["pending"] == 0

    # Roll-ups counted each request once, and the Redis month total matches the ledger (rounded up to micro-dollars).
    rollups = UsageRollup.objects.for_account(account)
    assert sum(r.num_requests for r in rollups) == 30
    ledger_cost = sum((r.cost_usd for r in UsageRecord.objects.for_account(account)), Decimal(0))
    assert sum((r.cost_usd for r in rollups), Decimal(0)) == ledger_cost
    micros = int(rclient.get(spend_key(account.id, month_of(datetime.now(UTC)))))
    assert Decimal(micros - 1) / 1_000_000 < ledger_cost <= Decimal(micros) / 1_000_000


def test_replayed_events_are_not_billed_twice(rclient: redis.Redis, tenant, smollm2):
    account, key = tenant("bob")
    events = [usage_event(account.id, key.id, smollm2.id) for _ in range(5)]
    xadd_events(rclient, events)
    xadd_events(rclient, events[:3])  # the gateway's spool replayed after a crash: same request_ids again
    consumer = UsageConsumer(rclient, consumer="c1", block_ms=10)
    result = consumer.step()
    assert (result.num_read, result.num_inserted) == (8, 5)
    assert UsageRecord.objects.for_account(account).count() == 5


@pytest.mark.parametrize(
    ("mutate", "reason"),
    [
        (lambda e: e.pop("prompt_tokens"), "missing field prompt_tokens"),
        (lambda e: e.update(completion_tokens=-3), "completion_tokens is negative"),
        (lambda e: e.update(account_id=987654321), "unknown account 987654321"),
        (lambda e: e.update(model_id=987654321), "unknown model 987654321"),
        (lambda e: e.update(cached_prompt_tokens=500), "cached_prompt_tokens exceeds prompt_tokens"),
        (lambda e: e.update(finished_at="yesterday"), "finished_at is not an ISO 8601 time"),
    ],
)
def test_malformed_events_are_dead_lettered_without_blocking(rclient: redis.Redis, tenant, smollm2, mutate, reason):
    account, key = tenant("eve")
    good_before, bad, good_after = (usage_event(account.id, key.id, smollm2.id) for _ in range(3))
    bad_body = asdict(bad)
    mutate(bad_body)
    xadd_events(rclient, [good_before])
    rclient.xadd(USAGE_STREAM, {"event": json.dumps(bad_body)})
    xadd_events(rclient, [good_after])

    result = UsageConsumer(rclient, consumer="c1", block_ms=10).step()
    assert (result.num_read, result.num_inserted, result.num_dead) == (3, 2, 1)
    ids = set(UsageRecord.objects.for_account(account).values_list("request_id", flat=True))
    assert ids == {good_before.request_id, good_after.request_id}
    [(_, fields)] = rclient.xrange(USAGE_DEAD_STREAM)
    assert fields[b"reason"].decode() == reason
    assert json.loads(fields[b"event"]) == bad_body
    assert rclient.xpending(USAGE_STREAM, GROUP)["pending"] == 0


def test_unparseable_entries_are_dead_lettered(rclient: redis.Redis, db):
    rclient.xadd(USAGE_STREAM, {"event": "{not json"})
    rclient.xadd(USAGE_STREAM, {"other": "x"})
    result = UsageConsumer(rclient, consumer="c1", block_ms=10).step()
    assert result.num_dead == 2
    reasons = [fields[b"reason"].decode() for _, fields in rclient.xrange(USAGE_DEAD_STREAM)]
    assert reasons == ["event is not JSON", "entry has no `event` field"]


def test_model_given_by_name_is_resolved_to_the_catalog_id(rclient: redis.Redis, tenant, smollm2):
    account, key = tenant("kai")
    xadd_events(rclient, [usage_event(account.id, key.id, smollm2.public_name),
                          usage_event(account.id, key.id, smollm2.slug)])
    assert UsageConsumer(rclient, consumer="c1", block_ms=10).step().num_inserted == 2
    assert set(UsageRecord.objects.for_account(account).values_list("base_model_id", flat=True)) == {smollm2.id}
