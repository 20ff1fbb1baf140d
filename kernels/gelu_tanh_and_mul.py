"""GeLU-tanh-and-mul (GeGLU, Gemma's MLP activation): out = gelu_tanh(gate) * up over a [T, 2I] (gate | up) input,
gelu_tanh(x) = 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³))) (torch's approximate="tanh").

Triton: bandwidth-bound like silu_and_mul (reads 2·T·I elements, writes T·I); grid (T, cdiv(I, BLOCK)).
CPU: the torch reference.
"""

import torch

from kernels import _dispatch
from kernels._dispatch import Backend

if _dispatch.TRITON:
    import triton
    import triton.language as tl

    @triton.jit
    def _gelu_tanh_and_mul_kernel(x_ptr, out_ptr, stride_x, stride_out, n_inter, BLOCK: tl.constexpr):
        row = tl.program_id(0).to(tl.int64)
        cols = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
        mask = cols < n_inter
        gate = tl.load(x_ptr + row * stride_x + cols, mask=mask, other=0.0).to(tl.float32)
        up = tl.load(x_ptr + row * stride_x + n_inter + cols, mask=mask, other=0.0).to(tl.float32)
        inner = 0.7978845608028654 * (gate + 0.044715 * gate * gate * gate)  # √(2/π)·(x + 0.044715·x³)
        tanh = 1.0 - 2.0 / (tl.exp(2.0 * inner) + 1.0)  # saturates cleanly at ±1
        out = 0.5 * gate * (1.0 + tanh) * up
        tl.store(out_ptr + row * stride_out + cols, out.to(out_ptr.dtype.element_ty), mask=mask)


def gelu_tanh_and_mul_triton(x: torch.Tensor) -> torch.Tensor:
    # x: [T, 2I] -> [T, I] in x's dtype
    if x.dim() != 2 or x.shape[1] % 2 != 0 or x.stride(-1) != 1:
        raise ValueError(f"gelu_tanh_and_mul expects [T, 2I] with contiguous rows, got {tuple(x.shape)}")
    n_tokens, n_inter = x.shape[0], x.shape[1] // 2
    out = torch.empty(n_tokens, n_inter, dtype=x.dtype, device=x.device)
    if n_tokens == 0 or n_inter == 0:
        return out
    block = min(1024, triton.next_power_of_2(n_inter))
    grid = (n_tokens, triton.cdiv(n_inter, block))
    _gelu_tanh_and_mul_kernel[grid](x, out, x.stride(0), out.stride(0), n_inter, BLOCK=block, num_warps=4)
    return out


def gelu_tanh_and_mul_reference(x: torch.Tensor) -> torch.Tensor:
    # x: [T, 2I] (gate | up) -> [T, I]; in fp32 like transformers' GELUTanh on fp32 weights
    gate, up = x.chunk(2, dim=-1)
    return (torch.nn.functional.gelu(gate.float(), approximate="tanh") * up.float()).to(x.dtype)


def gelu_tanh_and_mul(x: torch.Tensor) -> torch.Tensor:
    if _dispatch.backend(x) is Backend.TRITON:
        return gelu_tanh_and_mul_triton(x)
    return gelu_tanh_and_mul_reference(x)
