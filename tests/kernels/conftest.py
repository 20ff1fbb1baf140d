"""Kernel tests run the Triton wrappers directly: on this CPU in Triton's interpreter (small shapes), on a GPU with
HEARTH_GPU_TESTS=1 (device cuda, compiled kernels, a few bigger shapes). Every output the wrappers allocate starts
as NaN (see `poison`), so an element a kernel forgets to write fails the comparison."""

import os

import pytest
import torch

if os.environ.get("HEARTH_GPU_TESTS") != "1":
    os.environ.setdefault("TRITON_INTERPRET", "1")  # before triton decorates any kernel

import triton  # noqa: E402, F401  (imported before kernels: the ops then define their Triton kernels)

from kernels import _dispatch  # noqa: E402

if not _dispatch.TRITON:
    raise RuntimeError("kernels was imported before tests/kernels/conftest.py imported triton: its Triton kernels "
                       "are not defined in this process (see kernels/_dispatch.py TRITON)")  # fmt: skip


@pytest.fixture(autouse=True)
def poison(monkeypatch: pytest.MonkeyPatch) -> None:
    real_empty, real_empty_like = torch.empty, torch.empty_like

    def fill(t: torch.Tensor) -> torch.Tensor:
        return t.fill_(float("nan")) if t.is_floating_point() else t.fill_(-1)

    monkeypatch.setattr(torch, "empty", lambda *a, **kw: fill(real_empty(*a, **kw)))
    monkeypatch.setattr(torch, "empty_like", lambda *a, **kw: fill(real_empty_like(*a, **kw)))
