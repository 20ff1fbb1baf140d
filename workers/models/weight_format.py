"""The weight format a CPU worker runs by default: whichever of dense fp32, dense bf16, int8 and int4 multiplies a
decode-sized batch fastest on this machine. A micro-benchmark of well under a second at start-up, cached per CPU
model, torch version and thread count (a bf16 GEMV is 2x faster than fp32 on an avx512_bf16 EPYC and 4x slower
on one without, so no fixed default is right everywhere).
"""

import copy
import functools
import json
import logging
import os
import time
from pathlib import Path

import torch

from workers.models.quant_linear import QUANT_MODES, _Packed, quantize

log = logging.getLogger("hearth.worker")

# (activation dtype, quantization); quantized weights run with fp32 activations (the kernels read bf16 copies)
CANDIDATES: list[tuple[str, str | None]] = [("float32", None), ("bfloat16", None), ("float32", "int8"),
                                            ("float32", "int4")]  # fmt: skip
_SHAPES = [(1536, 576), (576, 1536), (4096, 576)]  # SmolLM2's MLP pair and a wide (output-layer-like) slab
WORKING_SET_BYTES = 64 << 20  # per format: twice the last-level cache of these machines


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown cpu"


def _cache_path() -> Path:
    home = os.environ.get("HEARTH_HOME")
    base = Path(home) if home else Path.home() / ".cache" / "hearth"
    return base / "weight_format.json"


def _time_format(dtype: str, quant: str | None, rounds: int = 3, budget_s: float = 0.03) -> float:
    # best-of-rounds seconds for one pass over _SHAPES at one token (the decode step's GEMVs); each round runs
    # about budget_s, so a slow format costs no more start-up time than a fast one. The weights are repeated until
    # they fill WORKING_SET_BYTES: a decode step streams its weights from memory, and a set that fits in the last
    # level cache (32 MiB here) would crown whichever format is fastest from cache (fp32, by 10x, measured).
    gen = torch.Generator().manual_seed(0)
    fns = []
    for n, k in _SHAPES:
        w = torch.randn(n, k, generator=gen) * 0.02
        if quant is None:
            wd, x = w.to(getattr(torch, dtype)), torch.randn(1, k).to(getattr(torch, dtype))
            copies = max(1, WORKING_SET_BYTES // (len(_SHAPES) * wd.nbytes))
            fns += [functools.partial(torch.nn.functional.linear, x, wd.clone()) for _ in range(copies)]
        else:
            packed, x = _Packed(quantize(w, quant)), torch.randn(1, k)
            copies = max(1, WORKING_SET_BYTES // (len(_SHAPES) * packed.weight_bytes()))
            fns += [functools.partial(copy.deepcopy(packed).mm, x) for _ in range(copies)]
    start = time.perf_counter()
    for fn in fns:
        fn()
    calls = max(1, min(20, int(budget_s / max(time.perf_counter() - start, 1e-6))))
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(calls):
            for fn in fns:
                fn()
        best = min(best, (time.perf_counter() - start) / calls)
    return best * len(_SHAPES) / len(fns)  # per pass over one copy of the shapes


def measure() -> dict[str, float]:
    with torch.inference_mode():
        return {f"{d}+{q or 'dense'}": _time_format(d, q) for d, q in CANDIDATES}


def choose_weight_format(device: str) -> tuple[str, str | None]:
    """(dtype, quantization or None) for a worker on `device`: bf16 dense on a GPU, the measured fastest on CPU."""
    if torch.device(device).type != "cpu":
        return "bfloat16", None
    key = f"{_cpu_name()} | torch {torch.__version__} | {torch.get_num_threads()} threads | v2 (streamed)"
    path = _cache_path()
    try:
        cached = json.loads(path.read_text())
    except (OSError, ValueError):
        cached = {}
    timings = cached.get(key)
    source = "cached"
    if not isinstance(timings, dict):
        timings, source = measure(), "measured"
        load = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
        if load > (os.cpu_count() or 1):  # the cores were oversubscribed: use the figures, but don't keep them
            source = f"measured at load average {load:.1f}, not cached"
        else:
            cached[key] = timings
    if source == "measured":
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(cached, indent=1))
        except OSError as e:
            log.warning("weight format: could not cache the measurement at %s: %s", path, e)
    best = min(timings, key=timings.__getitem__)
    dtype, quant = best.split("+")
    figures = ", ".join(f"{name} {t * 1e6:.0f} us" for name, t in sorted(timings.items(), key=lambda kv: kv[1]))
    log.info("weight format: %s (%s on %s: %s)", best, source, key, figures)
    return dtype, (quant if quant in QUANT_MODES else None)
