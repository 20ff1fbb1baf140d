"""HF checkpoint folders: config.json (+ generation_config.json) + *.safetensors, any family we run.

Gemma 3's multimodal checkpoints (model_type gemma3: the 4B/12B/27B releases) are served as text models: the
language model's tensors (`language_model.model.*`, or transformers 5's `model.language_model.*`) under the text
model's names, the vision tower and projector skipped.
"""

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


# tensor-name prefix of a multimodal checkpoint's language model -> ours; prefixes of the parts a text model skips
_TEXT_PREFIXES = {"language_model.model.": "model.", "model.language_model.": "model.",
                  "language_model.lm_head.": "lm_head."}
_SKIPPED_PREFIXES = ("vision_tower.", "multi_modal_projector.", "model.vision_tower.", "model.multi_modal_projector.")


def _is_multimodal(folder: Path) -> bool:
    cfg = read_json(folder / "config.json")
    return cfg.get("model_type") == "gemma3" and isinstance(cfg.get("text_config"), dict)


def _text_name(name: str) -> str | None:
    """A multimodal checkpoint's tensor name -> the text model's, or None for a tensor it skips."""
    if name.startswith(_SKIPPED_PREFIXES):
        return None
    for prefix, ours in _TEXT_PREFIXES.items():
        if name.startswith(prefix):
            return ours + name[len(prefix) :]
    return name


def _safetensors_files(folder: Path) -> list[Path]:
    files = sorted(folder.glob("*.safetensors"))
    if not files:
        raise CheckpointError(f"{folder}: no *.safetensors files (pickled .bin checkpoints are not loaded)")
    return files


def hf_tensor_shapes(folder: Path) -> dict[str, tuple[int, ...]]:
    """HF name -> shape of every tensor in the folder, from the safetensors headers (no data read)."""
    shapes: dict[str, tuple[int, ...]] = {}
    rename = _text_name if _is_multimodal(folder) else (lambda n: n)
    for file in _safetensors_files(folder):
        try:
            with safe_open(str(file), framework="pt") as f:
                for name in f.keys():  # noqa: SIM118 (safe_open is not a dict)
                    ours = rename(name)
                    if ours is not None:
                        shapes[ours] = tuple(f.get_slice(name).get_shape())
        except Exception as e:  # safetensors raises its own error types for a corrupt header
            raise CheckpointError(f"{file}: not a readable safetensors file: {e}") from e
    return shapes


def hf_weights(folder: Path) -> Iterator[tuple[str, torch.Tensor]]:
    rename = _text_name if _is_multimodal(folder) else (lambda n: n)
    for file in _safetensors_files(folder):
        with safe_open(str(file), framework="pt") as f:
            for name in f.keys():  # noqa: SIM118 (safe_open is not a dict)
                ours = rename(name)
                if ours is not None:
                    yield ours, f.get_tensor(name)
