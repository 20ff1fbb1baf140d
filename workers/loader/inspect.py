"""Can the engine load this checkpoint? Its config parses into a family we run, and its files hold exactly the
tensors (names and shapes) our model of that config expects — read from the safetensors / GGUF headers, without
loading a weight. `catalog_add` asks this before a model enters the catalog."""

from pathlib import Path

import torch

from workers.loader.gguf_file import gguf_config, gguf_tensor_shapes, open_gguf
from workers.loader.hf_folder import CheckpointError, hf_config, hf_tensor_shapes
from workers.model_config import ModelConfig
from workers.models.registry import model_class


def check_checkpoint(path: str | Path) -> ModelConfig:
    """-> the model's config; raises UnsupportedModelError, CheckpointError or GGUFError with the reason."""
    path = Path(path)
    if path.is_file() and path.suffix == ".gguf":
        reader = open_gguf(path)
        config = gguf_config(reader)
        shapes = gguf_tensor_shapes(reader)
    elif (path / "config.json").is_file():
        config = hf_config(path)
        shapes = hf_tensor_shapes(path)
    elif path.exists():
        raise CheckpointError(f"{path}: neither a .gguf file nor a folder with config.json")
    else:
        raise CheckpointError(f"{path}: no such file or folder")
    with torch.device("meta"):  # shapes only: no memory, no weights
        expected = {name: tuple(t.shape) for name, t in model_class(config)(config).hf_state_dict().items()}
    if config.tie_word_embeddings:
        shapes.pop("lm_head.weight", None)
    shapes = {n: s for n, s in shapes.items() if not n.endswith("rotary_emb.inv_freq")}
    missing = sorted(expected.keys() - shapes.keys())
    if missing:
        raise CheckpointError(f"{path}: the checkpoint lacks {len(missing)} tensors, e.g. {missing[:3]}")
    unexpected = sorted(shapes.keys() - expected.keys())
    if unexpected:
        raise CheckpointError(f"{path}: unexpected tensors for {config.architecture}, e.g. {unexpected[:3]}")
    for name, shape in expected.items():
        if shapes[name] != shape:
            raise CheckpointError(f"{path}: {name} has shape {list(shapes[name])}, the config implies {list(shape)}")
    return config
