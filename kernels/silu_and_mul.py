"""SiLU-and-mul (SwiGLU's activation): out = silu(gate) * up over a [T, 2I] (gate | up) input.

Triton: bandwidth-bound, reads 2·T·I elements, writes T·I; grid (T, cdiv(I, BLOCK)). CPU: the reference's arithmetic with fewer copies.
"""

import torch

from kernels import _dispatch
from kernels._dispatch import Backend

if _dispatch.TRITON:
    import triton
    import triton.language as tl

    @triton.jit
    def _silu_and_mul_kernel(x_ptr, out_ptr, stride_x, stride_out, n_inter, BLOCK: tl.constexpr):
        row = tl.program_id(0).to(tl.int64)
        cols = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
        mask = cols < n_inter
        gate = tl.load(x_ptr + row * stride_x + cols, mask=mask, other=0.0).to(tl.float32)
        up = tl.load(x_ptr + row * stride_x + n_inter + cols, mask=mask, other=0.0).to(tl.float32)
        out = gate / (1.0 + tl.exp(-gate)) * up
        tl.store(out_ptr + row * stride_out + cols, out.to(out_ptr.dtype.element_ty), mask=mask)


def silu_and_mul_triton(x: torch.Tensor) -> torch.Tensor:
    # x: [T, 2I] -> [T, I] in x's dtype
    if x.dim() != 2 or x.shape[1] % 2 != 0 or x.stride(-1) != 1:
        raise ValueError(f"silu_and_mul expects [T, 2I] with contiguous rows, got {tuple(x.shape)}")
    n_tokens, n_inter = x.shape[0], x.shape[1] // 2
    out = torch.empty(n_tokens, n_inter, dtype=x.dtype, device=x.device)
    if n_tokens == 0 or n_inter == 0:
        return out
    block = min(1024, triton.next_power_of_2(n_inter))
    grid = (n_tokens, triton.cdiv(n_inter, block))
    _silu_and_mul_kernel[grid](x, out, x.stride(0), out.stride(0), n_inter, BLOCK=block, num_warps=4)
    return out


def silu_and_mul_reference(x: torch.Tensor) -> torch.Tensor:
    # x: [T, 2I] (gate | up) -> [T, I]
    gate, up = x.chunk(2, dim=-1)
    return (torch.nn.functional.silu(gate.float()) * up.float()).to(x.dtype)


def silu_and_mul_cpu(x: torch.Tensor) -> torch.Tensor:
    # the reference's arithmetic (fp32, one rounding at the end) with fewer copies: up is promoted inside mul_
    gate, up = x.chunk(2, dim=-1)
    if x.dtype == torch.float32:
        return torch.nn.functional.silu(gate).mul_(up)
    return torch.nn.functional.silu(gate.float()).mul_(up).to(x.dtype)


def silu_and_mul(x: torch.Tensor) -> torch.Tensor:
    match _dispatch.backend(x):
        case Backend.TRITON:
            return silu_and_mul_triton(x)
        case Backend.CPU:
            return silu_and_mul_cpu(x)
        case _:
            return silu_and_mul_reference(x)
