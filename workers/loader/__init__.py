"""Load a model (any family of workers.model_config) into our own code: a GGUF file or an HF folder, or random weights of a config."""

import contextlib
from collections.abc import Iterator
from pathlib import Path

import torch

from workers.loader.gguf_file import GGUFError, gguf_config, gguf_weights, open_gguf
from workers.loader.hf_folder import CheckpointError, hf_config, hf_weights
from workers.model_config import ModelConfig
from workers.models.llama import LlamaForCausalLM
from workers.models.registry import model_class

__all__ = ["CheckpointError", "GGUFError", "build_random_model", "load_config", "load_model"]


def _is_gguf(path: Path) -> bool:
    return path.is_file() and path.suffix == ".gguf"


def load_config(path: str | Path) -> ModelConfig:
    path = Path(path)
    if _is_gguf(path):
        return gguf_config(open_gguf(path))
    if (path / "config.json").exists():
        return hf_config(path)
    raise CheckpointError(f"{path}: neither a .gguf file nor a folder with config.json")


def load_model(
    path: str | Path, dtype: torch.dtype = torch.bfloat16, device: str | torch.device = "cpu",
    quantize: str | None = None,
) -> LlamaForCausalLM:
    # quantize "int8" | "int4": weight-only quantized linears and token table (workers/models/quant_linear.py);
    # a GGUF file's Q4_0/Q4_1/Q8_0 blocks load straight into them, an HF folder is quantized after loading
    path = Path(path)
    if quantize is not None and _is_gguf(path):
        from workers.loader.gguf_quant import load_gguf_quantized

        return load_gguf_quantized(path, quantize, dtype, str(device))
    if _is_gguf(path):
        reader = open_gguf(path)
        config = gguf_config(reader)
        weights: Iterator[tuple[str, torch.Tensor]] = gguf_weights(reader, config)
    elif (path / "config.json").exists():
        config = hf_config(path)
        weights = hf_weights(path)
    else:
        raise CheckpointError(f"{path}: neither a .gguf file nor a folder with config.json")
    model = empty_model(config, dtype, device)
    model.load_weights(weights)
    if quantize is not None:
        from workers.models.quant_linear import quantize_model

        quantize_model(model, quantize)
    return model.eval()


def empty_model(config: ModelConfig, dtype: torch.dtype, device: str | torch.device) -> LlamaForCausalLM:
    # Parameters are allocated uninitialised, straight in the target dtype and device (no fp32 detour).
    with _default_dtype(dtype), torch.device(device):
        return model_class(config)(config)


def build_random_model(
    config: ModelConfig, dtype: torch.dtype = torch.bfloat16, device: str | torch.device = "cpu", seed: int = 0
) -> LlamaForCausalLM:
    """Random weights of the given shape: GPU benchmarks use it, since the GGUF file doesn't travel there."""
    model = empty_model(config, dtype, device)
    gen = torch.Generator(device="cpu").manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            values = 0.02 * torch.randn(p.shape, generator=gen)  # HF's initializer_range
            p.copy_(values + 1.0 if name.endswith("norm.weight") else values)
    return model.eval()


@contextlib.contextmanager
def _default_dtype(dtype: torch.dtype) -> Iterator[None]:
    old = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(old)
