"""LayerNorm with bias, and fused residual-add + LayerNorm (BERT's post-norm: `LayerNorm(x + residual)`).

Triton: one program per row, the whole row in registers, statistics in fp32. Bandwidth-bound: layer_norm moves
2·T·H elements, add_layer_norm 3·T·H (read x, residual; write out). CPU: torch's layer_norm kernel on the (rounded)
sum, which is the reference for fp32; for bf16/fp16 the reference's fp32 statistics.
"""

import torch
import torch.nn.functional as F

from kernels import _dispatch
from kernels._dispatch import Backend

_MAX_FUSED = 65536  # a row up to this many elements stays in one tile

# -- Triton (defined only where triton can run: kernels/_dispatch.py TRITON) ------------------------------------

if _dispatch.TRITON:
    import triton
    import triton.language as tl

    @triton.jit
    def _layer_norm_kernel(
        x_ptr, res_ptr, w_ptr, b_ptr, out_ptr, stride_x, stride_res, stride_out, n_cols, eps,
        HAS_RESIDUAL: tl.constexpr, BLOCK: tl.constexpr,
    ):  # fmt: skip
        row = tl.program_id(0).to(tl.int64)
        cols = tl.arange(0, BLOCK)
        mask = cols < n_cols
        x = tl.load(x_ptr + row * stride_x + cols, mask=mask, other=0.0)
        if HAS_RESIDUAL:
            r = tl.load(res_ptr + row * stride_res + cols, mask=mask, other=0.0)
            x = (x.to(tl.float32) + r.to(tl.float32)).to(x.dtype)  # rounded to x's dtype, like the reference
        xf = x.to(tl.float32)
        mean = tl.sum(xf, axis=0) / n_cols
        centered = tl.where(mask, xf - mean, 0.0)
        rstd = 1.0 / tl.sqrt(tl.sum(centered * centered, axis=0) / n_cols + eps)
        w = tl.load(w_ptr + cols, mask=mask, other=0.0).to(tl.float32)
        b = tl.load(b_ptr + cols, mask=mask, other=0.0).to(tl.float32)
        tl.store(out_ptr + row * stride_out + cols, (centered * rstd * w + b).to(out_ptr.dtype.element_ty), mask=mask)


def _check(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, residual: torch.Tensor | None) -> None:
    if x.dim() != 2 or x.stride(-1) != 1:
        raise ValueError(f"layer_norm expects a [T, H] tensor with contiguous rows, got {tuple(x.shape)}")
    if weight.shape != (x.shape[1],) or bias.shape != (x.shape[1],):
        raise ValueError(f"weight/bias shapes {tuple(weight.shape)}/{tuple(bias.shape)} do not match hidden size "
                         f"{x.shape[1]}")
    if x.shape[1] > _MAX_FUSED:
        raise ValueError(f"hidden size {x.shape[1]} exceeds the fused kernel's limit {_MAX_FUSED}")
    if residual is not None and (residual.shape != x.shape or residual.stride(-1) != 1):
        raise ValueError(f"residual shape {tuple(residual.shape)} does not match x {tuple(x.shape)}")


def _launch(x: torch.Tensor, residual: torch.Tensor | None, weight: torch.Tensor, bias: torch.Tensor,
            eps: float) -> torch.Tensor:
    _check(x, weight, bias, residual)
    out = torch.empty_like(x, memory_format=torch.contiguous_format)
    if x.shape[0] == 0:
        return out
    block = triton.next_power_of_2(x.shape[1])
    res = residual if residual is not None else x
    _layer_norm_kernel[(x.shape[0],)](
        x, res, weight, bias, out, x.stride(0), res.stride(0), out.stride(0), x.shape[1], eps,
        HAS_RESIDUAL=residual is not None, BLOCK=block, num_warps=min(16, max(4, block // 512)),
    )  # fmt: skip
    return out


def layer_norm_triton(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, eps: float) -> torch.Tensor:
    # x: [T, H] -> [T, H] in x's dtype
    return _launch(x, None, weight, bias, eps)


def add_layer_norm_triton(x: torch.Tensor, residual: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor,
                          eps: float) -> torch.Tensor:
    # x, residual: [T, H] -> layer_norm(x + residual) [T, H] in x's dtype
    return _launch(x, residual, weight, bias, eps)


# -- torch reference ---------------------------------------------------------------------------------------------


def layer_norm_reference(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, eps: float) -> torch.Tensor:
    # x: [T, H] -> [T, H]; statistics in fp32, returned in x's dtype
    return F.layer_norm(x.float(), (x.shape[-1],), weight.float(), bias.float(), eps).to(x.dtype)


def add_layer_norm_reference(x: torch.Tensor, residual: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor,
                             eps: float) -> torch.Tensor:
    summed = (x.float() + residual.float()).to(x.dtype)
    return layer_norm_reference(summed, weight, bias, eps)


# -- CPU ---------------------------------------------------------------------------------------------------------


def add_layer_norm_cpu(x: torch.Tensor, residual: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor,
                       eps: float) -> torch.Tensor:
    # fp32 (the CPU encoder's dtype): the reference without its two dtype round trips
    if x.dtype != torch.float32:
        return add_layer_norm_reference(x, residual, weight, bias, eps)
    return F.layer_norm(x + residual, (x.shape[-1],), weight, bias, eps)


# -- dispatch ----------------------------------------------------------------------------------------------------


def layer_norm(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, eps: float) -> torch.Tensor:
    if _dispatch.backend(x) is Backend.TRITON:
        return layer_norm_triton(x, weight, bias, eps)
    return layer_norm_reference(x, weight, bias, eps)


def add_layer_norm(x: torch.Tensor, residual: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor,
                   eps: float) -> torch.Tensor:
    backend = _dispatch.backend(x)
    if backend is Backend.TRITON:
        return add_layer_norm_triton(x, residual, weight, bias, eps)
    if backend is Backend.CPU:
        return add_layer_norm_cpu(x, residual, weight, bias, eps)
    return add_layer_norm_reference(x, residual, weight, bias, eps)
