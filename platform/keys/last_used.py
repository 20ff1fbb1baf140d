"""keys_apikey.last_used_at from the gateway's Redis hash KEYS_LAST_USED_HASH (contracts; key id -> unix seconds, HSET
once a second by every gateway process; gateway/auth.py).

The flush reads the hash, moves last_used_at forward in one UPDATE, and only after the commit deletes the fields
whose value is still the one it read (compare-and-delete in Lua). So a crash before the commit loses nothing (the
next flush reads the same fields), a newer touch written meanwhile survives for the next flush, and two flushes
racing each other are harmless (the UPDATE only moves a timestamp forward).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import redis
from django.db import connection, transaction

from contracts import KEYS_LAST_USED_HASH
from keys.models import ApiKey

log = logging.getLogger("hearth.keys")

MAX_KEY_ID = 2**63 - 1
FUTURE_SLACK_S = 24 * 3600  # a gateway clock this far ahead is wrong; don't pin a key's last use in the future

# KEYS[1] hash; ARGV field, value, field, value...: HDEL each field that still holds the value read.
_DELETE_IF_UNCHANGED = """
local deleted = 0
for i = 1, #ARGV, 2 do
  if redis.call('HGET', KEYS[1], ARGV[i]) == ARGV[i + 1] then
    deleted = deleted + redis.call('HDEL', KEYS[1], ARGV[i])
  end
end
return deleted
"""

_UPDATE_SQL = f"""
UPDATE {ApiKey._meta.db_table} AS k SET last_used_at = to_timestamp(v.secs)
FROM unnest(%s::bigint[], %s::bigint[]) AS v(id, secs)
WHERE k.id = v.id AND (k.last_used_at IS NULL OR k.last_used_at < to_timestamp(v.secs))
"""


@dataclass(frozen=True, slots=True)
class FlushResult:
    num_read: int  # fields in the hash
    num_updated: int  # rows whose last_used_at moved forward
    num_invalid: int  # fields that were not <key id> -> <unix seconds>; dropped


def _parse(raw: dict[bytes, bytes], now: float) -> tuple[dict[int, int], int]:
    used: dict[int, int] = {}
    invalid = 0
    for field, value in raw.items():
        try:
            key_id, secs = int(field), int(value)
        except ValueError:
            invalid += 1
            continue
        if not (0 < key_id <= MAX_KEY_ID and 0 < secs <= now + FUTURE_SLACK_S):
            invalid += 1
            continue
        used[key_id] = secs
    return used, invalid


def api_key_last_used_update(*, used: dict[int, int]) -> int:
    """Moves each key's last_used_at forward to the given unix seconds (never back); unknown ids are skipped.
    One statement whatever the number of keys. Returns the number of rows changed."""
    if not used:
        return 0
    ids = sorted(used)  # a stable lock order, so two concurrent flushes can't deadlock on the rows
    with connection.cursor() as cur:
        cur.execute(_UPDATE_SQL, [ids, [used[i] for i in ids]])
        return cur.rowcount


def api_key_last_used_flush(*, client: redis.Redis, key: str = KEYS_LAST_USED_HASH) -> FlushResult:
    raw: dict[bytes, bytes] = client.hgetall(key)
    if not raw:
        return FlushResult(0, 0, 0)
    used, invalid = _parse(raw, time.time())
    with transaction.atomic():
        updated = api_key_last_used_update(used=used)
    # Only after the commit: the read fields (invalid ones too, or they would stay forever) unless rewritten since.
    args = [part for pair in raw.items() for part in pair]
    client.register_script(_DELETE_IF_UNCHANGED)(keys=[key], args=args)
    if invalid:
        log.warning("dropped %d malformed entries from %s", invalid, key)
    return FlushResult(len(raw), updated, invalid)
