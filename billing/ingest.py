"""The usage stream consumer: contracts.USAGE_STREAM -> ledger, exactly once.

Order per batch: read (first XAUTOCLAIM entries a dead consumer left pending, then XREADGROUP new ones) -> parse ->
write_batch (one Postgres transaction) -> publish month totals to Redis -> dead-letter the malformed -> XACK + XDEL.
A crash anywhere before XACK leaves the entries pending; the next consumer claims them and write_batch's
ON CONFLICT (request_id) turns them into no-ops, so nothing is lost and nothing billed twice. Entries are deleted
from the stream only after they are acknowledged (XDEL of exactly the acked ids).
"""

from __future__ import annotations

import logging
import os
import socket
from dataclasses import dataclass

import redis
from prometheus_client import Counter

from billing.events import MalformedEvent, ParsedEvent, parse_event
from billing.ledger import write_batch
from billing.spend import spend_publish
from contracts import USAGE_DEAD_STREAM, USAGE_EVENT_FIELD, USAGE_STREAM

log = logging.getLogger("hearth.billing.ingest")

GROUP = "billing"
DEAD_MAXLEN = 100_000  # dead letters are for people to read; keep the newest, approximately

EVENTS = Counter("hearth_billing_usage_events_total", "Usage events consumed", ["outcome"])
DEAD_LETTERS = Counter("hearth_billing_usage_dead_letters_total", "Usage events sent to the dead-letter stream")

Entry = tuple[bytes, dict[bytes, bytes]]


@dataclass(slots=True)
class StepResult:
    num_read: int = 0
    num_inserted: int = 0
    num_duplicates: int = 0
    num_dead: int = 0


def default_consumer_name() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


class UsageConsumer:
    def __init__(self, client: redis.Redis, *, consumer: str | None = None, batch_size: int = 1000,
                 block_ms: int = 1000, claim_idle_ms: int = 30_000) -> None:
        self.client = client
        self.consumer = consumer or default_consumer_name()
        self.batch_size = batch_size
        self.block_ms = block_ms
        self.claim_idle_ms = claim_idle_ms
        self._group_ready = False

    def ensure_group(self) -> None:
        if self._group_ready:
            return
        try:
            # From the start of the stream: events written before billing first ran are billed too.
            self.client.xgroup_create(USAGE_STREAM, GROUP, id="0", mkstream=True)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
        self._group_ready = True

    def _claim_stale(self) -> list[Entry]:
        # Entries another consumer read and never acknowledged (it died), idle longer than claim_idle_ms.
        reply = self.client.xautoclaim(
            USAGE_STREAM, GROUP, self.consumer, min_idle_time=self.claim_idle_ms, start_id="0-0", count=self.batch_size
        )
        entries = reply[1]
        deleted = reply[2] if len(reply) > 2 else []  # Redis >= 7 also lists pending ids whose entries are gone
        if deleted:  # pending ids whose entries are gone from the stream: nothing to bill, just clear them
            self.client.xack(USAGE_STREAM, GROUP, *deleted)
        return [(entry_id, fields) for entry_id, fields in entries if fields is not None]

    def _read_new(self, block_ms: int | None) -> list[Entry]:
        reply = self.client.xreadgroup(GROUP, self.consumer, {USAGE_STREAM: ">"}, count=self.batch_size, block=block_ms)
        return reply[0][1] if reply else []

    def step(self, *, block: bool = True) -> StepResult:
        """One batch. Blocks up to block_ms for new entries when there is nothing to claim."""
        self.ensure_group()
        entries = self._claim_stale() or self._read_new(self.block_ms if block else None)
        return self.process(entries)

    def process(self, entries: list[Entry]) -> StepResult:
        result = StepResult(num_read=len(entries))
        if not entries:
            return result
        parsed: list[ParsedEvent] = []
        parsed_ids: list[bytes] = []
        dead: list[tuple[Entry, str]] = []
        for entry in entries:
            try:
                parsed.append(parse_event(entry[1].get(USAGE_EVENT_FIELD.encode())))
                parsed_ids.append(entry[0])
            except MalformedEvent as exc:
                dead.append((entry, exc.reason))
        batch = write_batch(parsed)  # committed when it returns
        by_id = dict(entries)
        dead.extend(((parsed_ids[i], by_id[parsed_ids[i]]), reason) for i, reason in batch.rejected)
        spend_publish(self.client, batch.month_totals)
        if dead:
            self._dead_letter(dead)
        self.acknowledge([entry_id for entry_id, _ in entries])
        result.num_inserted, result.num_duplicates, result.num_dead = batch.num_inserted, batch.num_duplicates, len(dead)
        EVENTS.labels("inserted").inc(batch.num_inserted)
        EVENTS.labels("duplicate").inc(batch.num_duplicates)
        EVENTS.labels("dead").inc(len(dead))
        return result

    def _dead_letter(self, dead: list[tuple[Entry, str]]) -> None:
        # A crash after this and before the XACK writes these dead letters again on replay: harmless for a queue
        # that people read, and it keeps the ledger's order of operations simple.
        pipe = self.client.pipeline(transaction=False)
        for (entry_id, fields), reason in dead:
            raw = fields.get(USAGE_EVENT_FIELD.encode(), b"")
            pipe.xadd(USAGE_DEAD_STREAM, {USAGE_EVENT_FIELD: raw, "reason": reason, "source_id": entry_id},
                      maxlen=DEAD_MAXLEN, approximate=True)
            log.warning("usage entry %s dead-lettered: %s", entry_id.decode(), reason)
        pipe.execute()
        DEAD_LETTERS.inc(len(dead))

    def acknowledge(self, entry_ids: list[bytes]) -> None:
        pipe = self.client.pipeline(transaction=True)
        pipe.xack(USAGE_STREAM, GROUP, *entry_ids)
        pipe.xdel(USAGE_STREAM, *entry_ids)
        pipe.execute()
