"""RMSNorm and fused residual-add + RMSNorm.

Triton: one program per row, the whole row in registers. Bandwidth-bound: rms_norm moves 2·T·H elements,
add_rms_norm 4·T·H (read x, residual; write out, sum). CPU: torch's fused `F.rms_norm` (bit-identical to the
reference in fp32 and bf16, and one op instead of seven per norm in the decode step).
"""

from typing import Any

import torch
import torch.nn.functional as F

from kernels import _dispatch
from kernels._dispatch import Backend

# A row up to this many elements stays in one tile (Llama-70B's hidden size is 8192).
_MAX_FUSED = 65536


# -- Triton (defined only where triton can run: kernels/_dispatch.py TRITON) ------------------------------------


if _dispatch.TRITON:
    import triton
    import triton.language as tl

    @triton.jit
    def _rms_norm_kernel(
        x_ptr, res_ptr, w_ptr, out_ptr, sum_ptr, stride_x, stride_res, stride_out, stride_sum, n_cols, eps,
        HAS_RESIDUAL: tl.constexpr, BLOCK: tl.constexpr,
    ):  # fmt: skip
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


def _launch(x: torch.Tensor, residual: torch.Tensor | None, weight: torch.Tensor, eps: float) -> tuple[Any, Any]:
    out = torch.empty_like(x, memory_format=torch.contiguous_format)
    summed = torch.empty_like(x, memory_format=torch.contiguous_format) if residual is not None else out
    if x.shape[0] == 0:
        return out, summed
    block = triton.next_power_of_2(x.shape[1])
    res = residual if residual is not None else x
    _rms_norm_kernel[(x.shape[0],)](
        x, res, weight, out, summed, x.stride(0), res.stride(0), out.stride(0), summed.stride(0), x.shape[1], eps,
        HAS_RESIDUAL=residual is not None, BLOCK=block,
        num_warps=min(16, max(4, block // 512)),  # 4 warps up to 2k elements, then one per 512, at most 16
    )  # fmt: skip
    return out, summed


def rms_norm_triton(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    # x: [T, H] -> [T, H] in x's dtype
    _check(x, weight)
    return _launch(x, None, weight, eps)[0]


def add_rms_norm_triton(
    x: torch.Tensor, residual: torch.Tensor, weight: torch.Tensor, eps: float
) -> tuple[torch.Tensor, torch.Tensor]:
    # x, residual: [T, H] -> (rms_norm(x + residual) [T, H], x + residual [T, H]), both in x's dtype
    _check(x, weight)
    if residual.shape != x.shape or residual.stride(-1) != 1:
        raise ValueError(f"residual shape {tuple(residual.shape)} does not match x {tuple(x.shape)}")
    return _launch(x, residual, weight, eps)


# -- torch reference ---------------------------------------------------------------------------------------------


def rms_norm_reference(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    # x: [T, H] -> [T, H]; computed in fp32, returned in x's dtype
    xf = x.float()
    out = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + eps)
    return (out * weight.float()).to(x.dtype)


def add_rms_norm_reference(
    x: torch.Tensor, residual: torch.Tensor, weight: torch.Tensor, eps: float
) -> tuple[torch.Tensor, torch.Tensor]:
    # returns (rms_norm(x + residual), x + residual); the sum is kept in x's dtype like the fused kernel
    summed = (x.float() + residual.float()).to(x.dtype)
    return rms_norm_reference(summed, weight, eps), summed


# -- CPU ---------------------------------------------------------------------------------------------------------


def rms_norm_cpu(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    if weight.dtype != x.dtype:  # F.rms_norm wants one dtype; the reference upcasts both
        return rms_norm_reference(x, weight, eps)
    return F.rms_norm(x, (x.shape[-1],), weight, eps)


def add_rms_norm_cpu(
    x: torch.Tensor, residual: torch.Tensor, weight: torch.Tensor, eps: float
) -> tuple[torch.Tensor, torch.Tensor]:
    summed = x + residual  # rounded to x's dtype, as the reference does
    return rms_norm_cpu(summed, weight, eps), summed


# -- dispatch ----------------------------------------------------------------------------------------------------


def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    match _dispatch.backend(x):
        case Backend.TRITON:
            return rms_norm_triton(x, weight, eps)
        case Backend.CPU:
            return rms_norm_cpu(x, weight, eps)
        case _:
            return rms_norm_reference(x, weight, eps)


def add_rms_norm(
    x: torch.Tensor, residual: torch.Tensor, weight: torch.Tensor, eps: float
) -> tuple[torch.Tensor, torch.Tensor]:
    match _dispatch.backend(x):
        case Backend.TRITON:
            return add_rms_norm_triton(x, residual, weight, eps)
        case Backend.CPU if x.dtype == residual.dtype:
            return add_rms_norm_cpu(x, residual, weight, eps)
        case _:
            return add_rms_norm_reference(x, residual, weight, eps)
