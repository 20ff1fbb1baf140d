"""Throttles for the unauthenticated auth endpoints (log-in, sign-up): per client IP and per e-mail address, counted in
Redis so every control-plane process shares the counts. A throttled request gets DRF's 429 (`{"detail": ...}`) with
Retry-After.

Fixed windows: the first attempt sets the window's expiry (SET NX EX), each attempt INCRs it, in one MULTI, so
concurrent attempts can't under-count. Every attempt counts, right or wrong (the view hasn't run yet). If Redis is
down the throttle lets the request through and logs it: log-in must not depend on Redis being up, and the password
check itself still runs (it is slow by design).
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass

import redis
from django.conf import settings
from rest_framework.request import Request
from rest_framework.throttling import BaseThrottle
from rest_framework.views import APIView

from contracts import THROTTLE_KEY_PREFIX as KEY_PREFIX
from hearth_platform.redis_client import get_redis

log = logging.getLogger("hearth.throttling")


@dataclass(frozen=True, slots=True)
class Rate:
    num_requests: int
    window_s: int


DEFAULT_RATES = {
    # An office behind one NAT address still logs in; a password guesser gets 10 tries per address per 5 minutes.
    "login:ip": Rate(60, 300),
    "login:email": Rate(10, 300),
    "signup:ip": Rate(20, 3600),
    "signup:email": Rate(5, 3600),
}


def rate(scope: str) -> Rate:
    configured = getattr(settings, "HEARTH_THROTTLE_RATES", {}) or {}
    value = configured.get(scope, DEFAULT_RATES[scope])
    return value if isinstance(value, Rate) else Rate(int(value[0]), int(value[1]))


def hit(key: str, limit: Rate) -> int | None:
    """Count one attempt under `key`; -> seconds until the window ends if this attempt is over the limit, else None."""
    try:
        with get_redis().pipeline(transaction=True) as pipe:
            pipe.set(key, 0, ex=limit.window_s, nx=True)
            pipe.incr(key)
            pipe.ttl(key)
            _created, count, ttl = pipe.execute()
    except redis.RedisError as exc:
        log.warning("throttle %s not checked, Redis is unavailable: %s", key.split(":")[2], exc)
        return None
    if count <= limit.num_requests:
        return None
    return max(int(ttl), 1)


class _AuthThrottle(BaseThrottle):
    endpoint: str  # "login" / "signup"

    def __init__(self) -> None:
        self._wait: int | None = None

    def allow_request(self, request: Request, view: APIView) -> bool:
        waits = [hit(f"{KEY_PREFIX}{self.endpoint}:ip:{self.get_ident(request)}", rate(f"{self.endpoint}:ip"))]
        email = _email(request)
        if email:  # a body without one is refused by the serializer; only the address counts then
            digest = hashlib.sha256(email.encode()).hexdigest()[:32]  # no addresses in Redis key names
            waits.append(hit(f"{KEY_PREFIX}{self.endpoint}:email:{digest}", rate(f"{self.endpoint}:email")))
        over = [w for w in waits if w is not None]
        self._wait = max(over) if over else None
        return not over

    def wait(self) -> float | None:
        return self._wait


def _email(request: Request) -> str:
    data = request.data  # an unparsable body raises ParseError here: DRF's 400, as the view would have answered
    value = data.get("email", "") if hasattr(data, "get") else ""
    return value.strip().lower() if isinstance(value, str) else ""


class LoginThrottle(_AuthThrottle):
    endpoint = "login"


class SignupThrottle(_AuthThrottle):
    endpoint = "signup"
