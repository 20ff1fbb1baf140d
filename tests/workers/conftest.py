"""Shared, session-scoped model fixtures for tests/workers: SmolLM2 is loaded (and dequantized) once per session."""

from pathlib import Path

import pytest
import torch

from workers.loader import load_model
from workers.models.llama import LlamaForCausalLM
from workers.tokenizer import Tokenizer


@pytest.fixture(scope="session")
def smollm2_fp32(smollm2_gguf_path: Path) -> LlamaForCausalLM:
    return load_model(smollm2_gguf_path, dtype=torch.float32)


@pytest.fixture(scope="session")
def smollm2_bf16(smollm2_gguf_path: Path) -> LlamaForCausalLM:
    return load_model(smollm2_gguf_path, dtype=torch.bfloat16)


@pytest.fixture(scope="session")
def smollm2_tokenizer(smollm2_gguf_path: Path) -> Tokenizer:
    return Tokenizer.from_path(smollm2_gguf_path)
