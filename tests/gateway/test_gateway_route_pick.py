"""Route variant assignment (gateway.routes): weights hold over many random draws, `user` is sticky, only ready
variants serve, and a route with none is a 404 that names why."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime

import pytest

from gateway.errors import ModelNotFound
from gateway.routes import _routes_of

NOW = datetime(2026, 12, 1, tzinfo=UTC)


def rows(*variants: tuple[int, int, str | None, str]) -> list[tuple]:
    """(variant_id, weight, adapter name or None for the base, adapter status)"""
    out = []
    for i, (variant_id, weight, adapter, status) in enumerate(variants):
        out.append((7, "support", NOW, "ada", variant_id, weight, 1, "smollm2-135m-instruct", 8192,
                    "accounts/hearth/models/smollm2-135m-instruct",
                    100 + i if adapter else None, f"{i:032x}" if adapter else None, adapter, status))
    return out


def test_seventy_thirty_within_five_points_and_sticky_user():
    route = _routes_of(rows((1, 70, "v3", "ready"), (2, 30, "v4", "ready")))["accounts/ada/models/support"]
    counts = Counter(route.pick(5, None).variant_id for _ in range(1000))
    assert abs(counts[1] / 1000 - 0.70) <= 0.05, counts
    for user in ("alice", "bob", "user-42"):
        first = route.pick(5, user).variant_id
        assert all(route.pick(5, user).variant_id == first for _ in range(50))
    # sticky users spread by weight too
    by_user = Counter(route.pick(5, f"user-{i}").variant_id for i in range(1000))
    assert abs(by_user[1] / 1000 - 0.70) <= 0.05, by_user
    # the same user in another account (or route) is an independent draw
    other = Counter(route.pick(6, f"user-{i}").variant_id == route.pick(5, f"user-{i}").variant_id
                    for i in range(400))
    assert other[False] > 50


def test_only_ready_variants_and_no_ready_variant_is_404():
    route = _routes_of(rows((1, 50, "v3", "ready"), (2, 50, "v4", "validating")))["accounts/ada/models/support"]
    assert {route.pick(5, None).variant_id for _ in range(50)} == {1}
    assert route.pick(5, None).entry.adapter_uid == f"{0:032x}"
    empty = _routes_of(rows((2, 50, "v4", "validating")))["accounts/ada/models/support"]
    with pytest.raises(ModelNotFound, match="no ready variant.*accounts/ada/models/v4"):
        empty.pick(5, "alice")


def test_base_variant_is_the_catalog_model():
    route = _routes_of(rows((1, 1, None, ""), (2, 1, "v3", "ready")))["accounts/ada/models/support"]
    base = next(v for v in route.variants if v.variant_id == 1)
    assert base.entry.worker_model == "smollm2-135m-instruct" and base.entry.adapter_id is None
    lora = next(v for v in route.variants if v.variant_id == 2)
    assert lora.entry.worker_model == f"smollm2-135m-instruct:{1:032x}"
