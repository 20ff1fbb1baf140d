"""Helpers shared by the gateway tests (imported by name: pytest puts this folder on sys.path)."""

import time

import httpx
import openai


def sdk(gateway_url: str, secret: str, *, max_retries: int = 0, sent: list[httpx.Request] | None = None
        ) -> openai.OpenAI:
    """The official client; `sent` collects every HTTP request it makes, to count the SDK's retries."""
    hooks = {"request": [sent.append]} if sent is not None else {}
    return openai.OpenAI(base_url=f"{gateway_url}/v1", api_key=secret, max_retries=max_retries,
                         http_client=httpx.Client(event_hooks=hooks, timeout=60))


def wait_for_workers(gateway, base_model: str, count: int = 1, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if sum(w.base_model == base_model for w in gateway.services.registry.workers()) >= count:
            return
        time.sleep(0.05)
    raise AssertionError(f"gateway never saw {count} worker(s) for {base_model}")
