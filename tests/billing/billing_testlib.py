"""Usage events in the gateway's exact shape (gateway.metering.UsageEvent), written the way the gateway writes them."""

from __future__ import annotations

import json
import uuid
from dataclasses import asdict
from datetime import UTC, datetime, timedelta

import redis

from contracts import USAGE_STREAM
from gateway.metering import UsageEvent


def usage_event(account_id: int, api_key_id: int, model_id: int | str, *, prompt: int = 100, cached: int = 0,
                completion: int = 50, adapter_id: int | None = None, status: str = "finished",
                finished_at: datetime | None = None, request_id: str | None = None) -> UsageEvent:
    finished = finished_at or datetime.now(UTC)
    return UsageEvent(
        request_id=request_id or f"req_{uuid.uuid4().hex}", account_id=account_id, api_key_id=api_key_id,
        model_id=model_id, adapter_id=adapter_id, prompt_tokens=prompt, cached_prompt_tokens=cached,
        completion_tokens=completion, started_at=(finished - timedelta(seconds=1)).isoformat(),
        finished_at=finished.isoformat(), status=status,
    )


def xadd_events(client: redis.Redis, events: list[UsageEvent]) -> None:
    """Exactly what gateway.metering.Metering._xadd writes."""
    pipe = client.pipeline(transaction=False)
    for event in events:
        pipe.xadd(USAGE_STREAM, {"event": json.dumps(asdict(event), separators=(",", ":"))})
    pipe.execute()


WEBHOOK_SECRET = "whsec_test_hearth"


def add_card(account, number: str = "4242424242424242"):
    """What the dashboard does: a SetupIntent from our API, confirmed with a card (Stripe.js in a browser; here
    the SDK), then completed through our API. -> the BillingProfile."""
    from billing.stripe_billing import setup_intent_complete, setup_intent_create, stripe_client

    intent_id, client_secret = setup_intent_create(account=account)
    assert client_secret.startswith(intent_id)
    client = stripe_client()
    pm = client.v1.payment_methods.create(
        {"type": "card", "card": {"number": number, "exp_month": 12, "exp_year": 2034, "cvc": "123"}}
    )
    client.v1.setup_intents.confirm(intent_id, {"payment_method": pm.id})
    return setup_intent_complete(account=account, setup_intent_id=intent_id)
