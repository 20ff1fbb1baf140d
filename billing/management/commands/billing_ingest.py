"""`python platform/manage.py billing_ingest`: the long-running usage consumer. Exits cleanly on SIGTERM/SIGINT after
the batch in hand (at most block_ms later), so nothing is left half-done: an unfinished batch is simply not acked."""

from __future__ import annotations

import logging
import signal
import time
from typing import Any

from django.core.management.base import BaseCommand
from prometheus_client import start_http_server

from billing import conf
from billing.ingest import UsageConsumer
from billing.spend import spend_sync
from hearth_platform.redis_client import get_redis

log = logging.getLogger("hearth.billing.ingest")
SYNC_INTERVAL_S = 30.0


class Command(BaseCommand):
    help = "Consume the usage stream into the billing ledger until SIGTERM."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--consumer", default=None, help="consumer name in the group (default host-pid)")
        parser.add_argument("--batch-size", type=int, default=1000)
        parser.add_argument("--block-ms", type=int, default=1000)
        parser.add_argument("--claim-idle-ms", type=int, default=30_000,
                            help="take over entries another consumer left unacknowledged this long")
        parser.add_argument("--metrics-port", type=int, default=0, help="serve Prometheus metrics (0 = off)")

    def handle(self, *args: Any, **opts: Any) -> None:
        stopping = False

        def stop(signum: int, _frame: object) -> None:
            nonlocal stopping
            stopping = True

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        if opts["metrics_port"]:
            start_http_server(opts["metrics_port"], addr="127.0.0.1")
        client = get_redis()
        consumer = UsageConsumer(client, consumer=opts["consumer"], batch_size=opts["batch_size"],
                                 block_ms=opts["block_ms"], claim_idle_ms=opts["claim_idle_ms"])
        mode = "ledger only (no HEARTH_STRIPE_API_KEY)" if conf.ledger_only() else "Stripe"
        log.info("billing ingest started as consumer %s; billing mode: %s", consumer.consumer, mode)
        next_sync = 0.0
        while not stopping:
            if time.monotonic() >= next_sync:  # rebuilds Redis counters if Redis lost them
                try:
                    spend_sync(client)
                except Exception:
                    log.exception("spend sync failed; retrying in %.0f s", SYNC_INTERVAL_S)
                next_sync = time.monotonic() + SYNC_INTERVAL_S
            try:
                result = consumer.step()
            except Exception:  # Postgres or Redis away: the batch stays pending and is claimed again
                log.exception("ingest batch failed; retrying")
                time.sleep(1.0)
                continue
            if result.num_read:
                log.debug("ingested %d (dup %d, dead %d)", result.num_inserted, result.num_duplicates,
                          result.num_dead)
        log.info("billing ingest stopped")
