"""One LoRA adapter read from a validated PEFT folder (`<store>/<uid>/adapter_config.json` + safetensors).

Per (layer, projection): A [r, in] and B [out, r] on the host, and one scale for the adapter:
lora_alpha / r, or lora_alpha / sqrt(r) with use_rslora (peft's rule).
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from pathlib import Path

import torch

from workers.model_config import ModelConfig

PROJECTIONS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")  # Llama-family names
# peft's key of a layer's LoRA factor; a multimodal Gemma 3's language model sits under model.language_model
_KEY_RE = re.compile(
    r"^base_model\.model\.model\.(?:language_model\.)?layers\.(\d+)\.(?:self_attn|mlp)\.(\w+)\.lora_(A|B)\.weight$"
)


class AdapterLoadError(ValueError):
    """The folder is not a LoRA adapter this model can run (the control plane validates before; this is defence)."""


def projection_dims(cfg: ModelConfig) -> dict[str, tuple[int, int]]:
    """HF projection name -> (in_features, out_features), per family (Phi's fused qkv_proj / gate_up_proj)."""
    return cfg.projection_dims()


@dataclass(slots=True)
class LoraAdapter:
    uid: str
    rank: int
    scale: float
    targets: frozenset[str]  # projections this adapter changes
    weights: dict[tuple[int, str], tuple[torch.Tensor, torch.Tensor]]  # (layer, proj) -> (A [r, in], B [out, r])
    # proj -> (A [L, r, in], B [L, out, r]), zeros for layers it leaves alone; `weights` are views into these, so a
    # device slot is filled with two copies per projection (not two per layer: 420 small copies for SmolLM2)
    stacked: dict[str, tuple[torch.Tensor, torch.Tensor]]

    @property
    def num_bytes(self) -> int:
        return sum(a.nbytes + b.nbytes for a, b in self.stacked.values())

    @classmethod
    def from_tensors(
        cls, uid: str, config: dict, tensors: dict[str, torch.Tensor], model: ModelConfig, dtype: torch.dtype
    ) -> LoraAdapter:
        rank = config.get("r")
        alpha = config.get("lora_alpha", rank)
        if not isinstance(rank, int) or rank < 1 or not isinstance(alpha, int | float):
            raise AdapterLoadError(f"adapter {uid}: bad r / lora_alpha in adapter_config.json")
        scale = alpha / math.sqrt(rank) if config.get("use_rslora") else alpha / rank
        dims = projection_dims(model)
        parts: dict[tuple[int, str], dict[str, torch.Tensor]] = {}
        for name, tensor in tensors.items():
            m = _KEY_RE.match(name)
            if m is None or m[2] not in dims or int(m[1]) >= model.num_layers:
                raise AdapterLoadError(f"adapter {uid}: unexpected tensor {name}")
            parts.setdefault((int(m[1]), m[2]), {})[m[3]] = tensor
        weights: dict[tuple[int, str], tuple[torch.Tensor, torch.Tensor]] = {}
        stacked: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
        for (layer, proj), ab in sorted(parts.items()):
            fan_in, fan_out = dims[proj]
            a, b = ab.get("A"), ab.get("B")
            if a is None or b is None or a.shape != (rank, fan_in) or b.shape != (fan_out, rank):
                raise AdapterLoadError(f"adapter {uid}: layer {layer} {proj} has missing or misshapen factors")
            if proj not in stacked:
                stacked[proj] = (torch.zeros(model.num_layers, rank, fan_in, dtype=dtype),
                                 torch.zeros(model.num_layers, fan_out, rank, dtype=dtype))  # fmt: skip
            stack_a, stack_b = stacked[proj]
            stack_a[layer].copy_(a)
            stack_b[layer].copy_(b)
            weights[(layer, proj)] = (stack_a[layer], stack_b[layer])
        targets = frozenset(stacked)
        return cls(uid, rank, float(scale), targets, weights, stacked)

    @classmethod
    def from_folder(cls, uid: str, folder: Path, model: ModelConfig, dtype: torch.dtype) -> LoraAdapter:
        from safetensors.torch import load_file  # lazy: the engine itself needs only torch

        try:
            config = json.loads((folder / "adapter_config.json").read_text())
            tensors = load_file(folder / "adapter_model.safetensors")  # safetensors only: never a pickle
        except (OSError, ValueError) as exc:
            raise AdapterLoadError(f"adapter {uid} can't be read from {folder}: {exc}") from None
        return cls.from_tensors(uid, config, tensors, model, dtype)
