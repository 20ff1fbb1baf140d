"""A per-forward memo for what the CPU paths derive from a step's metadata (gather slots, masks, cos/sin rows).

Every layer of a forward passes the same `block_tables`, `seq_lens`, `slot_mapping` and `positions` tensors, so
what the CPU paths compute from them is the same for all layers (SmolLM2: 30 times ~40 small ops per step).
Inside `with forward_scope():` (the model's forward opens one), `memo(name, tensors, extra, build)` returns
`build()` once and the stored value while the same tensor objects (by identity) and `extra` come back; the scope
starts empty and is dropped when it closes, so nothing outlives the forward in which the metadata is fixed.
Outside a scope `memo` just calls `build()`. (Inference tensors carry no version counter, so in-place edits could
not be detected: hence the scope, within which a forward's metadata is never written.)
"""

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

import torch

T = TypeVar("T")

_local = threading.local()  # .entries: dict while a scope is open on this thread, else absent/None


@contextmanager
def forward_scope() -> Iterator[None]:
    outer = getattr(_local, "entries", None)
    _local.entries = {}
    try:
        yield
    finally:
        _local.entries = outer


def memo(name: str, tensors: tuple[torch.Tensor, ...], extra: object, build: Callable[[], T]) -> T:
    # `extra` (hashable) is part of the key: Gemma's sliding and global layers keep one decode plan each
    entries: dict[tuple[str, object], tuple[tuple[torch.Tensor, ...], object]] | None = getattr(_local, "entries", None)
    if entries is None:
        return build()
    entry = entries.get((name, extra))
    if (
        entry is not None
        and len(entry[0]) == len(tensors)
        and all(a is b for a, b in zip(entry[0], tensors, strict=True))
    ):
        return entry[1]  # type: ignore[return-value]
    value = build()
    entries[(name, extra)] = (tensors, value)
    return value
