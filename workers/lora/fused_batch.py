"""The per-step LoRA hook of the CPU route (workers/lora/fused.py holds the slots): one shrink per module and slot
group, one expand per slice straight into the base output, in the step's own token order.

Routes, chosen per step from the token -> slot runs (`plan`):
  runs     a run of >= LONG_RUN tokens of one slot (one adapter, prefill chunks), or every run when there are at most
           FEW_RUNS: v = x[run]·Aᵀ, then y[run, cols_i] += v_i·Bᵀ_i in place (addmm_). No permutation, no scatter.
  grouped  the other tokens (decode with many adapters): grouped by slot and padded to [G, P], one bmm shrink and one
           bmm expand per slice, scattered back with one index_add_. Slots whose adapters differ in rank or targets
           (so in row offsets) form separate parts. When a part's slots fill at least half of the range of slots
           they span, the groups are that whole range and the bmms read the arena in place; else each group's
           weights are gathered first. Measured on this 2-core EPYC (fp32, one thread), the shrink of a merged q,k,v
           for one decode token on each of 32 slots: 35 us in place vs 498 us gathered (190 us of it the copy).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from kernels.lora import slot_runs
from workers.lora.fused import FusedArenas, ModuleArena

LONG_RUN = 8  # tokens: a run this long pays for its own matmuls
FEW_RUNS = 3  # at most this many runs: per-run matmuls beat grouping's gathers and scatter


@dataclass(slots=True)
class Part:
    """Tokens of slots with the same adapter shape, as G groups of P tokens (padding rows read token 0, add 0)."""

    index: torch.Tensor | None  # [G * P] int64 token of each row; None: every token of the step, in order (P = 1)
    valid: torch.Tensor | None  # [G, P, 1] 1 for real rows, 0 for padding; None: no padding
    slots: torch.Tensor | None  # [G] int64 slot of each group; None: the groups are the slots lo..hi-1, in place
    lo: int
    hi: int
    num_groups: int
    width: int
    slot: int  # one slot of the part (all have the same row offsets)


class FusedLoraBatch:
    """LoraHook of one step on the CPU route: y[:, cols of slice] += x·(scale·A)ᵀ·Bᵀ for each token's adapter."""

    def __init__(self, arenas: FusedArenas, runs: list[tuple[int, int, int]], parts: list[Part]) -> None:
        self.arenas = arenas
        self.runs = runs  # (start, end, slot) computed per run
        self.parts = parts
        self._slices: dict[tuple[tuple[str, ...], int], tuple[int, list]] = {}

    def _of(self, m: ModuleArena, slot: int) -> tuple[int, list]:
        key = (m.names, slot)
        got = self._slices.get(key)
        if got is None:
            slices = m.slices(slot)
            got = self._slices[key] = (sum(s[3] for s in slices), slices)
        return got

    def add_delta(self, layer_idx: int, names: tuple[str, ...], x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        # x [T, in], y [T, sum(out of names)] (a merged projection holds its slices in `names` order)
        m = self.arenas.modules[names]
        if m is None:  # no adapter in any slot targets this module
            return y
        for start, end, slot in self.runs:
            views = m.run_views(layer_idx, slot)
            if views is None:  # this slot's adapter leaves the module alone
                continue
            at, outs, rows = views
            whole = start == 0 and end == x.shape[0]
            xr, yr = (x, y) if whole else (x[start:end], y[start:end])
            v = torch.mm(xr, at)  # [t, Σr]
            for (lo, hi, bt), cols in zip(outs, rows, strict=True):
                yr[:, lo:hi].addmm_(v[:, cols], bt)  # bt: B[:, :r]ᵀ [r, out_i]
        for part in self.parts:
            width, slices = self._of(m, part.slot)
            if width:
                self._grouped(part, layer_idx, m.a[layer_idx, :, :width], slices, x, y)
        return y

    def _grouped(
        self, part: Part, layer_idx: int, a: torch.Tensor, slices: list, x: torch.Tensor, y: torch.Tensor
    ) -> None:
        g, p = part.num_groups, part.width
        xs = x.unsqueeze(1) if part.index is None else x.index_select(0, part.index).view(g, p, -1)  # [G, P, in]
        a = a[part.lo : part.hi] if part.slots is None else a.index_select(0, part.slots)  # [G, Σr, in]
        v = torch.bmm(xs, a.transpose(1, 2))  # [G, P, Σr]
        if part.valid is not None:  # padding rows (and slots without tokens here) add zero
            v = v * part.valid
        deltas = []
        for _lo, _hi, off, r, b in slices:
            b = b[layer_idx, :, :, :r]  # [S, out_i, r]
            b = b[part.lo : part.hi] if part.slots is None else b.index_select(0, part.slots)
            deltas.append(torch.bmm(v[:, :, off : off + r], b.transpose(1, 2)))  # [G, P, out_i]
        adjacent = all(slices[i][1] == slices[i + 1][0] for i in range(len(slices) - 1))
        if adjacent:  # one scatter for all slices
            pieces = [(slices[0][0], slices[-1][1], deltas[0] if len(deltas) == 1 else torch.cat(deltas, 2))]
        else:  # a slice in the middle is untargeted (e.g. q and v, not k)
            pieces = [(s[0], s[1], d) for s, d in zip(slices, deltas, strict=True)]
        for lo, hi, d in pieces:
            if part.index is None:
                y[:, lo:hi] += d.view(g * p, hi - lo)
            else:
                y[:, lo:hi].index_add_(0, part.index, d.view(g * p, hi - lo))


def plan(arenas: FusedArenas, token_slots: list[int]) -> FusedLoraBatch:
    """The hook of one step whose token t runs on slot token_slots[t] (-1: the base model)."""
    runs = slot_runs(token_slots)
    if len(runs) <= FEW_RUNS:
        return FusedLoraBatch(arenas, runs, [])
    long = [r for r in runs if r[1] - r[0] >= LONG_RUN]
    by_key: dict[tuple, dict[int, list[int]]] = {}  # adapter shape -> slot -> its short-run tokens, in order
    for start, end, slot in runs:
        if end - start < LONG_RUN:
            by_key.setdefault(arenas.keys[slot], {}).setdefault(slot, []).extend(range(start, end))
    everything = len(long) == 0 and len(by_key) == 1 and -1 not in token_slots
    parts = [_part(by_slot, len(token_slots), everything, arenas) for by_slot in by_key.values()]
    return FusedLoraBatch(arenas, long, parts)


def _part(by_slot: dict[int, list[int]], num_step_tokens: int, everything: bool, arenas: FusedArenas) -> Part:
    num_tokens = sum(map(len, by_slot.values()))
    width = max(map(len, by_slot.values()))
    slot = next(iter(by_slot))
    dev = arenas.device
    if width * len(by_slot) <= 2 * num_tokens:  # one group per slot: padding at most doubles the rows
        lo, hi = min(by_slot), max(by_slot) + 1
        if 2 * len(by_slot) >= hi - lo:  # in place over the slots lo..hi-1, unused ones all padding
            rows = [by_slot.get(s, []) for s in range(lo, hi)]
            slots = None
        else:
            rows = list(by_slot.values())
            slots = torch.tensor(list(by_slot), dtype=torch.int64, device=dev)
        index = torch.tensor([t for ts in rows for t in ts + [0] * (width - len(ts))], dtype=torch.int64, device=dev)
        valid = None
        if any(len(ts) < width for ts in rows):
            valid = torch.tensor([[1.0] * len(ts) + [0.0] * (width - len(ts)) for ts in rows], dtype=arenas.dtype,
                                 device=dev).unsqueeze(2)  # fmt: skip
        return Part(index, valid, slots, lo, hi, len(rows), width, slot)
    # one group per token (BGMV), in step order: with every token of the step here, no gather and no scatter
    tokens = sorted((t, s) for s, ts in by_slot.items() for t in ts)
    slots_t = torch.tensor([s for _, s in tokens], dtype=torch.int64, device=dev)
    index = None
    if not (everything and len(tokens) == num_step_tokens):
        index = torch.tensor([t for t, _ in tokens], dtype=torch.int64, device=dev)
    return Part(index, None, slots_t, 0, 0, len(tokens), 1, slot)
