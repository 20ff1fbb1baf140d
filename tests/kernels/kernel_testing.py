"""Helpers shared by the kernel tests: device, dtypes, per-dtype tolerances, seeded inputs.

Imported by a name no other test directory uses (tests/ has no packages, so module names must be unique).
"""

import os

import torch

GPU = os.environ.get("HEARTH_GPU_TESTS") == "1"
if not GPU:
    os.environ.setdefault("TRITON_INTERPRET", "1")  # before any kernel module is imported

DEVICE = torch.device("cuda" if GPU else "cpu")
DTYPES = [torch.float32, torch.float16, torch.bfloat16]
# atol = rtol per dtype: a couple of ulps of the output dtype (the interpreter rounds fp32 -> bf16 by truncation,
# a GPU accumulates P·V from 16-bit probabilities)
TOL = {torch.float32: 2e-5, torch.float16: 2e-3, torch.bfloat16: 2.5e-2}


def assert_close(actual: torch.Tensor, expected: torch.Tensor) -> None:
    tol = TOL[expected.dtype]
    assert actual.dtype == expected.dtype and actual.shape == expected.shape
    assert not actual.isnan().any(), f"{int(actual.isnan().sum())} NaN (unwritten) elements"
    torch.testing.assert_close(actual.float(), expected.float(), atol=tol, rtol=tol)


def randn(*shape: int, dtype: torch.dtype, seed: int, scale: float = 1.0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(*shape, generator=g) * scale).to(dtype=dtype, device=DEVICE)
