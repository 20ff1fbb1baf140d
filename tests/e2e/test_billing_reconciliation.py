"""Billing reconciliation end to end (issue 6, "Done when" 1), every part real: two accounts send a mix of requests
through a real gateway to a real SmolLM2 worker with the official SDK: non-streamed, streamed with and without
`include_usage`, and streams the client closes after its first chunks. `manage.py billing_ingest` runs as a real
process and is SIGKILLed mid-run, then a new consumer in the same group takes over. Afterwards, per account, the
ledger's tokens equal the usage the clients saw plus, for the streams that carried no usage to the client (cancelled,
or no `include_usage`), what the gateway metered from the worker (a cancelled stream's prompt included, from the
usage the worker puts on every chunk); every request_id the gateway answered with is in
the ledger exactly once; cancelled streams are `aborted` rows; every cost is `billing.pricing` at the catalog price."""

import os
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field

import pytest
import redis

from billing.pricing import Prices, cost_usd, format_usd
from contracts import USAGE_DEAD_STREAM, USAGE_STREAM
from tests.e2e.conftest import database_url
from tests.gateway.conftest import REPO_ROOT
from tests.gateway.gateway_testlib import sdk, wait_for_workers

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]
SMOLLM2 = "smollm2-135m-instruct"
MESSAGES = [{"role": "user", "content": "Write a short poem about the sea."}]
KINDS = ("plain", "usage", "no_usage", "cancel")  # x3 = 12 requests, every kind for both accounts
CANCEL_MAX_TOKENS = 12
CANCEL_AFTER_CHUNKS = 2


@pytest.fixture
def gateway(in_process_gateway, smollm2_worker):
    # In this process: the test records every usage event the gateway emits (services.metering), not only the ledger.
    return in_process_gateway(region=smollm2_worker.region)


@pytest.fixture
def usage_stream():
    """The usage stream and its consumer group, empty: this run's Redis is private to it (devstack's plugin)."""
    client = redis.Redis.from_url(os.environ["REDIS_URL"])
    client.delete(USAGE_STREAM, USAGE_DEAD_STREAM)
    try:
        yield client
    finally:
        client.delete(USAGE_STREAM, USAGE_DEAD_STREAM)
        client.close()


def _start_ingest(consumer: str) -> subprocess.Popen:
    """As tests/billing/test_ingest_command.py: the real command on the test database, claiming at once what a dead
    consumer left pending."""
    env = {**os.environ, "DATABASE_URL": database_url(), "HEARTH_LOG_LEVEL": "WARNING"}
    env.pop("HEARTH_TEST_DATABASE_NAME", None)
    return subprocess.Popen(
        [sys.executable, "platform/manage.py", "billing_ingest", "--consumer", consumer, "--batch-size", "100",
         "--block-ms", "200", "--claim-idle-ms", "0"],
        cwd=REPO_ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )


def _wait(predicate, what: str, timeout: float = 60.0):
    deadline = time.monotonic() + timeout
    while not (value := predicate()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)
    return value


def _kill(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)


@dataclass
class Sent:
    kind: str
    account_id: int
    max_tokens: int
    request_id: str = ""
    seen: tuple[int, int, int] | None = None  # (prompt, cached, completion) the client was told, if any
    seen_cost: str | None = None
    content_chunks: int = 0  # chunks with text the client received
    chunks: list = field(default_factory=list)


def _usage_tuple(usage) -> tuple[int, int, int]:
    details = usage.prompt_tokens_details
    cached = (details.cached_tokens or 0) if details is not None else 0
    return usage.prompt_tokens, cached, usage.completion_tokens


def _send(client, sent: Sent) -> None:
    ask = dict(model=SMOLLM2, messages=MESSAGES, max_tokens=sent.max_tokens, temperature=0,
               extra_body={"ignore_eos": True})
    if sent.kind == "plain":
        raw = client.chat.completions.with_raw_response.create(**ask)
        reply = raw.parse()
        sent.request_id, sent.seen, sent.seen_cost = raw.headers["x-request-id"], _usage_tuple(reply.usage), (
            reply.usage.cost)
        assert raw.headers["x-hearth-cost"] == reply.usage.cost
        return
    options = {"stream_options": {"include_usage": True}} if sent.kind == "usage" else {}
    stream = client.chat.completions.create(stream=True, **ask, **options)
    sent.request_id = stream.response.headers["x-request-id"]
    try:
        for chunk in stream:
            sent.chunks.append(chunk)
            if chunk.choices and chunk.choices[0].delta.content:
                sent.content_chunks += 1
            if chunk.usage is not None:
                sent.seen, sent.seen_cost = _usage_tuple(chunk.usage), chunk.usage.cost
            if sent.kind == "cancel" and len(sent.chunks) >= CANCEL_AFTER_CHUNKS:
                break
    finally:
        stream.close()  # for "cancel": the client hangs up mid-stream
    if sent.kind == "no_usage":
        assert sent.seen is None
    if sent.kind == "usage":
        assert sent.seen is not None and sent.chunks[-1].usage is not None


def test_ledger_reconciles_with_clients_across_a_killed_consumer(gateway, usage_stream, e2e_account,
                                                                  smollm2_catalog):
    from billing.models import UsageRecord

    base = smollm2_catalog
    prices = Prices(base.price_input_per_mtok, base.price_cached_input_per_mtok, base.price_output_per_mtok)
    accounts = [(t.account, t.secret) for t in (e2e_account("recon-a"), e2e_account("recon-b"))]
    clients = [sdk(gateway.url, secret) for _account, secret in accounts]
    wait_for_workers(gateway, SMOLLM2, timeout=30)

    emitted: dict[str, list[dict]] = {}  # request_id -> the usage events the gateway emitted for it
    original_emit = gateway.services.metering.emit

    def record(event) -> None:
        emitted.setdefault(event.request_id, []).append(asdict(event))
        original_emit(event)

    gateway.services.metering.emit = record  # the gateway's own loop calls it; list appends are atomic

    plan = []
    for i in range(12):
        slot = (i + i // 4) % 2  # each account gets every kind
        kind = KINDS[i % 4]
        plan.append(Sent(kind, accounts[slot][0].pk, CANCEL_MAX_TOKENS if kind == "cancel" else 4 + i % 5))

    ours = UsageRecord.dangerously_unscoped.filter(account__in=[a for a, _ in accounts])
    first = _start_ingest("recon-first")
    second = None
    try:
        for i, sent in enumerate(plan):
            if i == 5:  # mid-run, once the first consumer has written rows: SIGKILL, whatever it held stays pending
                _wait(lambda: ours.exists(), "the first consumer's first rows")
                _kill(first)
            if i == 9:  # events for requests 5-8 waited in the stream; a new consumer in the same group takes over
                second = _start_ingest("recon-second")
            _send(clients[[a.pk for a, _ in accounts].index(sent.account_id)], sent)

        ids = [s.request_id for s in plan]
        assert len(set(ids)) == len(ids), ids
        # Cancelled streams are metered when the gateway notices the hang-up: wait for every event, then the ledger.
        _wait(lambda: set(emitted) >= set(ids), "a usage event for every request", timeout=30)
        _wait(lambda: ours.count() >= len(ids) and not usage_stream.xpending(USAGE_STREAM, "billing")["pending"],
              "every event in the ledger and acknowledged", timeout=60)
        second.send_signal(signal.SIGTERM)
        assert second.wait(15) == 0, second.stderr.read().decode()[-2000:]
    finally:
        _kill(first)
        if second is not None:
            _kill(second)

    assert set(emitted) == set(ids) and all(len(events) == 1 for events in emitted.values()), emitted
    rows = {r.request_id: r for r in ours}
    assert sorted(rows) == sorted(ids)  # no request_id twice, none missing, nothing else billed to these accounts
    assert not usage_stream.xlen(USAGE_DEAD_STREAM)

    prompt_tokens = {s.seen[0] for s in plan if s.seen is not None}  # every request sends the same MESSAGES
    assert len(prompt_tokens) == 1, prompt_tokens
    (prompt_tokens,) = prompt_tokens
    expected: dict[int, list[int]] = {}
    for sent in plan:
        row, event = rows[sent.request_id], emitted[sent.request_id][0]
        tokens = (row.prompt_tokens, row.cached_prompt_tokens, row.completion_tokens)
        assert row.account_id == sent.account_id and row.base_model_id == base.pk
        assert tokens == (event["prompt_tokens"], event["cached_prompt_tokens"], event["completion_tokens"])
        if sent.kind == "cancel":
            assert row.status == "aborted", (sent.request_id, row.status, tokens)
            assert sent.content_chunks <= row.completion_tokens <= sent.max_tokens, (sent.content_chunks, tokens)
            # The worker's usage rides on every chunk (continuous_usage_stats), so a stream the client abandons is
            # billed its prompt too: the count the worker reported for this same prompt on the completed requests.
            assert row.prompt_tokens == prompt_tokens > 0, (tokens, prompt_tokens)
        else:
            assert row.status == "finished" and row.completion_tokens == sent.max_tokens, (row.status, tokens)
        if sent.seen is not None:  # what the client was told is what it is billed
            assert tokens == sent.seen, (sent.kind, tokens, sent.seen)
        # Rated at the catalog price, by billing.pricing's formula, with that price version on the row.
        assert (row.price_version.price_input_per_mtok, row.price_version.price_cached_input_per_mtok,
                row.price_version.price_output_per_mtok) == (prices.input_per_mtok, prices.cached_input_per_mtok,
                                                             prices.output_per_mtok)
        assert row.cost_usd == cost_usd(prices, prompt_tokens=row.prompt_tokens,
                                        cached_prompt_tokens=row.cached_prompt_tokens,
                                        completion_tokens=row.completion_tokens)
        if sent.seen_cost is not None:
            assert sent.seen_cost == format_usd(row.cost_usd)
        metered = (event["prompt_tokens"], event["cached_prompt_tokens"], event["completion_tokens"])
        source = sent.seen if sent.seen is not None else metered  # no usage shown to the client: what was metered
        totals = expected.setdefault(sent.account_id, [0, 0, 0])
        for n, value in enumerate(source):
            totals[n] += value

    for account, _secret in accounts:
        account_rows = [r for r in rows.values() if r.account_id == account.pk]
        ledger = [sum(r.prompt_tokens for r in account_rows), sum(r.cached_prompt_tokens for r in account_rows),
                  sum(r.completion_tokens for r in account_rows)]
        assert ledger == expected[account.pk] and ledger[2] > 0, (account.slug, ledger, expected[account.pk])
    assert {s.kind for s in plan if rows[s.request_id].status == "aborted"} == {"cancel"}
