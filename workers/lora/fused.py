"""Device slots of the CPU (torch) route of multi-LoRA, laid out per module so a merged projection is one shrink.

A module is what one `Linear` computes: its `names`, e.g. (q_proj, k_proj, v_proj), (o_proj,), (gate_proj, up_proj),
(down_proj,). Per module and layer:

    A   [S, k·R, in]    slot s holds scale·A of each slice the adapter targets, packed in slice order: rows
                        [off_i, off_i + r_i); a slice the adapter leaves alone (rank 0) takes no rows
    B   [S, out_i, R]   per slice, as the adapter holds it (a slot fills with plain copies; the matmuls read Bᵀ
                        views: a transposed copy made filling a slot 2x slower, 4.9 vs 2.3 ms for 18.6 MiB)

so x·A[s, :Σr]ᵀ is the shrink of every slice at once and y[:, cols_i] += v[:, off_i : off_i + r_i]·B[s, :, :r_i]ᵀ
the expand of slice i, scale included. Rows past a slot's Σr (or columns past r_i in B) are never read: they may hold a
previous, wider adapter. The Triton route keeps kernels/lora.py's per-projection arenas (workers/lora/manager.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from workers.lora.adapter import LoraAdapter

MERGED = (("q_proj", "k_proj", "v_proj"), ("gate_proj", "up_proj"))  # as workers/models/llama.py merges them


def module_names(dims: dict[str, tuple[int, int]]) -> list[tuple[str, ...]]:
    """The `names` of each LoRA-able Linear of a layer, given the family's projections (Phi's are fused already)."""
    merged = [m for m in MERGED if all(n in dims for n in m)]
    taken = {n for m in merged for n in m}
    return merged + [(n,) for n in dims if n not in taken]


@dataclass(slots=True)
class ModuleArena:
    names: tuple[str, ...]
    sizes: tuple[int, ...]  # out features of each slice
    a: torch.Tensor  # [L, S, k·R, in]
    b: list[torch.Tensor | None]  # per slice [L, S, out_i, R]; None until an adapter targets the slice
    ranks: list[tuple[int, ...]]  # per slot, each slice's rank (0: untargeted or empty slot)
    # (layer, slot) -> (Aᵀ [in, Σr], [(first col, last col, B[:, :r_i]ᵀ [r_i, out_i]) of each targeted slice], shrink's rows
    # of each): the views a step's per-run matmuls use, kept until the slot changes (indexing them anew for each
    # of 4 modules x 30 layers cost ~1/3 of a one-adapter decode step's LoRA time)
    views: dict[tuple[int, int], tuple[torch.Tensor, list[tuple[int, int, torch.Tensor]], list[slice]]] = field(
        default_factory=dict
    )

    def run_views(
        self, layer: int, slot: int
    ) -> tuple[torch.Tensor, list[tuple[int, int, torch.Tensor]], list[slice]] | None:
        got = self.views.get((layer, slot))
        if got is None:
            slices = self.slices(slot)
            if not slices:
                return None
            width = sum(s[3] for s in slices)
            got = self.views[(layer, slot)] = (
                self.a[layer, slot, :width].t(),
                [(lo, hi, b[layer, slot, :, :r].t()) for lo, hi, _off, r, b in slices],
                [slice(off, off + r) for _lo, _hi, off, r, _b in slices],
            )
        return got

    def slices(self, slot: int) -> list[tuple[int, int, int, int, torch.Tensor]]:
        """(first column in y, last column, first row of v, rank, B arena) of each slice this slot targets."""
        out, col, off = [], 0, 0
        for i, (size, r) in enumerate(zip(self.sizes, self.ranks[slot], strict=True)):
            if r:
                b = self.b[i]
                assert b is not None
                out.append((col, col + size, off, r, b))
                off += r
            col += size
        return out


class FusedArenas:
    """The device slots of one LoraManager on the torch route (a merged projection's slices share one A arena)."""

    def __init__(
        self, dims: dict[str, tuple[int, int]], *, num_layers: int, num_slots: int, max_rank: int,
        dtype: torch.dtype, device: torch.device,
    ) -> None:  # fmt: skip
        self.dims, self.num_layers, self.num_slots, self.max_rank = dims, num_layers, num_slots, max_rank
        self.dtype, self.device = dtype, device
        self.modules: dict[tuple[str, ...], ModuleArena | None] = dict.fromkeys(module_names(dims))
        # per slot: (rank, targets) of its adapter, None when empty. Slots with equal keys have equal row offsets.
        self.keys: list[tuple[int, frozenset[str]] | None] = [None] * num_slots

    def _module(self, names: tuple[str, ...]) -> ModuleArena:
        m = self.modules[names]
        if m is None:
            fan_in = self.dims[names[0]][0]
            shape = (self.num_layers, self.num_slots, len(names) * self.max_rank, fan_in)
            m = ModuleArena(names, tuple(self.dims[n][1] for n in names),
                            torch.zeros(shape, dtype=self.dtype, device=self.device), [None] * len(names),
                            [(0,) * len(names)] * self.num_slots)  # fmt: skip
            self.modules[names] = m
        return m

    def _b(self, m: ModuleArena, i: int) -> torch.Tensor:
        if m.b[i] is None:
            shape = (self.num_layers, self.num_slots, m.sizes[i], self.max_rank)
            m.b[i] = torch.zeros(shape, dtype=self.dtype, device=self.device)
        return m.b[i]  # type: ignore[return-value]

    def load(self, slot: int, adapter: LoraAdapter) -> None:
        r = adapter.rank
        for names, m in self.modules.items():
            ranks = tuple(r if n in adapter.targets else 0 for n in names)
            if m is None and not any(ranks):
                continue
            m = self._module(names)
            m.ranks[slot] = ranks
            m.views.clear()
            off = 0
            for i, (name, ri) in enumerate(zip(names, ranks, strict=True)):
                if not ri:
                    continue
                stack_a, stack_b = adapter.stacked[name]  # [L, r, in], [L, out, r]
                torch.mul(stack_a, adapter.scale, out=m.a[:, slot, off : off + r])  # the scale once, not per step
                self._b(m, i)[:, slot, :, :r].copy_(stack_b, non_blocking=True)
                off += r
        self.keys[slot] = (r, adapter.targets)

    def clear(self, slot: int) -> None:
        self.keys[slot] = None
        for m in self.modules.values():
            if m is not None:
                m.ranks[slot] = (0,) * len(m.names)
                m.views.clear()
