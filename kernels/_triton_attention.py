"""Triton pieces the paged attention kernels share: the dot with the right precision, one online-softmax step over
a tile of keys gathered through the block table, and the launch-time choices (upcast under the interpreter).
Imports triton at the top: only the ops' Triton builders import this module, so CPU processes never load it."""

import os

import torch
import triton
import triton.language as tl

LOG2E = 1.4426950408889634


def interpreting() -> bool:
    return os.environ.get("TRITON_INTERPRET") == "1"


def dot_mode(dtype: torch.dtype) -> tuple[bool, bool]:
    """(UPCAST, IEEE). The interpreter computes 16-bit dots wrongly, so there 16-bit tiles are upcast to fp32.
    fp32 inputs use IEEE fp32 dots (not TF32) so fp32 results match the reference to ~1e-5."""
    if dtype not in (torch.float32, torch.float16, torch.bfloat16):
        raise ValueError(f"paged attention supports fp32, fp16 and bf16, got {dtype}")
    return interpreting() and dtype != torch.float32, dtype == torch.float32 or interpreting()


@triton.jit
def _dot(a, b, IEEE: tl.constexpr):
    if IEEE:
        return tl.dot(a, b, input_precision="ieee")
    else:
        return tl.dot(a, b)


@triton.jit
def _attend_tile(
    q, m_i, l_i, acc, kc_ptr, vc_ptr, bt_row_ptr, n, key_ok, kvh, scale_log2, soft_cap_log2,
    stride_kb, stride_kt, stride_kh, stride_vb, stride_vt, stride_vh, block_size, dims, dmask,
    UPCAST: tl.constexpr, IEEE: tl.constexpr, SOFT_CAP: tl.constexpr,
):  # fmt: skip
    # q: [M, D]; n: [N] key positions; key_ok: [M, N] (causal, length and window mask). Scores are scaled by
    # scale·log2(e) after the fp32-accumulated dot (exp2 is the fast path). SOFT_CAP: c·tanh(s / c) in the same
    # log2 domain (soft_cap_log2 = c·log2(e)), tanh(x) = 1 - 2 / (exp(2x) + 1) (saturates cleanly at ±1).
    # Keys are gathered through the block table, so any block_size works; offsets are int64 (big caches).
    col_ok = tl.max(key_ok.to(tl.int32), 0) > 0  # [N] keys any row needs; the others are never read
    blk = tl.load(bt_row_ptr + n // block_size, mask=col_ok, other=0).to(tl.int64)
    off = (n % block_size).to(tl.int64)
    k_off = blk * stride_kb + off * stride_kt + kvh * stride_kh  # [N]
    v_off = blk * stride_vb + off * stride_vt + kvh * stride_vh
    k = tl.load(kc_ptr + k_off[None, :] + dims[:, None], mask=col_ok[None, :] & dmask[:, None], other=0.0)  # [D, N]
    v = tl.load(vc_ptr + v_off[:, None] + dims[None, :], mask=col_ok[:, None] & dmask[None, :], other=0.0)  # [N, D]
    if UPCAST:
        k = k.to(tl.float32)
        v = v.to(tl.float32)
    s = _dot(q, k, IEEE) * scale_log2  # [M, N], log2 domain
    if SOFT_CAP:
        # x = s / soft_cap_log2; exp(2x) = exp2(2x·log2(e))
        s = soft_cap_log2 * (1.0 - 2.0 / (tl.exp2(s * (2.0 * 1.4426950408889634 / soft_cap_log2)) + 1.0))
    s = tl.where(key_ok, s, float("-inf"))
    m_new = tl.maximum(m_i, tl.max(s, 1))
    p = tl.exp2(s - m_new[:, None])
    alpha = tl.exp2(m_i - m_new)
    l_i = l_i * alpha + tl.sum(p, 1)
    acc = acc * alpha[:, None] + _dot(p.to(v.dtype), v, IEEE)
    return m_new, l_i, acc
