"""The weight format a CPU worker runs by default: whichever of dense fp32, dense bf16, int8 and int4 multiplies a
decode-sized batch fastest on this machine. A micro-benchmark of well under a second at start-up, cached per CPU
model, torch version and thread count (a bf16 GEMV is 2x faster than fp32 on an avx512_bf16 EPYC and 4x slower
on one without, so no fixed default is right everywhere).
"""

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
    # about budget_s, so a slow format costs no more start-up time than a fast one
    gen = torch.Generator().manual_seed(0)
    fns = []
    for n, k in _SHAPES:
        w = torch.randn(n, k, generator=gen) * 0.02
        if quant is None:
            wd, x = w.to(getattr(torch, dtype)), torch.randn(1, k).to(getattr(torch, dtype))
            fns.append(lambda wd=wd, x=x: torch.nn.functional.linear(x, wd))
        else:
            packed, x = _Packed(quantize(w, quant)), torch.randn(1, k)
            fns.append(lambda packed=packed, x=x: packed.mm(x))
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
    return best


def measure() -> dict[str, float]:
    with torch.inference_mode():
        return {f"{d}+{q or 'dense'}": _time_format(d, q) for d, q in CANDIDATES}


def choose_weight_format(device: str) -> tuple[str, str | None]:
    """(dtype, quantization or None) for a worker on `device`: bf16 dense on a GPU, the measured fastest on CPU."""
    if torch.device(device).type != "cpu":
        return "bfloat16", None
    key = f"{_cpu_name()} | torch {torch.__version__} | {torch.get_num_threads()} threads"
    path = _cache_path()
    try:
        cached = json.loads(path.read_text())
    except (OSError, ValueError):
        cached = {}
    timings = cached.get(key)
    source = "cached"
    if not isinstance(timings, dict):
        timings, source = measure(), "measured"
        cached[key] = timings
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
