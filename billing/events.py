"""Usage events from the stream, checked before they can reach the ledger. The schema is the gateway's
(gateway/metering.py UsageEvent, DESIGN.md): anything else is a MalformedEvent with a reason for the dead-letter
stream. Only shape is checked here; which accounts, keys and models exist is checked per batch in billing.ingest."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime

STATUSES = frozenset({"finished", "aborted", "error"})
_MAX_TOKENS = 2**31 - 1  # the ledger's integer columns


class MalformedEvent(ValueError):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(slots=True)
class ParsedEvent:
    request_id: str
    account_id: int
    api_key_id: int
    model: int | str  # the catalog id the gateway sends; a slug or public name is resolved in ingest
    adapter_id: int | None
    prompt_tokens: int
    cached_prompt_tokens: int
    completion_tokens: int
    started_at: datetime
    finished_at: datetime
    status: str
    # Optional (older gateways send none): the route and variant that served a route's request, and when its first
    # token reached the gateway (TTFT = first_token_at - started_at).
    route_id: int | None = None
    variant_id: int | None = None
    first_token_at: datetime | None = None

    @property
    def ttft_ms(self) -> int | None:
        if self.first_token_at is None:
            return None
        return max(0, round((self.first_token_at - self.started_at).total_seconds() * 1000))


def _int(event: dict, name: str, *, nullable: bool = False) -> int | None:
    if name not in event:
        raise MalformedEvent(f"missing field {name}")
    value = event[name]
    if value is None and nullable:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise MalformedEvent(f"{name} must be an integer")
    return value


def _tokens(event: dict, name: str) -> int:
    value = _int(event, name)
    assert value is not None
    if value < 0:
        raise MalformedEvent(f"{name} is negative")
    if value > _MAX_TOKENS:
        raise MalformedEvent(f"{name} is too large")
    return value


def _time(event: dict, name: str) -> datetime:
    value = event.get(name)
    if not isinstance(value, str):
        raise MalformedEvent(f"missing field {name}" if value is None else f"{name} must be an ISO 8601 string")
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise MalformedEvent(f"{name} is not an ISO 8601 time") from None
    if moment.tzinfo is None:
        raise MalformedEvent(f"{name} has no time zone")
    return moment.astimezone(UTC)


def _optional_int(event: dict, name: str) -> int | None:
    return _int(event, name, nullable=True) if name in event else None


def parse_event(raw: bytes | str | None) -> ParsedEvent:
    if raw is None:
        raise MalformedEvent("entry has no `event` field")
    try:
        event = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise MalformedEvent("event is not JSON") from None
    if not isinstance(event, dict):
        raise MalformedEvent("event is not a JSON object")
    request_id = event.get("request_id")
    if not isinstance(request_id, str) or not request_id or len(request_id) > 64:
        raise MalformedEvent("request_id must be a non-empty string of at most 64 characters")
    model = event.get("model_id")
    if isinstance(model, bool) or not isinstance(model, int | str) or model == "":
        raise MalformedEvent("missing field model_id" if model is None else "model_id must be an id or a model name")
    status = event.get("status")
    if status not in STATUSES:
        raise MalformedEvent(f"status must be one of {sorted(STATUSES)}")
    parsed = ParsedEvent(
        request_id=request_id,
        account_id=_int(event, "account_id"),  # type: ignore[arg-type]
        api_key_id=_int(event, "api_key_id"),  # type: ignore[arg-type]
        model=model,
        adapter_id=_int(event, "adapter_id", nullable=True),
        prompt_tokens=_tokens(event, "prompt_tokens"),
        cached_prompt_tokens=_tokens(event, "cached_prompt_tokens"),
        completion_tokens=_tokens(event, "completion_tokens"),
        started_at=_time(event, "started_at"),
        finished_at=_time(event, "finished_at"),
        status=status,
        route_id=_optional_int(event, "route_id"),
        variant_id=_optional_int(event, "variant_id"),
        first_token_at=_time(event, "first_token_at") if event.get("first_token_at") is not None else None,
    )
    if parsed.cached_prompt_tokens > parsed.prompt_tokens:
        raise MalformedEvent("cached_prompt_tokens exceeds prompt_tokens")
    if parsed.finished_at < parsed.started_at:
        raise MalformedEvent("finished_at is before started_at")
    return parsed
