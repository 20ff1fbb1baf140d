"""The real all-MiniLM-L6-v2, loaded once per session both by our encoder and by sentence-transformers (the
reference, run offline from the package's folder)."""

import os
from pathlib import Path

import pytest

from workers.embeddings.model import EmbeddingModel


@pytest.fixture(scope="session")
def minilm(minilm_path: Path) -> EmbeddingModel:
    return EmbeddingModel(minilm_path)


@pytest.fixture(scope="session")
def st_minilm(minilm_path: Path):
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(minilm_path), device="cpu")
