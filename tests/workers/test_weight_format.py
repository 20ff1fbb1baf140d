"""The worker's default weight format: the fastest of the measured candidates, measured once per machine and cached
(workers/models/weight_format.py). The measurement itself is replaced by fixed timings here, except in the one
test that runs it for real (it must finish quickly and name a known format)."""

import json
import time
from pathlib import Path

import pytest

from workers.models import weight_format


def test_picks_the_fastest_and_caches_it(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HEARTH_HOME", str(tmp_path))
    monkeypatch.setattr(weight_format.os, "getloadavg", lambda: (0.2, 0.2, 0.2))  # a quiet machine
    calls: list[int] = []
    timings = {"float32+dense": 3e-4, "bfloat16+dense": 9e-4, "float32+int8": 2e-4, "float32+int4": 1.5e-4}
    monkeypatch.setattr(weight_format, "measure", lambda: calls.append(1) or dict(timings))
    assert weight_format.choose_weight_format("cpu") == ("float32", "int4")
    assert weight_format.choose_weight_format("cpu") == ("float32", "int4")
    assert calls == [1]  # the second start reads the cache
    cached = json.loads((tmp_path / "weight_format.json").read_text())
    assert list(cached.values()) == [timings]


def test_a_measurement_on_oversubscribed_cores_is_used_but_not_kept(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # With more runnable processes than cores, torch's threads wait on each other and the figures say little about
    # the machine: the worker uses them this once, and the next start measures again.
    monkeypatch.setenv("HEARTH_HOME", str(tmp_path))
    monkeypatch.setattr(weight_format.os, "getloadavg", lambda: (2.0 * (weight_format.os.cpu_count() or 1), 0, 0))
    calls: list[int] = []
    monkeypatch.setattr(weight_format, "measure", lambda: calls.append(1) or {"float32+int8": 1e-4, "float32+dense": 2e-4})
    assert weight_format.choose_weight_format("cpu") == ("float32", "int8")
    assert weight_format.choose_weight_format("cpu") == ("float32", "int8")
    assert calls == [1, 1] and not (tmp_path / "weight_format.json").exists()


def test_dense_wins_when_it_is_fastest(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HEARTH_HOME", str(tmp_path))
    monkeypatch.setattr(weight_format, "measure", lambda: {"float32+dense": 1e-4, "float32+int4": 2e-4})
    assert weight_format.choose_weight_format("cpu") == ("float32", None)


def test_gpu_takes_bf16_dense_without_measuring(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(weight_format, "measure", lambda: pytest.fail("measured for a GPU"))
    assert weight_format.choose_weight_format("cuda") == ("bfloat16", None)


def test_the_real_measurement_is_short(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HEARTH_HOME", str(tmp_path))
    start = time.perf_counter()
    timings = weight_format.measure()
    assert set(timings) == {f"{d}+{q or 'dense'}" for d, q in weight_format.CANDIDATES}
    assert all(t > 0 for t in timings.values())
    assert time.perf_counter() - start < 30  # ~1 s on an idle 2-core box; generous for a loaded one
