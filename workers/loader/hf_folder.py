"""HF checkpoint folders: config.json (+ generation_config.json) + *.safetensors, any family we run."""

import json
from collections.abc import Iterator
from pathlib import Path

import torch
from safetensors import safe_open

from workers.model_config import ModelConfig


class CheckpointError(ValueError):
    """The folder is not a checkpoint we can load."""


def read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise CheckpointError(f"{path}: unreadable JSON: {e}") from e
    if not isinstance(data, dict):
        raise CheckpointError(f"{path}: expected a JSON object")
    return data


def hf_config(folder: Path) -> ModelConfig:
    cfg = read_json(folder / "config.json")
    config = ModelConfig.from_hf(cfg)
    gen = folder / "generation_config.json"
    if gen.exists():  # instruct models often list extra stop ids (e.g. <|eot_id|>) only here
        eos = read_json(gen).get("eos_token_id")
        extra = [eos] if isinstance(eos, int) else list(eos or [])
        config.eos_token_ids = list(dict.fromkeys([*config.eos_token_ids, *extra]))
    return config


def _safetensors_files(folder: Path) -> list[Path]:
    files = sorted(folder.glob("*.safetensors"))
    if not files:
        raise CheckpointError(f"{folder}: no *.safetensors files (pickled .bin checkpoints are not loaded)")
    return files


def hf_tensor_shapes(folder: Path) -> dict[str, tuple[int, ...]]:
    """HF name -> shape of every tensor in the folder, from the safetensors headers (no data read)."""
    shapes: dict[str, tuple[int, ...]] = {}
    for file in _safetensors_files(folder):
        try:
            with safe_open(str(file), framework="pt") as f:
                for name in f.keys():  # noqa: SIM118 (safe_open is not a dict)
                    shapes[name] = tuple(f.get_slice(name).get_shape())
        except Exception as e:  # safetensors raises its own error types for a corrupt header
            raise CheckpointError(f"{file}: not a readable safetensors file: {e}") from e
    return shapes


def hf_weights(folder: Path) -> Iterator[tuple[str, torch.Tensor]]:
    for file in _safetensors_files(folder):
        with safe_open(str(file), framework="pt") as f:
            for name in f.keys():  # noqa: SIM118 (safe_open is not a dict)
                yield name, f.get_tensor(name)
