"""What counts as Redis or Postgres being away, and the backoff the gateway's loops use while they are.

Every Redis failure counts, not only a lost connection: a READONLY reply after a failover or an OOM reply is as much an
outage for a writer as a refused connection, and a loop that catches only the latter dies on the former. What each
part does meanwhile is written down in README.md ("Security model", "While Redis or Postgres is down").
"""

import time

import psycopg
import redis.asyncio as aioredis
from psycopg_pool import PoolTimeout

REDIS_ERRORS: tuple[type[BaseException], ...] = (aioredis.RedisError, OSError)
DB_ERRORS: tuple[type[BaseException], ...] = (psycopg.OperationalError, psycopg.InterfaceError, PoolTimeout, OSError)


class Backoff:
    """A delay that doubles on each failure up to `max_s` and resets on success; `ready()` says whether to try now."""

    def __init__(self, first_s: float = 1.0, max_s: float = 30.0) -> None:
        self._first_s = first_s
        self._max_s = max_s
        self.delay_s = first_s
        self._until = 0.0

    def ready(self) -> bool:
        return time.monotonic() >= self._until

    def failed(self) -> float:
        """Records a failure; returns how long to wait before the next try."""
        delay = self.delay_s
        self._until = time.monotonic() + delay
        self.delay_s = min(delay * 2, self._max_s)
        return delay

    def succeeded(self) -> None:
        self.delay_s = self._first_s
        self._until = 0.0
