"""Choosing a worker: same region first, then a worker already holding the adapter while its load is bounded
(load <= factor * (mean load + 1), as in consistent hashing with bounded loads), then the least loaded.

`candidates` returns every eligible worker in preference order, so the proxy can fall through to the next one when
connecting fails before the first byte.
"""

import random

from gateway.registry import WorkerInfo


def candidates(
    workers: list[WorkerInfo],
    *,
    base_model: str,
    adapter_uid: str | None,
    region: str,
    load_factor: float,
    kind: str | None = None,
) -> list[WorkerInfo]:
    # `kind`: only workers that serve it (a worker registered under the model's slug but of the other kind is
    # misconfigured, and would answer every request with an error)
    pool = [w for w in workers if w.base_model == base_model and (kind is None or w.kind == kind)]
    if not pool:
        return []
    local = [w for w in pool if w.region == region]
    remote = [w for w in pool if w.region != region]
    return _order(local, adapter_uid, load_factor) + _order(remote, adapter_uid, load_factor)


def _order(pool: list[WorkerInfo], adapter_uid: str | None, load_factor: float) -> list[WorkerInfo]:
    if not pool:
        return []
    random.shuffle(pool)  # ties between equally loaded workers spread instead of piling onto the first id
    by_load = sorted(pool, key=lambda w: w.load)
    if adapter_uid is None:
        return by_load
    bound = load_factor * (sum(w.load for w in pool) / len(pool) + 1)
    holders = [w for w in by_load if adapter_uid in w.resident_adapters and w.load <= bound]
    return holders + [w for w in by_load if w not in holders]
