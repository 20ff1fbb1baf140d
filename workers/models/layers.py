"""Building blocks of the Llama and Gemma families. Weights start uninitialised: a loader or build_random_model
fills them."""

from typing import Protocol

import torch
import torch.nn.functional as F
from torch import nn

import kernels


class LoraHook(Protocol):
    """The seam for multi-LoRA (a later issue): given a projection's input and base output, add each token's
    adapter delta. `name` is the HF module name ("q_proj", "gate_proj"...), one per slice of a merged projection."""

    def add_delta(self, layer_idx: int, names: tuple[str, ...], x: torch.Tensor, y: torch.Tensor) -> torch.Tensor: ...


class Linear(nn.Module):
    """y = x W^T + b. A merged projection (qkv, gate_up) keeps the HF names and sizes of its slices so a weight
    loader and a LoRA hook can address each part."""

    def __init__(
        self, in_features: int, output_sizes: list[int], names: tuple[str, ...], bias: bool, layer_idx: int
    ) -> None:
        super().__init__()
        self.output_sizes = output_sizes
        self.names = names
        self.layer_idx = layer_idx
        out = sum(output_sizes)
        self.weight = nn.Parameter(torch.empty(out, in_features), requires_grad=False)
        self.bias = nn.Parameter(torch.empty(out), requires_grad=False) if bias else None

    def slice_of(self, name: str) -> tuple[int, int]:
        start = 0
        for n, size in zip(self.names, self.output_sizes, strict=True):
            if n == name:
                return start, size
            start += size
        raise KeyError(name)

    def forward(self, x: torch.Tensor, lora: LoraHook | None = None) -> torch.Tensor:
        y = F.linear(x, self.weight, self.bias)
        if lora is not None:
            y = lora.add_delta(self.layer_idx, self.names, x, y)
        return y


class RMSNorm(nn.Module):
    def __init__(self, hidden_size: int, eps: float) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.empty(hidden_size), requires_grad=False)

    def forward(
        self, x: torch.Tensor, residual: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        # -> (normed, new residual). The first norm of the first layer has no residual yet: x is the residual.
        if residual is None:
            return kernels.rms_norm(x, self.weight, self.eps), x
        return kernels.add_rms_norm(x, residual, self.weight, self.eps)


class Embedding(nn.Module):
    def __init__(self, vocab_size: int, hidden_size: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(vocab_size, hidden_size), requires_grad=False)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return F.embedding(input_ids, self.weight)  # [T] -> [T, H]

    def project(self, hidden: torch.Tensor) -> torch.Tensor:
        return F.linear(hidden, self.weight)  # the output layer: [N, H] -> [N, V]


def gated_mlp_act(x: torch.Tensor, act: str) -> torch.Tensor:
    # x: [T, 2I] (gate | up) -> act(gate) * up [T, I]; "silu" (Llama, Qwen, Phi) or "gelu_pytorch_tanh" (Gemma)
    if act == "silu":
        return kernels.silu_and_mul(x)
    return kernels.gelu_tanh_and_mul(x)
