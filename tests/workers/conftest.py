"""Shared, session-scoped model fixtures for tests/workers: SmolLM2 is loaded (and dequantized) once per session."""

from collections.abc import Iterator
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


@pytest.fixture(scope="module")
def torch_one_thread() -> Iterator[None]:
    # Several test processes share this machine's 2 cores; torch's OpenMP threads then stall each other on every
    # small op (measured under load ~8: 8 greedy SmolLM2 decode steps 15 s with 2 threads, 1.8 s with 1).
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(old)
