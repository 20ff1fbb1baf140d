"""Random adapters in PEFT's on-disk layout, for benchmarks and tests that need many of them without peft itself.

The files are what `peft.PeftModel.save_pretrained` writes for a LoRA on a Llama-family model: tensor names
`base_model.model.model.layers.{i}.{self_attn|mlp}.{proj}.lora_{A|B}.weight`, A [r, in] and B [out, r].
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from workers.lora.adapter import PROJECTIONS, projection_dims
from workers.model_config import ModelConfig


def random_adapter_tensors(
    model: ModelConfig, *, rank: int, targets: tuple[str, ...] = PROJECTIONS, seed: int = 0, b_std: float = 0.02,
    dtype: torch.dtype = torch.float32,
) -> dict[str, torch.Tensor]:  # fmt: skip
    # A ~ U(-1/sqrt(in), 1/sqrt(in)) like peft's kaiming init; B small but non-zero so the adapter changes outputs.
    g = torch.Generator().manual_seed(seed)
    dims = projection_dims(model)
    tensors: dict[str, torch.Tensor] = {}
    for layer in range(model.num_layers):
        for proj in targets:
            fan_in, fan_out = dims[proj]
            block = "self_attn" if proj in ("q_proj", "k_proj", "v_proj", "o_proj") else "mlp"
            key = f"base_model.model.model.layers.{layer}.{block}.{proj}"
            bound = fan_in**-0.5
            tensors[f"{key}.lora_A.weight"] = ((torch.rand(rank, fan_in, generator=g) * 2 - 1) * bound).to(dtype)
            tensors[f"{key}.lora_B.weight"] = (torch.randn(fan_out, rank, generator=g) * b_std).to(dtype)
    return tensors


def adapter_config(*, rank: int, alpha: float, targets: tuple[str, ...] = PROJECTIONS, base: str = "") -> dict:
    return {"peft_type": "LORA", "task_type": "CAUSAL_LM", "base_model_name_or_path": base, "r": rank,
            "lora_alpha": alpha, "lora_dropout": 0.0, "bias": "none", "use_rslora": False, "use_dora": False,
            "target_modules": list(targets), "modules_to_save": None}  # fmt: skip


def write_random_adapter(
    folder: Path, model: ModelConfig, *, rank: int = 16, alpha: float = 32, targets: tuple[str, ...] = PROJECTIONS,
    seed: int = 0, b_std: float = 0.02, dtype: torch.dtype = torch.float32,
) -> Path:  # fmt: skip
    """Writes adapter_config.json + adapter_model.safetensors into `folder` (created); returns the folder."""
    from safetensors.torch import save_file  # lazy, as in workers.lora.adapter

    folder.mkdir(parents=True, exist_ok=True)
    tensors = random_adapter_tensors(model, rank=rank, targets=targets, seed=seed, b_std=b_std, dtype=dtype)
    save_file(tensors, folder / "adapter_model.safetensors")
    (folder / "adapter_config.json").write_text(json.dumps(adapter_config(rank=rank, alpha=alpha, targets=targets)))
    return folder
