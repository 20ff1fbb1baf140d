"""The tiered adapter cache of one worker: device slots (max_loras) <- host memory LRU (max_cpu_loras) <- store.

Device memory: on the Triton route (kernels/lora.py) an arena per projection, A [max_loras, max_lora_rank, in] and
B [max_loras, out, max_lora_rank]; on the torch route (CPU) workers/lora/fused.py's per-module arenas, where a merged
projection's slices share one A and the scale is folded into it. Bringing an adapter into a slot is a few copies
per projection into its rows; a slot whose adapter a running sequence still uses is pinned (never evicted). The
scheduler admits at most max_loras distinct adapters among running sequences, so the adapters of a step always fit.
"""

from __future__ import annotations

import re
import threading
import time
from collections import OrderedDict
from pathlib import Path

import torch

from kernels._dispatch import use_triton
from kernels.lora import LoraSegments, SlotParams
from workers.lora.adapter import AdapterLoadError, LoraAdapter, projection_dims
from workers.lora.batch import LoraBatch
from workers.lora.fused import FusedArenas
from workers.lora.fused_batch import FusedLoraBatch, plan
from workers.model_config import ModelConfig

_UID_RE = re.compile(r"^[0-9A-Za-z_-]{1,64}$")  # a path component, never a path


class AdapterNotFoundError(LookupError):
    """No adapter with this uid in the store (or it can't be loaded)."""


class LoraManager:
    def __init__(
        self, model: ModelConfig, *, max_loras: int, max_cpu_loras: int, max_lora_rank: int = 64,
        store: str | Path | None = None, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32,
        fused: bool | None = None,
    ) -> None:  # fmt: skip
        """`fused`: workers/lora/fused.py's slots and hook (default: wherever the Triton kernels don't run); False:
        the kernels' per-projection arenas and segments (their torch reference off a GPU)."""
        if max_loras < 1 or max_cpu_loras < max_loras:
            raise ValueError("need 1 <= max_loras <= max_cpu_loras")
        self.model = model
        self.max_loras, self.max_cpu_loras, self.max_lora_rank = max_loras, max_cpu_loras, max_lora_rank
        self.store = Path(store) if store is not None else None
        self.device, self.dtype = torch.device(device), dtype
        self.dims = projection_dims(model)
        self._host: OrderedDict[str, LoraAdapter] = OrderedDict()  # LRU: last = most recently used
        self._lock = threading.Lock()  # add_request (server thread) loads into the host cache; step() reads it
        self.slot_uids: list[str | None] = [None] * max_loras
        self._slot_used: list[int] = [0] * max_loras  # step counter of last use, for LRU among free slots
        self._step = 0
        self._arenas: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}  # proj -> ([L, S, R, in], [L, S, out, R])
        self._ranks: dict[str, list[int]] = {p: [0] * max_loras for p in self.dims}
        self._scales: list[float] = [0.0] * max_loras
        self.num_slot_loads = 0
        self.num_disk_loads = 0
        self.last_slot_load_s = 0.0
        if fused is None:
            fused = not use_triton(torch.empty(0, device=self.device))
        self._fused = FusedArenas(self.dims, num_layers=model.num_layers, num_slots=max_loras, max_rank=max_lora_rank,
                                  dtype=dtype, device=self.device) if fused else None  # fmt: skip

    # -- host tier ------------------------------------------------------------------------------------------------

    def add_adapter(self, adapter: LoraAdapter) -> None:
        """Put an adapter straight into the host cache (tests and benchmarks; the server loads from the store)."""
        if adapter.rank > self.max_lora_rank:
            raise AdapterLoadError(f"adapter {adapter.uid}: rank {adapter.rank} > max_lora_rank {self.max_lora_rank}")
        with self._lock:
            self._host[adapter.uid] = adapter
            self._host.move_to_end(adapter.uid)
            self._evict_host()

    def get(self, uid: str) -> LoraAdapter:
        """The adapter, from the host cache or loaded from the store (raises AdapterNotFoundError)."""
        with self._lock:
            adapter = self._host.get(uid)
            if adapter is not None:
                self._host.move_to_end(uid)
                return adapter
        folder = self._folder(uid)
        try:
            adapter = LoraAdapter.from_folder(uid, folder, self.model, self.dtype)
            self.add_adapter(adapter)
        except AdapterLoadError as exc:  # this worker can't serve it: to a client, that model does not exist here
            raise AdapterNotFoundError(str(exc)) from None
        self.num_disk_loads += 1
        return adapter

    def _folder(self, uid: str) -> Path:
        if self.store is None or not _UID_RE.match(uid) or not (self.store / uid / "adapter_config.json").is_file():
            raise AdapterNotFoundError(f"adapter {uid!r} is not in the adapter store")
        return self.store / uid

    def _evict_host(self) -> None:
        # Oldest first, skipping adapters that sit in a device slot (a running sequence may need them again).
        for uid in list(self._host):
            if len(self._host) <= self.max_cpu_loras:
                return
            if uid not in self.slot_uids:
                del self._host[uid]

    def resident_adapters(self) -> list[str]:
        with self._lock:
            return list(self._host)

    def remove(self, uid: str) -> None:
        """Forget an adapter everywhere (deleted or replaced in the store)."""
        with self._lock:
            self._host.pop(uid, None)
        if uid in self.slot_uids:
            self._clear_slot(self.slot_uids.index(uid))

    # -- device slots ---------------------------------------------------------------------------------------------

    def _arena(self, proj: str) -> tuple[torch.Tensor, torch.Tensor]:
        if proj not in self._arenas:
            fan_in, fan_out = self.dims[proj]
            shape_a = (self.model.num_layers, self.max_loras, self.max_lora_rank, fan_in)
            shape_b = (self.model.num_layers, self.max_loras, fan_out, self.max_lora_rank)
            self._arenas[proj] = (torch.zeros(shape_a, dtype=self.dtype, device=self.device),
                                  torch.zeros(shape_b, dtype=self.dtype, device=self.device))
        return self._arenas[proj]

    def _clear_slot(self, slot: int) -> None:
        self.slot_uids[slot] = None
        for proj in self.dims:
            self._ranks[proj][slot] = 0
        if self._fused is not None:
            self._fused.clear(slot)

    def _load_slot(self, slot: int, adapter: LoraAdapter) -> None:
        start = time.perf_counter()
        if self._fused is not None:
            self._fused.load(slot, adapter)
        else:
            self._load_arenas(slot, adapter)
        self._scales[slot] = adapter.scale
        self.slot_uids[slot] = adapter.uid
        self.num_slot_loads += 1
        self.last_slot_load_s = time.perf_counter() - start

    def _load_arenas(self, slot: int, adapter: LoraAdapter) -> None:
        r = adapter.rank
        for proj in self.dims:
            self._ranks[proj][slot] = r if proj in adapter.targets else 0
            if proj not in adapter.targets:
                continue
            arena_a, arena_b = self._arena(proj)  # [L, S, R, in], [L, S, out, R]
            stack_a, stack_b = adapter.stacked[proj]  # [L, r, in], [L, out, r]; zeros where a layer is unchanged
            arena_a[:, slot, :r].copy_(stack_a, non_blocking=True)
            arena_b[:, slot, :, :r].copy_(stack_b, non_blocking=True)

    def _assign(self, uids: set[str], pinned: frozenset[str]) -> dict[str, int]:
        if len(uids) > self.max_loras:
            raise RuntimeError(f"{len(uids)} adapters in one step > max_loras {self.max_loras} (scheduler bug)")
        slot_of = {u: self.slot_uids.index(u) for u in uids if u in self.slot_uids}
        for uid in sorted(uids - slot_of.keys()):
            adapter = self.get(uid)
            keep = uids | pinned
            free = [s for s, u in enumerate(self.slot_uids) if u is None or u not in keep]
            if not free:
                raise RuntimeError("no free LoRA slot: more pinned adapters than max_loras (scheduler bug)")
            slot = min(free, key=lambda s: (self.slot_uids[s] is not None, self._slot_used[s]))
            self._load_slot(slot, adapter)
            slot_of[uid] = slot
        return slot_of

    def prepare(
        self, seq_adapters: list[str | None], num_tokens: list[int], pinned: frozenset[str] = frozenset()
    ) -> LoraBatch | FusedLoraBatch | None:
        """The LoRA hook of one step: sequence i contributes num_tokens[i] consecutive tokens with adapter
        seq_adapters[i] (None = base). `pinned` adapters (those of all running sequences, from the scheduled batch)
        keep their slots."""
        uids = {u for u in seq_adapters if u is not None}
        if not uids:
            return None
        self._step += 1
        slot_of = self._assign(uids, pinned)
        for slot in slot_of.values():
            self._slot_used[slot] = self._step
        token_slots: list[int] = []
        for uid, n in zip(seq_adapters, num_tokens, strict=True):
            token_slots += [slot_of[uid] if uid is not None else -1] * n
        if self._fused is not None:
            return plan(self._fused, token_slots)
        params = {
            proj: SlotParams(list(self._ranks[proj]), list(self._scales),
                             torch.tensor(self._ranks[proj], dtype=torch.int32, device=self.device),
                             torch.tensor(self._scales, dtype=torch.float32, device=self.device))
            for proj in self._arenas
        }  # fmt: skip
        order: list[int] | None = None
        if not _is_grouped(token_slots):
            # Group tokens by slot (stable): the kernels want each adapter's tokens contiguous.
            order = sorted(range(len(token_slots)), key=lambda t: token_slots[t])
            token_slots = [token_slots[t] for t in order]
        seg = LoraSegments.from_token_slots(token_slots, self.device)
        order_t = torch.tensor(order, dtype=torch.int64, device=self.device) if order is not None else None
        return LoraBatch(self._arenas, params, seg, order_t, self.dims)


def _is_grouped(token_slots: list[int]) -> bool:
    # Grouped iff no slot shows up in two separate runs.
    runs = [s for i, s in enumerate(token_slots) if i == 0 or token_slots[i - 1] != s]
    return len(set(runs)) == len(runs)
