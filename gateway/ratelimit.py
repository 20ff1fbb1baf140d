"""Requests-per-minute and tokens-per-minute token buckets in Redis, per key and per account.

One Lua script call per request checks and charges all four buckets atomically (token_buckets.lua); the calls made in
the same event-loop turn go to Redis as one pipeline. Tokens are
charged at admission from an estimate, prompt characters / 4 + max_tokens (or `default_max_tokens_estimate`), capped at
the bucket's capacity so one large request can still pass a full bucket; after the response the difference to the
worker's real usage is applied (refund or debt) with a second, unchecked call; those corrections are queued and sent by
one background task in pipelined batches, so a finished request costs no Redis round trip of its own. Every bucket key carries the account id
as a hash tag, so the four keys share a Redis Cluster slot.

Redis away (any error: unreachable, READONLY, OOM): admission fails open (requests keep flowing; limits resume when
Redis returns), with a 1 s breaker so an outage costs one failed round trip per second, not one per request.
Corrections not yet in Redis are summed per key (memory bounded by the number of keys, not of requests) and retried
with backoff; one older than a bucket's refill window (`SETTLEMENT_MAX_AGE_S`) is dropped and counted, since by then
the bucket it corrects has refilled and applying it would charge the outage's traffic a second time.
"""

import asyncio
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import redis.asyncio as aioredis
from redis.exceptions import NoScriptError

from contracts import rate_limit_keys
from gateway.db import KeyRecord
from gateway.errors import RateLimited
from gateway.outages import REDIS_ERRORS, Backoff

log = logging.getLogger("hearth.gateway.ratelimit")

_SCRIPT = (Path(__file__).parent / "token_buckets.lua").read_text()
SETTLEMENT_MAX_AGE_S = 60.0  # RPM/TPM buckets refill completely within a minute


@dataclass(frozen=True, slots=True)
class Limits:
    key_rpm: int
    key_tpm: int
    account_rpm: int
    account_tpm: int


@dataclass(slots=True)
class _Correction:
    key: KeyRecord
    delta: int  # tokens: + debt, - refund
    since: float  # monotonic time of the oldest correction summed in


@dataclass(slots=True)
class Admission:
    tokens_charged: int
    headers: dict[str, str] = field(default_factory=dict)


def format_reset(ms: int) -> str:
    # OpenAI's style: "20ms", "1.5s", "6m0s".
    if ms < 1000:
        return f"{ms}ms"
    seconds = ms / 1000
    minutes, rest = divmod(seconds, 60)
    rest_text = f"{round(rest, 3):g}s"
    return f"{int(minutes)}m{rest_text}" if minutes else rest_text


class RateLimiter:
    def __init__(
        self,
        client: aioredis.Redis,
        *,
        default_rpm: int,
        default_tpm: int,
        key_rpm: int | None = None,
        key_tpm: int | None = None,
    ) -> None:
        self._client = client
        self._script = client.register_script(_SCRIPT)
        self._default_rpm = default_rpm
        self._default_tpm = default_tpm
        self._key_rpm = key_rpm
        self._key_tpm = key_tpm
        self._down_until = 0.0
        self._settlements: dict[int, _Correction] = {}  # key id -> corrections not yet in Redis
        self._settle_wanted = asyncio.Event()
        self._settle_backoff = Backoff(first_s=0.5, max_s=10.0)
        self.num_settlements_expired = 0
        self._admits: list[tuple[list[str], list[str | int], asyncio.Future[list[int] | None]]] = []
        self._batches: set[asyncio.Task[None]] = set()

    def limits_for(self, key: KeyRecord) -> Limits:
        account_rpm = key.rpm_limit if key.rpm_limit is not None else self._default_rpm
        account_tpm = key.tpm_limit if key.tpm_limit is not None else self._default_tpm
        key_rpm = min(v for v in (self._key_rpm, key.key_rpm_limit, account_rpm) if v is not None)
        key_tpm = min(v for v in (self._key_tpm, key.key_tpm_limit, account_tpm) if v is not None)
        return Limits(key_rpm, key_tpm, account_rpm, account_tpm)

    @staticmethod
    def bucket_keys(key: KeyRecord) -> list[str]:
        return rate_limit_keys(key.account_id, key.key_id)

    def _args(self, key: KeyRecord, force: bool, request_cost: int, token_cost: int) -> list[str | int]:
        lim = self.limits_for(key)
        return ["1" if force else "0", lim.key_rpm, request_cost, lim.key_tpm, token_cost,
                lim.account_rpm, request_cost, lim.account_tpm, token_cost]

    async def _run(self, key: KeyRecord, force: bool, request_cost: int, token_cost: int) -> list[int] | None:
        """One script call, sent with every other admission made in the same event-loop turn as one pipeline (still
        one atomic script per request): under concurrency that is one write and one read for many requests instead
        of a round trip, a pooled connection and a syscall pair each."""
        if time.monotonic() < self._down_until:
            return None
        future: asyncio.Future[list[int] | None] = asyncio.get_running_loop().create_future()
        self._admits.append((self.bucket_keys(key), self._args(key, force, request_cost, token_cost), future))
        if len(self._admits) == 1:
            asyncio.get_running_loop().call_soon(self._send_admits)
        return await asyncio.shield(future)  # a cancelled request must not cancel its neighbours' batch

    def _send_admits(self) -> None:
        batch, self._admits = self._admits, []
        task = asyncio.ensure_future(self._admit_batch(batch))
        self._batches.add(task)
        task.add_done_callback(self._batches.discard)

    async def _admit_batch(self, batch: list[tuple[list[str], list[str | int], "asyncio.Future[list[int] | None]"]]
                           ) -> None:
        try:
            if len(batch) == 1:
                keys, args, _ = batch[0]
                results = [await self._script(keys=keys, args=args)]
            else:
                # EVALSHA directly: a pipeline given the Script object re-checks SCRIPT EXISTS on every execute, a
                # second round trip. NOSCRIPT (Redis restarted or flushed) falls back to the Script's own reload.
                async with self._client.pipeline(transaction=False) as pipe:
                    for keys, args, _ in batch:
                        pipe.evalsha(self._script.sha, len(keys), *keys, *args)
                    results = await pipe.execute(raise_on_error=False)
                for i, out in enumerate(results):
                    if isinstance(out, aioredis.ResponseError):
                        if not isinstance(out, NoScriptError):
                            raise out  # READONLY, OOM...: the same fail-open as an unreachable Redis
                        keys, args, _ = batch[i]
                        results[i] = await self._script(keys=keys, args=args)
        except REDIS_ERRORS as exc:
            log.warning("rate limiter: redis refused (%s: %s); failing open for 1 s", type(exc).__name__,
                        str(exc)[:80])
            self._down_until = time.monotonic() + 1.0
            results = [None] * len(batch)
        except BaseException as exc:
            for _, _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            raise
        for (_, _, future), out in zip(batch, results, strict=True):
            if not future.done():
                future.set_result([int(x) for x in out] if out is not None else None)

    async def admit(self, key: KeyRecord, estimated_tokens: int) -> Admission:
        lim = self.limits_for(key)
        cost = max(1, min(estimated_tokens, lim.key_tpm, lim.account_tpm))
        out = await self._run(key, False, 1, cost)
        if out is None:
            return Admission(tokens_charged=0)
        allowed, retry_ms, *buckets = out
        # buckets: key rpm, key tpm, account rpm, account tpm as (remaining, ms until full); report the tighter.
        caps = [lim.key_rpm, lim.key_tpm, lim.account_rpm, lim.account_tpm]
        req = min((0, 2), key=lambda i: buckets[2 * i])
        tok = min((1, 3), key=lambda i: buckets[2 * i])
        headers = {
            "x-ratelimit-limit-requests": str(caps[req]),
            "x-ratelimit-remaining-requests": str(buckets[2 * req]),
            "x-ratelimit-reset-requests": format_reset(buckets[2 * req + 1]),
            "x-ratelimit-limit-tokens": str(caps[tok]),
            "x-ratelimit-remaining-tokens": str(buckets[2 * tok]),
            "x-ratelimit-reset-tokens": format_reset(buckets[2 * tok + 1]),
        }
        if not allowed:
            short_of_requests = buckets[2 * req] < 1
            kind = "requests" if short_of_requests else "tokens"
            headers["retry-after"] = str(max(1, math.ceil(retry_ms / 1000)))
            headers["retry-after-ms"] = str(max(1, retry_ms))
            limit = caps[req] if short_of_requests else caps[tok]
            unit = "requests per min (RPM)" if short_of_requests else "tokens per min (TPM)"
            raise RateLimited(
                f"Rate limit reached for account {key.account_slug} on {unit}: Limit {limit}, Requested "
                f"{1 if short_of_requests else cost}. Please try again in {format_reset(retry_ms)}.",
                limit_type=kind,
                headers=headers,
            )
        return Admission(tokens_charged=cost, headers=headers)

    def settle(self, key: KeyRecord, admission: Admission, actual_tokens: int) -> None:
        """Replace the admission estimate with the worker's real usage (refund or debt), soon: `run_settler` sends it.
        Synchronous, so a cancelled request handler can't lose it."""
        if admission.tokens_charged == 0:
            return  # admitted while Redis was away: nothing was charged, so nothing to correct
        delta = actual_tokens - admission.tokens_charged
        if delta:
            self._add_correction(_Correction(key, delta, time.monotonic()))
            self._settle_wanted.set()

    def _add_correction(self, correction: _Correction) -> None:
        pending = self._settlements.get(correction.key.key_id)
        if pending is None:
            self._settlements[correction.key.key_id] = correction
        else:
            pending.delta += correction.delta
            pending.since = min(pending.since, correction.since)

    async def run_settler(self) -> None:
        """Runs for the life of the process: whatever settled while the last batch was in flight goes in the next;
        after a refusal the same corrections (plus new ones) go again after a backoff."""
        while True:
            await self._settle_wanted.wait()
            self._settle_wanted.clear()
            if not await self.flush():
                await asyncio.sleep(self._settle_backoff.delay_s)
                self._settle_wanted.set()

    async def flush(self) -> bool:
        """Sends the pending corrections; False when Redis refused them (they stay pending, bar expired ones)."""
        batch, self._settlements = self._settlements, {}
        now = time.monotonic()
        fresh = [c for c in batch.values() if now - c.since <= SETTLEMENT_MAX_AGE_S]
        if len(fresh) < len(batch):
            self.num_settlements_expired += len(batch) - len(fresh)
            log.warning("rate limiter: dropped %d corrections older than %.0f s", len(batch) - len(fresh),
                        SETTLEMENT_MAX_AGE_S)
        if not fresh:
            return True
        try:
            async with self._client.pipeline(transaction=False) as pipe:
                for c in fresh:
                    await self._script(keys=self.bucket_keys(c.key), args=self._args(c.key, True, 0, c.delta),
                                       client=pipe)
                results = await pipe.execute(raise_on_error=False)
            refused = [c for c, out in zip(fresh, results, strict=True) if isinstance(out, Exception)]
            error = next((out for out in results if isinstance(out, Exception)), None)
        except REDIS_ERRORS as exc:
            refused, error = fresh, exc
        if not refused:
            self._settle_backoff.succeeded()
            return True
        delay = self._settle_backoff.failed()
        log.warning("rate limiter: redis refused %d corrections (%s: %s); retrying in %.1f s", len(refused),
                    type(error).__name__, str(error)[:80], delay)
        for c in refused:  # only those: a correction Redis applied must not be applied twice
            self._add_correction(c)
        return False
