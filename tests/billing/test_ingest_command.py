"""`manage.py billing_ingest` as a real process: SIGKILLed mid-run and restarted, every event lands in the ledger
exactly once; SIGTERM stops it cleanly (exit 0)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from billing_testlib import usage_event, xadd_events

from billing.models import UsageRecord
from contracts import USAGE_STREAM

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.django_db(transaction=True)


def database_url() -> str:
    from django.db import connection

    s = connection.settings_dict
    auth = s["USER"] + (f":{s['PASSWORD']}" if s["PASSWORD"] else "")
    if s["HOST"].startswith("/"):
        return f"postgresql://{auth}@/{s['NAME']}?host={s['HOST']}"
    return f"postgresql://{auth}@{s['HOST']}:{s['PORT']}/{s['NAME']}"


def start_ingest(consumer: str) -> subprocess.Popen:
    env = {**os.environ, "DATABASE_URL": database_url(), "HEARTH_LOG_LEVEL": "WARNING"}
    env.pop("HEARTH_TEST_DATABASE_NAME", None)
    return subprocess.Popen(
        [sys.executable, "platform/manage.py", "billing_ingest", "--consumer", consumer, "--batch-size", "100",
         "--block-ms", "200", "--claim-idle-ms", "0"],
        cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )


def wait_for(predicate, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not met")
        time.sleep(0.1)


def test_killed_consumer_restarts_without_loss_or_duplicates(rclient, tenant, smollm2):
    account, key = tenant("ada")
    events = [usage_event(account.id, key.id, smollm2.id, prompt=i % 97, completion=i % 31) for i in range(3000)]
    xadd_events(rclient, events[:1500])
    first = start_ingest("first")
    try:
        wait_for(lambda: UsageRecord.objects.for_account(account).count() > 0)
        first.send_signal(signal.SIGKILL)  # mid-run: whatever batch it held stays pending
        first.wait(10)
    finally:
        if first.poll() is None:
            first.kill()
    xadd_events(rclient, events[1500:])
    xadd_events(rclient, events[:200])  # and a replay of the first events (the gateway's spool after a crash)
    second = start_ingest("second")
    try:
        wait_for(lambda: rclient.xlen(USAGE_STREAM) == 0 and not rclient.xpending(USAGE_STREAM, "billing")[
            "pending"])
        second.send_signal(signal.SIGTERM)
        assert second.wait(15) == 0, second.stderr.read().decode()[-2000:] if second.stderr else ""
    finally:
        if second.poll() is None:
            second.kill()
    rows = UsageRecord.objects.for_account(account)
    assert rows.count() == len(events) == len(set(rows.values_list("request_id", flat=True)))
    assert sum(rows.values_list("prompt_tokens", flat=True)) == sum(e.prompt_tokens for e in events)
    assert sum(rows.values_list("completion_tokens", flat=True)) == sum(e.completion_tokens for e in events)
