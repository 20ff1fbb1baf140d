"""SIGTERM: the worker finishes cleanly (exit 0) and takes its registry entry with it."""

import os

import redis

from contracts import WORKERS_SET, worker_key
from tests.workers.server._serve import wait_until


def test_sigterm_exits_cleanly_and_deregisters(worker_holder):
    worker = worker_holder.take()  # this test stops it; later tests get a fresh one
    r = redis.Redis.from_url(os.environ["REDIS_URL"])
    try:
        assert wait_until(lambda: r.sismember(WORKERS_SET, worker.worker_id))
        assert worker.stop() == 0
        assert not r.sismember(WORKERS_SET, worker.worker_id)
        assert r.get(worker_key(worker.worker_id)) is None
        assert "Traceback" not in worker.log_path.read_text()
    finally:
        r.close()
