"""RMSNorm and fused residual-add + RMSNorm: one program per row, the whole row in registers.

Bandwidth-bound: rms_norm moves 2·T·H elements, add_rms_norm 4·T·H (read x, residual; write out, sum).
"""

import torch
import triton
import triton.language as tl

# A row up to this many elements stays in one tile (Llama-70B's hidden size is 8192).
_MAX_FUSED = 65536


@triton.jit
def _rms_norm_kernel(
    x_ptr,
    res_ptr,
    w_ptr,
    out_ptr,
    sum_ptr,
    stride_x,
    stride_res,
    stride_out,
    stride_sum,
    n_cols,
    eps,
    HAS_RESIDUAL: tl.constexpr,
    BLOCK: tl.constexpr,
):
    row = tl.program_id(0).to(tl.int64)
    cols = tl.arange(0, BLOCK)
    mask = cols < n_cols
    x = tl.load(x_ptr + row * stride_x + cols, mask=mask, other=0.0)
    if HAS_RESIDUAL:
        r = tl.load(res_ptr + row * stride_res + cols, mask=mask, other=0.0)
        # the sum is rounded to x's dtype before the norm, exactly like the unfused reference
        x = (x.to(tl.float32) + r.to(tl.float32)).to(x.dtype)
        tl.store(sum_ptr + row * stride_sum + cols, x, mask=mask)
    xf = x.to(tl.float32)
    rstd = 1.0 / tl.sqrt(tl.sum(xf * xf, axis=0) / n_cols + eps)
    w = tl.load(w_ptr + cols, mask=mask, other=0.0).to(tl.float32)
    tl.store(out_ptr + row * stride_out + cols, (xf * rstd * w).to(out_ptr.dtype.element_ty), mask=mask)


def _check(x: torch.Tensor, weight: torch.Tensor) -> None:
    if x.dim() != 2 or x.stride(-1) != 1:
        raise ValueError(f"rms_norm expects a [T, H] tensor with contiguous rows, got {tuple(x.shape)}")
    if weight.shape != (x.shape[1],):
        raise ValueError(f"weight shape {tuple(weight.shape)} does not match hidden size {x.shape[1]}")
    if x.shape[1] > _MAX_FUSED:
        raise ValueError(f"hidden size {x.shape[1]} exceeds the fused kernel's limit {_MAX_FUSED}")


def _num_warps(block: int) -> int:
    # 4 warps up to 2k elements, then one warp per 512 elements, capped at 16
    return min(16, max(4, block // 512))


def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    # x: [T, H] -> [T, H] in x's dtype
    _check(x, weight)
    out = torch.empty_like(x, memory_format=torch.contiguous_format)
    if x.shape[0] == 0:
        return out
    block = triton.next_power_of_2(x.shape[1])
    _rms_norm_kernel[(x.shape[0],)](
        x, x, weight, out, out, x.stride(0), 0, out.stride(0), 0, x.shape[1], eps,
        HAS_RESIDUAL=False, BLOCK=block, num_warps=_num_warps(block),
    )  # fmt: skip
    return out


def add_rms_norm(
    x: torch.Tensor, residual: torch.Tensor, weight: torch.Tensor, eps: float
) -> tuple[torch.Tensor, torch.Tensor]:
    # x, residual: [T, H] -> (rms_norm(x + residual) [T, H], x + residual [T, H]), both in x's dtype
    _check(x, weight)
    if residual.shape != x.shape or residual.stride(-1) != 1:
        raise ValueError(f"residual shape {tuple(residual.shape)} does not match x {tuple(x.shape)}")
    out = torch.empty_like(x, memory_format=torch.contiguous_format)
    summed = torch.empty_like(x, memory_format=torch.contiguous_format)
    if x.shape[0] == 0:
        return out, summed
    block = triton.next_power_of_2(x.shape[1])
    _rms_norm_kernel[(x.shape[0],)](
        x, residual, weight, out, summed, x.stride(0), residual.stride(0), out.stride(0), summed.stride(0),
        x.shape[1], eps, HAS_RESIDUAL=True, BLOCK=block, num_warps=_num_warps(block),
    )  # fmt: skip
    return out, summed
