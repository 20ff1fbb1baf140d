"""Multi-LoRA shrink and expand over token segments grouped by adapter (SGMV, as in Punica / S-LoRA).

A step's tokens are ordered so each adapter's tokens are contiguous; `LoraSegments` lists the runs and cuts them
into tiles of at most BLOCK_T tokens (one Triton program row each). Adapter weights live in per-slot arenas:
A as [S, R_max, K], B as [S, N, R_max]; a slot of rank r uses only A[s, :r] and B[s, :, :r], and both the torch
path and the kernels compute only those r columns, so ranks are not padded in the arithmetic.

    shrink: v[t, :r] = x[t] · A[s, :r]ᵀ                 x [T, K] -> v [T, R_max] fp32
    expand: y[t]    += v[t, :r] · B[s, :, :r]ᵀ · scale  v [T, R_max] -> y [T, N] (y may be a column slice)

On CUDA tensors the Triton kernels run (triton imported on first use); elsewhere the torch reference
(kernels/_dispatch.py decides).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from kernels import _dispatch
from kernels._dispatch import Backend

BLOCK_T = 16  # tokens per tile; tl.dot wants every dim >= 16 on sm_90


def slot_runs(token_slots: list[int]) -> list[tuple[int, int, int]]:
    """(start, end, slot) of each run of equal adjacent slots, in token order; -1 (the base model) gets no run."""
    runs: list[tuple[int, int, int]] = []
    i, n = 0, len(token_slots)
    while i < n:
        j = i + 1
        while j < n and token_slots[j] == token_slots[i]:
            j += 1
        if token_slots[i] >= 0:
            runs.append((i, j, token_slots[i]))
        i = j
    return runs


@dataclass(slots=True)
class LoraSegments:
    """Runs of tokens that share an adapter slot: (start, end, slot), in token order, no run for base tokens."""

    runs: list[tuple[int, int, int]]
    tiles: torch.Tensor  # [num_tiles, 3] int32 (start, end, slot), end - start <= BLOCK_T, on the compute device

    @classmethod
    def from_token_slots(cls, token_slots: list[int], device: torch.device | str = "cpu") -> LoraSegments:
        """Runs of equal adjacent slots (slot_runs) cut into tiles. Callers group tokens by slot first."""
        runs = slot_runs(token_slots)
        tiles = [(s, min(s + BLOCK_T, e), slot) for s0, e, slot in runs for s in range(s0, e, BLOCK_T)]
        tiles_t = torch.tensor(tiles, dtype=torch.int32).reshape(-1, 3).to(device)
        return cls(runs, tiles_t)


# -- torch reference (the CPU runs its own fused route instead: workers/lora/fused_batch.py) --------------------------


def lora_shrink_reference(x: torch.Tensor, a: torch.Tensor, seg: LoraSegments, ranks: list[int]) -> torch.Tensor:
    v = torch.zeros(x.shape[0], a.shape[1], dtype=torch.float32, device=x.device)  # [T, R_max]
    for start, end, slot in seg.runs:
        r = ranks[slot]
        if r:  # rank 0: this slot's adapter doesn't touch this projection
            v[start:end, :r] = (x[start:end] @ a[slot, :r].t()).float()
    return v


def lora_expand_reference(
    v: torch.Tensor, b: torch.Tensor, seg: LoraSegments, ranks: list[int], scales: list[float], y: torch.Tensor
) -> None:
    for start, end, slot in seg.runs:
        r = ranks[slot]
        if not r:
            continue
        delta = v[start:end, :r].to(b.dtype) @ b[slot, :, :r].t()  # [t, N]
        y[start:end] += (delta * scales[slot]).to(y.dtype)


# -- Triton (defined only where triton can run: kernels/_dispatch.py TRITON) ------------------------------------


if _dispatch.TRITON:
    import triton
    import triton.language as tl

    @triton.jit
    def _lora_shrink_kernel(
        x_ptr, a_ptr, v_ptr, tiles_ptr, ranks_ptr, K, stride_x, stride_as, stride_ar, stride_v,
        BLOCK_T: tl.constexpr, BLOCK_R: tl.constexpr, BLOCK_K: tl.constexpr, IEEE: tl.constexpr,
    ):  # fmt: skip
        tile = tl.program_id(0)
        r0 = tl.program_id(1) * BLOCK_R
        start = tl.load(tiles_ptr + tile * 3)
        end = tl.load(tiles_ptr + tile * 3 + 1)
        slot = tl.load(tiles_ptr + tile * 3 + 2)
        rank = tl.load(ranks_ptr + slot)
        if r0 >= rank:  # this slot's rank stops before this block: nothing to compute (no padding work)
            return
        t = start + tl.arange(0, BLOCK_T)
        r = r0 + tl.arange(0, BLOCK_R)
        t_mask = t < end
        r_mask = r < rank
        acc = tl.zeros((BLOCK_T, BLOCK_R), dtype=tl.float32)
        a_base = a_ptr + slot.to(tl.int64) * stride_as
        for k0 in range(0, K, BLOCK_K):
            k = k0 + tl.arange(0, BLOCK_K)
            k_mask = k < K
            xt = tl.load(
                x_ptr + t[:, None].to(tl.int64) * stride_x + k[None, :],
                mask=t_mask[:, None] & k_mask[None, :],
                other=0.0,
            ).to(tl.float32)  # [BT, BK]
            at = tl.load(
                a_base + r[None, :] * stride_ar + k[:, None], mask=r_mask[None, :] & k_mask[:, None], other=0.0
            ).to(tl.float32)  # [BK, BR]
            if IEEE:
                acc += tl.dot(xt, at, input_precision="ieee")
            else:
                acc += tl.dot(xt, at)
        tl.store(v_ptr + t[:, None].to(tl.int64) * stride_v + r[None, :], acc, mask=t_mask[:, None] & r_mask[None, :])

    @triton.jit
    def _lora_expand_kernel(
        v_ptr, b_ptr, y_ptr, tiles_ptr, ranks_ptr, scales_ptr, N, stride_v, stride_bs, stride_bn, stride_y,
        BLOCK_T: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_R: tl.constexpr, IEEE: tl.constexpr,
    ):  # fmt: skip
        tile = tl.program_id(0)
        n0 = tl.program_id(1) * BLOCK_N
        start = tl.load(tiles_ptr + tile * 3)
        end = tl.load(tiles_ptr + tile * 3 + 1)
        slot = tl.load(tiles_ptr + tile * 3 + 2)
        rank = tl.load(ranks_ptr + slot)
        scale = tl.load(scales_ptr + slot)
        t = start + tl.arange(0, BLOCK_T)
        n = n0 + tl.arange(0, BLOCK_N)
        t_mask = t < end
        n_mask = n < N
        acc = tl.zeros((BLOCK_T, BLOCK_N), dtype=tl.float32)
        b_base = b_ptr + slot.to(tl.int64) * stride_bs
        for r0 in range(0, rank, BLOCK_R):  # only this slot's rank: ranks are not padded to the max
            r = r0 + tl.arange(0, BLOCK_R)
            r_mask = r < rank
            vt = tl.load(
                v_ptr + t[:, None].to(tl.int64) * stride_v + r[None, :],
                mask=t_mask[:, None] & r_mask[None, :],
                other=0.0,
            )  # [BT, BR] fp32
            bt = tl.load(
                b_base + n[None, :].to(tl.int64) * stride_bn + r[:, None],
                mask=n_mask[None, :] & r_mask[:, None],
                other=0.0,
            ).to(tl.float32)  # [BR, BN]
            if IEEE:
                acc += tl.dot(vt, bt, input_precision="ieee")
            else:
                acc += tl.dot(vt, bt)
        y_ptrs = y_ptr + t[:, None].to(tl.int64) * stride_y + n[None, :]
        mask = t_mask[:, None] & n_mask[None, :]
        y = tl.load(y_ptrs, mask=mask, other=0.0).to(tl.float32)
        tl.store(y_ptrs, (y + acc * scale).to(y_ptr.dtype.element_ty), mask=mask)


def _ieee(dtype: torch.dtype) -> bool:
    # The kernels dot fp32 tiles (16-bit inputs upcast). On a GPU a plain fp32 tl.dot is TF32 (10-bit mantissa):
    # exact for bf16/fp16 inputs and finer than the bf16 rounding the reference applies to v before the expand,
    # but ~1e-2 off for fp32 inputs, which therefore get IEEE fp32 dots (the engine runs bf16 on GPUs).
    return dtype == torch.float32


def lora_shrink_triton(x: torch.Tensor, a: torch.Tensor, seg: LoraSegments, ranks: torch.Tensor) -> torch.Tensor:
    # x [T, K] rows contiguous; a [S, R_max, K] contiguous; ranks [S] int32 on x's device -> v [T, R_max] fp32
    if x.stride(-1) != 1 or not a.is_contiguous():
        raise ValueError("lora_shrink needs x with contiguous rows and a contiguous A arena")
    v = torch.zeros(x.shape[0], a.shape[1], dtype=torch.float32, device=x.device)
    num_tiles = seg.tiles.shape[0]
    if num_tiles == 0:
        return v
    block_r = 16
    grid = (num_tiles, -(-a.shape[1] // block_r))
    _lora_shrink_kernel[grid](
        x,
        a,
        v,
        seg.tiles,
        ranks,
        x.shape[1],
        x.stride(0),
        a.stride(0),
        a.stride(1),
        v.stride(0),
        BLOCK_T=BLOCK_T,
        BLOCK_R=block_r,
        BLOCK_K=64,
        IEEE=_ieee(x.dtype),
    )
    return v


def lora_expand_triton(
    v: torch.Tensor, b: torch.Tensor, seg: LoraSegments, ranks: torch.Tensor, scales: torch.Tensor, y: torch.Tensor
) -> None:
    # v [T, R_max] fp32; b [S, N, R_max] contiguous; y [T, N] (column slice allowed: rows strided, columns not)
    if y.stride(-1) != 1 or not b.is_contiguous():
        raise ValueError("lora_expand needs y with contiguous columns and a contiguous B arena")
    num_tiles = seg.tiles.shape[0]
    if num_tiles == 0:
        return
    block_n = 64
    grid = (num_tiles, -(-b.shape[1] // block_n))
    _lora_expand_kernel[grid](
        v,
        b,
        y,
        seg.tiles,
        ranks,
        scales,
        b.shape[1],
        v.stride(0),
        b.stride(0),
        b.stride(1),
        y.stride(0),
        BLOCK_T=BLOCK_T,
        BLOCK_N=block_n,
        BLOCK_R=16,
        IEEE=_ieee(b.dtype),
    )


# -- dispatch ----------------------------------------------------------------------------------------------------


@dataclass(slots=True)
class SlotParams:
    """Per-slot rank and scale, as host lists (torch path) and device tensors (kernels)."""

    ranks: list[int]
    scales: list[float]
    ranks_t: torch.Tensor  # [S] int32
    scales_t: torch.Tensor  # [S] float32


def lora_shrink(x: torch.Tensor, a: torch.Tensor, seg: LoraSegments, slots: SlotParams) -> torch.Tensor:
    if _dispatch.backend(x) is Backend.TRITON:
        return lora_shrink_triton(x, a, seg, slots.ranks_t)
    return lora_shrink_reference(x, a, seg, slots.ranks)


def lora_expand(v: torch.Tensor, b: torch.Tensor, seg: LoraSegments, slots: SlotParams, y: torch.Tensor) -> None:
    if _dispatch.backend(y) is Backend.TRITON:
        lora_expand_triton(v, b, seg, slots.ranks_t, slots.scales_t, y)
    else:
        lora_expand_reference(v, b, seg, slots.ranks, slots.scales, y)
