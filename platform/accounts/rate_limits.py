"""The account's effective rate limits and how much of each is in use right now, read from the gateway's own token
buckets in Redis (contracts.rate_limit_keys; the refill rule is token_buckets.lua's: capacity per minute, refilled
continuously). Redis unreachable -> the limits without the usage (`remaining` null), never an error."""

from __future__ import annotations

import logging
import os
from typing import Any

from accounts.models import Account
from contracts import DEFAULT_RPM_LIMIT, DEFAULT_TPM_LIMIT, rate_limit_keys
from hearth_platform.redis_client import get_redis

log = logging.getLogger("hearth.accounts")


def _default(name: str, fallback: int) -> int:
    # The gateway reads the same variables (gateway.settings: HEARTH_GATEWAY_DEFAULT_RPM_LIMIT / _TPM_LIMIT).
    try:
        return int(os.environ.get(name, fallback))
    except ValueError:
        return fallback


def effective_limits(account: Account) -> tuple[int, int]:
    rpm = account.rpm_limit if account.rpm_limit is not None else _default("HEARTH_GATEWAY_DEFAULT_RPM_LIMIT",
                                                                           DEFAULT_RPM_LIMIT)
    tpm = account.tpm_limit if account.tpm_limit is not None else _default("HEARTH_GATEWAY_DEFAULT_TPM_LIMIT",
                                                                           DEFAULT_TPM_LIMIT)
    return rpm, tpm


def _remaining(raw: list[Any], capacity: int, now_ms: int) -> int:
    tokens, stamp = raw
    if tokens is None or stamp is None:
        return capacity  # no bucket yet (or expired after two idle minutes): full
    refilled = float(tokens) + max(0, now_ms - int(stamp)) * capacity / 60000.0
    return max(0, int(min(capacity, refilled)))


def rate_limit_state(account: Account) -> dict[str, dict[str, int | None]]:
    rpm, tpm = effective_limits(account)
    state: dict[str, dict[str, int | None]] = {"rpm": {"limit": rpm, "remaining": None},
                                               "tpm": {"limit": tpm, "remaining": None}}
    account_rpm_key, account_tpm_key = rate_limit_keys(account.pk, 0)[2:]
    try:
        client = get_redis()
        pipe = client.pipeline(transaction=False)
        pipe.time()
        pipe.hmget(account_rpm_key, "t", "ts")
        pipe.hmget(account_tpm_key, "t", "ts")
        (sec, usec), rpm_raw, tpm_raw = pipe.execute()
    except Exception:  # noqa: BLE001 - Redis away: show the limits, not the usage
        log.warning("rate-limit usage of account %s unavailable (Redis)", account.pk)
        return state
    now_ms = int(sec) * 1000 + int(usec) // 1000
    state["rpm"]["remaining"] = _remaining(rpm_raw, rpm, now_ms)
    state["tpm"]["remaining"] = _remaining(tpm_raw, tpm, now_ms)
    return state


