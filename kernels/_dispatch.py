"""The one switch every op's dispatch asks: Triton on CUDA tensors, the op's CPU path on CPU tensors (the torch
reference where an op has no faster CPU version), the torch reference everywhere else.

HEARTH_KERNELS is read once, at import:
  auto       (default) as above
  reference  the torch reference for every tensor (debugging a GPU run)
  triton     the Triton wrappers for every tensor: on a CPU only with TRITON_INTERPRET=1 (the interpreter tests)
Tests switch it by setting `MODE` (monkeypatch), not the environment.

`TRITON` (also decided once, at import) says whether the ops define their Triton kernels in this process: where a
CUDA device is visible, with HEARTH_KERNELS=triton, or when triton was imported before kernels (the interpreter tests
import it after setting TRITON_INTERPRET=1). So a CPU-only worker never imports triton (~1 s it need not spend).
"""

import enum
import os
import sys

import torch

MODES = ("auto", "reference", "triton")


class Backend(enum.Enum):
    TRITON = "triton"
    CPU = "cpu"
    REFERENCE = "reference"


def _read_mode() -> str:
    mode = os.environ.get("HEARTH_KERNELS", "auto")
    if mode not in MODES:
        raise ValueError(f"HEARTH_KERNELS={mode!r}: expected one of {', '.join(MODES)}")
    return mode


MODE = _read_mode()
TRITON = MODE == "triton" or "triton" in sys.modules or (MODE == "auto" and torch.cuda.is_available())


def backend(t: torch.Tensor | torch.device) -> Backend:
    if MODE == "auto" and isinstance(t, torch.Tensor):  # every op asks, every layer: tensor flags, no device object
        return Backend.TRITON if t.is_cuda else (Backend.CPU if t.is_cpu else Backend.REFERENCE)
    device = t if isinstance(t, torch.device) else t.device
    if MODE == "auto":
        if device.type == "cuda":
            return Backend.TRITON
        return Backend.CPU if device.type == "cpu" else Backend.REFERENCE
    return Backend.REFERENCE if MODE == "reference" else Backend.TRITON


def use_triton(t: torch.Tensor | torch.device) -> bool:
    return backend(t) is Backend.TRITON
