"""Rotary embedding (rotate-half convention) applied in place to q and k, and the cos/sin table it reads.

Triton: one program per token rotates all of its q heads and k heads; cos/sin for the token's position are read
once. q and k may be strided views of a fused qkv projection as long as the head dim is contiguous.
CPU: the cos/sin rows of a step gathered once (kernels/_step_memo.py), q and k of a fused qkv rotated as one view.
"""

import torch

from kernels import _dispatch
from kernels._dispatch import Backend
from kernels._step_memo import memo


def rotary_cos_sin(max_positions: int, head_dim: int, theta: float, device=None) -> torch.Tensor:
    # [max_positions, head_dim] fp32: first half cos, second half sin. A one-off table build at load time: no kernel
    inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.float64, device=device) / head_dim))
    freqs = torch.outer(torch.arange(max_positions, dtype=torch.float64, device=device), inv_freq)
    return torch.cat([freqs.cos(), freqs.sin()], dim=-1).float()


# -- Triton (defined only where triton can run: kernels/_dispatch.py TRITON) ------------------------------------


if _dispatch.TRITON:
    import triton
    import triton.language as tl

    @triton.jit
    def _rotate_heads(t_ptr, token, stride_t, stride_h, n_heads, cos, sin, half,
                      BLOCK_H: tl.constexpr, BLOCK_HALF: tl.constexpr):  # fmt: skip
        heads = tl.arange(0, BLOCK_H)[:, None]
        dims = tl.arange(0, BLOCK_HALF)[None, :]
        mask = (heads < n_heads) & (dims < half)
        p1 = t_ptr + token * stride_t + heads * stride_h + dims
        x1 = tl.load(p1, mask=mask, other=0.0).to(tl.float32)
        x2 = tl.load(p1 + half, mask=mask, other=0.0).to(tl.float32)
        tl.store(p1, (x1 * cos - x2 * sin).to(t_ptr.dtype.element_ty), mask=mask)
        tl.store(p1 + half, (x2 * cos + x1 * sin).to(t_ptr.dtype.element_ty), mask=mask)

    @triton.jit
    def _rotary_kernel(
        q_ptr, k_ptr, pos_ptr, cs_ptr,
        stride_qt, stride_qh, stride_kt, stride_kh, stride_cs,
        n_q_heads, n_k_heads, half,
        BLOCK_HQ: tl.constexpr, BLOCK_HK: tl.constexpr, BLOCK_HALF: tl.constexpr,
    ):  # fmt: skip
        token = tl.program_id(0).to(tl.int64)
        pos = tl.load(pos_ptr + token).to(tl.int64)
        dims = tl.arange(0, BLOCK_HALF)[None, :]
        # the table is fp32 unless a model.to(dtype) converted the buffer; the math is fp32 either way
        cos = tl.load(cs_ptr + pos * stride_cs + dims, mask=dims < half, other=0.0).to(tl.float32)
        sin = tl.load(cs_ptr + pos * stride_cs + half + dims, mask=dims < half, other=0.0).to(tl.float32)
        _rotate_heads(q_ptr, token, stride_qt, stride_qh, n_q_heads, cos, sin, half, BLOCK_HQ, BLOCK_HALF)
        _rotate_heads(k_ptr, token, stride_kt, stride_kh, n_k_heads, cos, sin, half, BLOCK_HK, BLOCK_HALF)


def apply_rotary_triton(q: torch.Tensor, k: torch.Tensor, positions: torch.Tensor, cos_sin: torch.Tensor) -> None:
    # in place; q: [T, Hq, D], k: [T, Hk, D], positions: [T] int, cos_sin: [P, D] (cos | sin), fp32 from rotary_cos_sin
    if q.dim() != 3 or k.dim() != 3 or q.shape[0] != k.shape[0] or q.shape[2] != k.shape[2]:
        raise ValueError(f"apply_rotary expects q [T, Hq, D] and k [T, Hk, D], got {tuple(q.shape)}, {tuple(k.shape)}")
    head_dim = q.shape[2]
    if head_dim % 2 or q.stride(2) != 1 or k.stride(2) != 1:
        raise ValueError("apply_rotary needs an even head dim that is contiguous in memory")
    if positions.shape != (q.shape[0],) or cos_sin.dim() != 2 or cos_sin.shape[1] != head_dim:
        raise ValueError(f"positions {tuple(positions.shape)} / cos_sin {tuple(cos_sin.shape)} do not match q")
    if cos_sin.stride(1) != 1 or not cos_sin.is_floating_point():
        raise ValueError("cos_sin must be a row-contiguous float table from rotary_cos_sin")
    if q.shape[0] == 0:
        return
    half = head_dim // 2
    _rotary_kernel[(q.shape[0],)](
        q, k, positions, cos_sin,
        q.stride(0), q.stride(1), k.stride(0), k.stride(1), cos_sin.stride(0),
        q.shape[1], k.shape[1], half,
        BLOCK_HQ=triton.next_power_of_2(q.shape[1]), BLOCK_HK=triton.next_power_of_2(k.shape[1]),
        BLOCK_HALF=triton.next_power_of_2(half), num_warps=4,
    )  # fmt: skip


# -- torch reference ---------------------------------------------------------------------------------------------


def apply_rotary_reference(q: torch.Tensor, k: torch.Tensor, positions: torch.Tensor, cos_sin: torch.Tensor) -> None:
    # in place; q: [T, Hq, D], k: [T, Hk, D], positions: [T] int, cos_sin: [P, D]
    half = q.shape[-1] // 2
    cs = cos_sin[positions.long()]
    cos = cs[:, None, :half]
    sin = cs[:, None, half:]
    for t in (q, k):
        x1 = t[..., :half].float()
        x2 = t[..., half:].float()
        o1 = x1 * cos - x2 * sin
        o2 = x2 * cos + x1 * sin
        t.copy_(torch.cat([o1, o2], dim=-1).to(t.dtype))


# -- CPU ---------------------------------------------------------------------------------------------------------


def _cpu_tables(positions: torch.Tensor, cos_sin: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    # -> cos [T, 1, D] = (cos | cos) and sin [T, 1, D] = (-sin | sin), so x' = x * cos + swap_halves(x) * sin
    half = cos_sin.shape[1] // 2
    cs = cos_sin[positions.long()]
    cos, sin = cs[:, :half], cs[:, half:]
    return torch.cat([cos, cos], -1)[:, None].float(), torch.cat([-sin, sin], -1)[:, None].float()


def _joined(q: torch.Tensor, k: torch.Tensor) -> torch.Tensor | None:
    # q [T, Hq, R] and k [T, Hk, R] side by side in one row of a fused qkv projection -> one view [T, Hq + Hk, R]
    if (
        q.untyped_storage().data_ptr() == k.untyped_storage().data_ptr()
        and q.dtype == k.dtype
        and q.stride() == k.stride()
        and k.storage_offset() == q.storage_offset() + q.shape[1] * q.stride(1)
    ):
        return q.as_strided((q.shape[0], q.shape[1] + k.shape[1], q.shape[2]), q.stride())
    return None


def apply_rotary_cpu(q: torch.Tensor, k: torch.Tensor, positions: torch.Tensor, cos_sin: torch.Tensor) -> None:
    # in place, as the reference; the cos/sin rows of the step's positions are gathered once for all layers and
    # q and k of a fused projection are rotated as one tensor. fp32 arithmetic; 16-bit tensors round once at the end.
    half = q.shape[-1] // 2
    cos, sin = memo("rotary", (positions, cos_sin), half, lambda: _cpu_tables(positions, cos_sin))
    joined = _joined(q, k)
    for t in (joined,) if joined is not None else (q, k):
        x = t if t.dtype == torch.float32 else t.float()
        swapped = torch.cat([x[..., half:], x[..., :half]], dim=-1)
        if x is t:
            t.mul_(cos).addcmul_(swapped, sin)
        else:
            t.copy_(torch.addcmul(x * cos, swapped, sin))


# -- dispatch ----------------------------------------------------------------------------------------------------


def apply_rotary(q: torch.Tensor, k: torch.Tensor, positions: torch.Tensor, cos_sin: torch.Tensor) -> None:
    match _dispatch.backend(q):
        case Backend.TRITON:
            return apply_rotary_triton(q, k, positions, cos_sin)
        case Backend.CPU:
            return apply_rotary_cpu(q, k, positions, cos_sin)
        case _:
            return apply_rotary_reference(q, k, positions, cos_sin)
