"""Build PEFT-format LoRA adapters (config + safetensors bytes) and archives of them, in memory, for the tests."""

from __future__ import annotations

import io
import json
import stat
import tarfile
import zipfile

import torch
from safetensors.torch import save as save_safetensors

# SmolLM2-135M: hidden 576, intermediate 1536, 9 heads / 3 kv heads of 64, 30 layers
SMOLLM2_DIMS = {
    "q_proj": (576, 576), "k_proj": (576, 192), "v_proj": (576, 192), "o_proj": (576, 576),
    "gate_proj": (576, 1536), "up_proj": (576, 1536), "down_proj": (1536, 576),
}  # fmt: skip
_PARENT = {"q_proj": "self_attn", "k_proj": "self_attn", "v_proj": "self_attn", "o_proj": "self_attn",
           "gate_proj": "mlp", "up_proj": "mlp", "down_proj": "mlp"}


def lora_config(r: int = 4, alpha: float = 8, targets: list[str] | None = None, **extra: object) -> dict:
    cfg = {
        "peft_type": "LORA", "r": r, "lora_alpha": alpha, "target_modules": targets or ["q_proj", "v_proj"],
        "base_model_name_or_path": "HuggingFaceTB/SmolLM2-135M-Instruct", "bias": "none", "use_rslora": False,
        "use_dora": False, "modules_to_save": None, "task_type": "CAUSAL_LM",
    }  # fmt: skip
    cfg.update(extra)
    return cfg


def lora_tensors(
    r: int = 4, targets: list[str] | None = None, layers: int = 30, dims: dict | None = None,
    dtype: torch.dtype = torch.float32, seed: int = 0,
) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    dims = dims or SMOLLM2_DIMS
    out: dict[str, torch.Tensor] = {}
    for layer in range(layers):
        for proj in targets or ["q_proj", "v_proj"]:
            fan_in, fan_out = dims[proj]
            prefix = f"base_model.model.model.layers.{layer}.{_PARENT[proj]}.{proj}"
            out[f"{prefix}.lora_A.weight"] = (torch.randn(r, fan_in, generator=g) * 0.02).to(dtype)
            out[f"{prefix}.lora_B.weight"] = (torch.randn(fan_out, r, generator=g) * 0.02).to(dtype)
    return out


def adapter_files(config: dict | None = None, tensors: dict[str, torch.Tensor] | None = None) -> dict[str, bytes]:
    config = config if config is not None else lora_config()
    tensors = tensors if tensors is not None else lora_tensors(config["r"], config["target_modules"])
    return {"adapter_config.json": json.dumps(config).encode(), "adapter_model.safetensors": save_safetensors(tensors)}


def zip_bytes(members: dict[str, bytes], symlinks: dict[str, str] | None = None) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in members.items():
            z.writestr(name, data)
        for name, target in (symlinks or {}).items():
            info = zipfile.ZipInfo(name)
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            z.writestr(info, target)
    return buf.getvalue()


def tar_gz_bytes(members: dict[str, bytes], symlinks: dict[str, str] | None = None) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as t:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))
        for name, target in (symlinks or {}).items():
            info = tarfile.TarInfo(name)
            info.type = tarfile.SYMTYPE
            info.linkname = target
            t.addfile(info)
    return buf.getvalue()
