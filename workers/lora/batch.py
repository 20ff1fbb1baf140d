"""The per-step LoRA hook the model calls after each projection (workers.models.layers.LoraHook)."""

from __future__ import annotations

import torch

from kernels.lora import LoraSegments, SlotParams, lora_expand, lora_shrink


class LoraBatch:
    """Adds each token's adapter delta to a projection's output: y[:, slice] += x·Aᵀ·Bᵀ·scale, grouped by adapter, with
    kernels/lora.py's segment kernels (the Triton route; their torch reference elsewhere, which LoraManager uses only
    when asked for `fused=False`: the CPU's own route is workers/lora/fused_batch.py).

    `order` (or None when the step's tokens are already grouped by adapter) permutes tokens so each adapter's
    tokens are contiguous; the delta is scattered back to the original token order."""

    def __init__(
        self, arenas: dict[str, tuple[torch.Tensor, torch.Tensor]], params: dict[str, SlotParams],
        seg: LoraSegments, order: torch.Tensor | None, dims: dict[str, tuple[int, int]],
    ) -> None:  # fmt: skip
        self.arenas = arenas  # proj -> (A [L, S, R, in], B [L, S, out, R])
        self.params = params
        self.seg = seg
        self.order = order
        self.dims = dims

    def add_delta(self, layer_idx: int, names: tuple[str, ...], x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        # x [T, in], y [T, sum(out of names)] (a merged projection holds its slices in `names` order)
        xs: torch.Tensor | None = None
        start = 0
        for name in names:
            size = self.dims[name][1]
            arena = self.arenas.get(name)
            if arena is not None and any(self.params[name].ranks):
                if xs is None:
                    xs = x if self.order is None else x.index_select(0, self.order)
                a, b = arena[0][layer_idx], arena[1][layer_idx]
                v = lora_shrink(xs, a, self.seg, self.params[name])  # [T, R_max] fp32
                if self.order is None:
                    lora_expand(v, b, self.seg, self.params[name], y[:, start : start + size])
                else:
                    delta = torch.zeros(x.shape[0], size, dtype=y.dtype, device=y.device)
                    lora_expand(v, b, self.seg, self.params[name], delta)
                    y[:, start : start + size].index_add_(0, self.order, delta)
            start += size
        return y
