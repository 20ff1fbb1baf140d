"""One decision for every op: Triton on CUDA tensors, the torch reference otherwise.

HEARTH_KERNELS=reference forces the torch reference everywhere (debugging a GPU run).
"""

import os

import torch


def use_triton(t: torch.Tensor) -> bool:
    return t.is_cuda and os.environ.get("HEARTH_KERNELS", "auto") != "reference"
