"""Kernel benchmarks: each Triton kernel against its torch baseline (eager reference; SDPA over gathered K/V for
attention), as achieved GB/s (or TFLOP/s) next to the device's measured copy bandwidth. GPU only.

LoRA shrink/expand (SGMV) are timed against their torch reference (a loop over adapter runs).
Run from the repository root: `python3 bench/kernels.py`. Timing: triton.testing.do_bench (warm-up, median of
CUDA-event timings), random non-zero inputs larger than L2, each output checked against the reference first.
`--smoke` runs every code path on the CPU in Triton's interpreter with tiny shapes (no figures worth keeping).
"""

import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# run as a script, sys.path[0] is bench/, where this file would shadow the `kernels` package
sys.path[:] = [str(ROOT)] + [p for p in sys.path if Path(p or ".").resolve() != ROOT / "bench"]

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from bench._results import write_section  # noqa: E402

SMOKE = "--smoke" in sys.argv
DEV = "cpu" if SMOKE else "cuda"
BF16 = torch.bfloat16
# sizes: (tokens, hidden, intermediate), decode (batch, ctx), prefill (batch, seqlen), sampling vocabularies
SIZES = {
    "elementwise": (64, 256, 512) if SMOKE else (16384, 4096, 14336),
    "decode": (4, 128) if SMOKE else (64, 2048),
    "prefill": (2, 64) if SMOKE else (4, 2048),
    "vocab": (1000,) if SMOKE else (49152, 128256),
    # (tokens, distinct adapters): a decode batch over many adapters, a prefill chunk over few; K, N, rank
    "lora": ([(8, 4), (40, 2)], 64, 96, 8) if SMOKE else ([(64, 32), (2048, 4)], 4096, 6144, 16),
}
Row = tuple[str, str, float, float, float, str]  # op, shape, triton ms, baseline ms, achieved, note


def bench(fn: Callable[[], object]) -> float:
    if SMOKE:
        start = time.perf_counter()
        fn()
        return (time.perf_counter() - start) * 1e3
    from triton.testing import do_bench

    return float(do_bench(fn, warmup=50, rep=200, return_mode="median"))


def rel_err(out: torch.Tensor, ref: torch.Tensor) -> float:
    return float((out.float() - ref.float()).norm() / ref.float().norm().clamp(min=1e-30))


def copy_bandwidth() -> float:
    # GB/s of a 1 GiB device-to-device copy, counting bytes read plus bytes written
    x = torch.randn(2**20 if SMOKE else 256 * 2**20, device=DEV)
    y = torch.empty_like(x)
    return 2 * x.numel() * x.element_size() / bench(lambda: y.copy_(x)) / 1e6


def elementwise(rows: list[Row]) -> None:
    from kernels.gelu_tanh_and_mul import gelu_tanh_and_mul_reference, gelu_tanh_and_mul_triton
    from kernels.rms_norm import add_rms_norm_reference, add_rms_norm_triton, rms_norm_reference, rms_norm_triton
    from kernels.rotary import apply_rotary_reference, apply_rotary_triton, rotary_cos_sin
    from kernels.silu_and_mul import silu_and_mul_reference, silu_and_mul_triton
    from kernels.store_kvcache import store_kvcache_reference, store_kvcache_triton

    t, h, inter = SIZES["elementwise"]  # Llama-8B hidden and intermediate sizes; every tensor > L2
    x = torch.randn(t, h, device=DEV, dtype=BF16)
    res = torch.randn_like(x)
    w = torch.randn(h, device=DEV, dtype=BF16)
    check = rel_err(rms_norm_triton(x, w, 1e-6), rms_norm_reference(x, w, 1e-6))
    rows.append(_gbps("rms_norm", f"{t}x{h} bf16", 2 * x.nbytes, lambda: rms_norm_triton(x, w, 1e-6),
                      lambda: rms_norm_reference(x, w, 1e-6), check))  # fmt: skip
    check = rel_err(add_rms_norm_triton(x, res, w, 1e-6)[0], add_rms_norm_reference(x, res, w, 1e-6)[0])
    rows.append(_gbps("add_rms_norm", f"{t}x{h} bf16", 4 * x.nbytes, lambda: add_rms_norm_triton(x, res, w, 1e-6),
                      lambda: add_rms_norm_reference(x, res, w, 1e-6), check))  # fmt: skip
    gu = torch.randn(t // 4, 2 * inter, device=DEV, dtype=BF16)
    check = rel_err(silu_and_mul_triton(gu), silu_and_mul_reference(gu))
    rows.append(_gbps("silu_and_mul", f"{t // 4}x2*{inter} bf16", gu.nbytes * 3 // 2,
                      lambda: silu_and_mul_triton(gu), lambda: silu_and_mul_reference(gu), check))  # fmt: skip
    check = rel_err(gelu_tanh_and_mul_triton(gu), gelu_tanh_and_mul_reference(gu))
    rows.append(_gbps("gelu_tanh_and_mul", f"{t // 4}x2*{inter} bf16", gu.nbytes * 3 // 2,
                      lambda: gelu_tanh_and_mul_triton(gu), lambda: gelu_tanh_and_mul_reference(gu), check))  # fmt: skip

    hq, hk, d = 32, 8, 128
    qkv = torch.randn(t, (hq + 2 * hk) * d, device=DEV, dtype=BF16)
    q = qkv[:, : hq * d].view(t, hq, d)
    k = qkv[:, hq * d : (hq + hk) * d].view(t, hk, d)
    v = qkv[:, (hq + hk) * d :].view(t, hk, d)
    pos = torch.randint(0, 8192, (t,), device=DEV)
    cs = rotary_cos_sin(8192, d, 500000.0, device=DEV)
    q2, k2 = q.clone(), k.clone()
    apply_rotary_triton(q, k, pos, cs)
    apply_rotary_reference(q2, k2, pos, cs)
    check = rel_err(q, q2)
    rows.append(_gbps("apply_rotary", f"{t} tok 32/8 heads x128 bf16", 2 * (q.numel() + k.numel()) * 2 + t * d * 4,
                      lambda: apply_rotary_triton(q, k, pos, cs), lambda: apply_rotary_reference(q, k, pos, cs),
                      check))  # fmt: skip
    block = 16
    kc = torch.randn(t // block + 8, block, hk, d, device=DEV, dtype=BF16)
    vc = torch.randn_like(kc)
    slots = torch.randperm(kc.shape[0] * block, device=DEV)[:t]
    kc2, vc2 = kc.clone(), vc.clone()
    store_kvcache_triton(k, v, kc, vc, slots)
    store_kvcache_reference(k, v, kc2, vc2, slots)
    check = rel_err(kc, kc2)
    rows.append(_gbps("store_kvcache", f"{t} tok 8x128 bf16", 4 * k.numel() * 2,
                      lambda: store_kvcache_triton(k, v, kc, vc, slots),
                      lambda: store_kvcache_reference(k, v, kc, vc, slots), check))  # fmt: skip


def _gbps(op: str, shape: str, nbytes: int, fn: Callable[[], object], base: Callable[[], object], err: float) -> Row:
    ms, base_ms = bench(fn), bench(base)
    return op, shape, ms, base_ms, nbytes / ms / 1e6, f"rel err {err:.1e}"


def _paged(batch: int, ctx: int, hk: int, d: int, block: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    nblocks = batch * ctx // block
    kc = torch.randn(nblocks, block, hk, d, device=DEV, dtype=BF16)
    vc = torch.randn_like(kc)
    tables = torch.randperm(nblocks, device=DEV, dtype=torch.int32).view(batch, ctx // block).contiguous()
    return kc, vc, tables


def _gathered(cache: torch.Tensor, tables: torch.Tensor) -> torch.Tensor:
    # [N, block, Hk, D] -> [B, Hk, L, D], the dense layout SDPA reads
    b = tables.shape[0]
    return cache[tables.long()].reshape(b, -1, cache.shape[2], cache.shape[3]).transpose(1, 2).contiguous()


def decode(rows: list[Row]) -> None:
    from kernels.paged_attention_decode import BLOCK_N, choose_num_splits
    from kernels.paged_attention_decode import paged_attention_decode_triton as paged_attention_decode

    (batch, ctx), hq, hk, d, block = SIZES["decode"], 32, 8, 128, 16  # target: Llama-8B heads, batch 64 × 2k
    kc, vc, tables = _paged(batch, ctx, hk, d, block)
    q = torch.randn(batch, hq, d, device=DEV, dtype=BF16)
    lens = torch.full((batch,), ctx, device=DEV, dtype=torch.int32)
    scale = d**-0.5
    kd, vd = _gathered(kc, tables), _gathered(vc, tables)
    ref = F.scaled_dot_product_attention(q[:, :, None].float(), kd.float(), vd.float(), scale=scale, enable_gqa=True)
    err = rel_err(paged_attention_decode(q, kc, vc, lens, tables, scale), ref[:, :, 0])
    nbytes = 2 * kc.numel() * 2 + 2 * q.nbytes
    base_ms = bench(lambda: F.scaled_dot_product_attention(q[:, :, None], kd, vd, scale=scale, enable_gqa=True))
    auto = choose_num_splits(batch, hk, ctx, q.device)
    shape = f"B{batch} ctx{ctx} 32/8x128 bf16"
    # splits at the default tile, then other tile/warp shapes at the automatic split count (tuning data: the
    # defaults were chosen from sm_90 register reports only, without a GPU)
    variants = [(s, BLOCK_N, 4) for s in sorted({1, 2, 4, 8, auto})] + [(auto, 32, 2), (auto, 64, 8), (auto, 128, 8)]
    for splits, block_n, warps in variants:
        ms = bench(lambda s=splits, n=block_n, w=warps: paged_attention_decode(
            q, kc, vc, lens, tables, scale, num_splits=s, block_n=n, num_warps=w))  # fmt: skip
        tag = f"splits {splits}{' (auto)' if splits == auto else ''}, {block_n}-key tiles, {warps} warps"
        note = f"{tag}, rel err {err:.1e}; SDPA on pre-gathered K/V"
        rows.append(("paged_attention_decode", shape, ms, base_ms, nbytes / ms / 1e6, note))
    # Sliding window (Mistral, Gemma's local layers): only the last `window` keys are read; GB/s over those bytes
    window = ctx // 4
    ref_w = F.scaled_dot_product_attention(q[:, :, None].float(), kd[:, :, -window:].float(),
                                           vd[:, :, -window:].float(), scale=scale, enable_gqa=True)  # fmt: skip
    err_w = rel_err(paged_attention_decode(q, kc, vc, lens, tables, scale, sliding_window=window), ref_w[:, :, 0])
    ms = bench(lambda: paged_attention_decode(q, kc, vc, lens, tables, scale, sliding_window=window))
    rows.append(("paged_attention_decode", f"{shape} window {window}", ms, base_ms, nbytes * window / ctx / ms / 1e6,
                 f"sliding_window {window}, rel err {err_w:.1e}; SDPA over the full context"))  # fmt: skip


def prefill(rows: list[Row]) -> None:
    from kernels.paged_attention_prefill import paged_attention_prefill_triton as paged_attention_prefill

    (batch, seqlen), hq, hk, d, block = SIZES["prefill"], 32, 8, 128, 16
    kc, vc, tables = _paged(batch, seqlen, hk, d, block)
    q = torch.randn(batch * seqlen, hq, d, device=DEV, dtype=BF16)
    cu = torch.arange(0, batch + 1, device=DEV, dtype=torch.int32) * seqlen
    lens = torch.full((batch,), seqlen, device=DEV, dtype=torch.int32)
    scale = d**-0.5
    kd, vd = _gathered(kc, tables), _gathered(vc, tables)
    qd = q.view(batch, seqlen, hq, d).transpose(1, 2).contiguous()

    def sdpa() -> torch.Tensor:
        return F.scaled_dot_product_attention(qd, kd, vd, is_causal=True, scale=scale, enable_gqa=True)

    out = paged_attention_prefill(q, kc, vc, cu, lens, tables, scale)
    err = rel_err(out.view(batch, seqlen, hq, d).transpose(1, 2), sdpa())
    flops = 4 * batch * hq * d * seqlen * seqlen / 2  # QK^T and PV, causal half
    ms, base_ms = bench(lambda: paged_attention_prefill(q, kc, vc, cu, lens, tables, scale)), bench(sdpa)
    note = f"TFLOP/s (not GB/s), rel err {err:.1e} vs SDPA (dense)"
    rows.append(
        ("paged_attention_prefill", f"B{batch}x{seqlen} causal 32/8x128 bf16", ms, base_ms, flops / ms / 1e9, note)
    )


def sampling(rows: list[Row]) -> None:
    from kernels.top_k_top_p_min_p_mask import top_k_top_p_min_p_mask_reference
    from kernels.top_k_top_p_min_p_mask import top_k_top_p_min_p_mask_triton as top_k_top_p_min_p_mask

    batch = 4 if SMOKE else 64
    for vocab in SIZES["vocab"]:
        logits = torch.randn(batch, vocab, device=DEV) * 3
        top_k = torch.randint(0, 100, (batch,), device=DEV)
        top_p = torch.rand(batch, device=DEV) * 0.5 + 0.5
        min_p = torch.zeros(batch, device=DEV)
        args = (logits, top_k, top_p, min_p)
        ours, ref = top_k_top_p_min_p_mask(*args), top_k_top_p_min_p_mask_reference(*args)
        differ = torch.isfinite(ours) != torch.isfinite(ref)
        rows_differ = int(differ.any(-1).sum())  # only at a top-p edge within float rounding (see the test)
        ms = bench(lambda a=args: top_k_top_p_min_p_mask(*a))
        base_ms = bench(lambda a=args: top_k_top_p_min_p_mask_reference(*a))
        rows.append(("top_k_top_p_min_p_mask", f"{batch}x{vocab} fp32", ms, base_ms, logits.nbytes * 2 / ms / 1e6,
                     f"{rows_differ} rows differ from reference; baseline sorts"))  # fmt: skip


def lora(rows: list[Row]) -> None:
    cases, k, n, rank = SIZES["lora"]  # Llama-8B hidden -> fused qkv width, rank 16
    for tokens, adapters in cases:
        _lora_case(rows, tokens, adapters, k, n, rank)


def _lora_case(rows: list[Row], tokens: int, adapters: int, k: int, n: int, rank: int) -> None:
    from kernels.lora import (
        LoraSegments,
        lora_expand_reference,
        lora_expand_triton,
        lora_shrink_reference,
        lora_shrink_triton,
    )

    slots = [t * adapters // tokens for t in range(tokens)]  # grouped by adapter, as the engine orders them
    seg = LoraSegments.from_token_slots(slots, DEV)
    ranks, scales = [rank] * adapters, [0.5] * adapters
    ranks_t = torch.tensor(ranks, dtype=torch.int32, device=DEV)
    scales_t = torch.tensor(scales, dtype=torch.float32, device=DEV)
    x = torch.randn(tokens, k, device=DEV, dtype=BF16)
    a = torch.randn(adapters, rank, k, device=DEV, dtype=BF16) * 0.02
    b = torch.randn(adapters, n, rank, device=DEV, dtype=BF16) * 0.02
    v = lora_shrink_triton(x, a, seg, ranks_t)
    err = rel_err(v, lora_shrink_reference(x, a, seg, ranks))
    shape = f"{tokens} tok, {adapters} adapters, {k}->r{rank}->{n} bf16"
    rows.append(_gbps("lora_shrink", shape, x.nbytes + a.nbytes + v.nbytes,
                      lambda: lora_shrink_triton(x, a, seg, ranks_t),
                      lambda: lora_shrink_reference(x, a, seg, ranks), err))  # fmt: skip
    y = torch.randn(tokens, n, device=DEV, dtype=BF16)
    y_ref = y.clone()
    lora_expand_triton(v, b, seg, ranks_t, scales_t, y)
    lora_expand_reference(v, b, seg, ranks, scales, y_ref)
    rows.append(_gbps("lora_expand", shape, v.nbytes + b.nbytes + 2 * y.nbytes,
                      lambda: lora_expand_triton(v, b, seg, ranks_t, scales_t, y),
                      lambda: lora_expand_reference(v, b, seg, ranks, scales, y), rel_err(y, y_ref)))  # fmt: skip


def main() -> int:
    if SMOKE:
        os.environ["TRITON_INTERPRET"] = "1"  # before triton decorates any kernel
        import triton  # noqa: F401  (imported before kernels, so the ops define their Triton kernels on this CPU)
    elif not torch.cuda.is_available():
        print("bench/kernels.py: no CUDA device here; the Triton kernels are benchmarked on a GPU only.")
        return 0
    torch.manual_seed(0)
    copy_gbps = copy_bandwidth()
    name = "cpu (smoke run, interpreter)" if SMOKE else torch.cuda.get_device_name(0)
    print(f"device {name}: device-to-device copy {copy_gbps:.0f} GB/s")
    rows: list[Row] = []
    for part in (elementwise, decode, prefill, sampling, lora):
        try:
            part(rows)
        except Exception as exc:  # one broken kernel must not hide the others' figures
            rows.append((part.__name__, "-", float("nan"), float("nan"), float("nan"), f"FAILED: {exc!r}"[:200]))
        if not SMOKE:
            torch.cuda.empty_cache()
    lines = [
        f"Copy bandwidth (measured, read+write): **{copy_gbps:.0f} GB/s**. Triton vs baseline, median ms.",
        "",
        "| op | shape | triton ms | baseline ms | speedup | achieved | of copy bw | note |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for op, shape, ms, base_ms, achieved, note in rows:
        tflops = "TFLOP/s" in note
        unit = f"{achieved:.1f} TFLOP/s" if tflops else f"{achieved:.0f} GB/s"
        frac = "-" if tflops else f"{100 * achieved / copy_gbps:.0f}%"
        line = f"| {op} | {shape} | {ms:.4f} | {base_ms:.4f} | {base_ms / ms:.2f}x | {unit} | {frac} | {note} |"
        print(line)
        lines.append(line)
    if not SMOKE:
        write_section("kernels", "\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
