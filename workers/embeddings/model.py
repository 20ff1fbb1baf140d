"""One loaded embedding model: tokenizer, encoder and pooling head. `embed(seqs)` is the step the batcher runs."""

from pathlib import Path

import torch

from workers.embeddings.config import EncoderConfig
from workers.embeddings.encoder import BertEncoder, PackedBatch
from workers.embeddings.pooling import pool
from workers.embeddings.tokenizer import EncoderTokenizer


class EmbeddingModel:
    def __init__(self, folder: Path, *, dtype: torch.dtype = torch.float32, device: str = "cpu"):
        self.folder = folder
        self.encoder = BertEncoder.from_folder(folder, dtype=dtype, device=device)
        self.tokenizer = EncoderTokenizer(folder / "tokenizer.json")
        if self.tokenizer.vocab_size > self.config.vocab_size:
            raise ValueError(f"{folder}: tokenizer has {self.tokenizer.vocab_size} tokens, the model "
                             f"{self.config.vocab_size}")

    @property
    def config(self) -> EncoderConfig:
        return self.encoder.config

    @property
    def max_seq_len(self) -> int:
        return self.config.max_seq_len

    @property
    def dimensions(self) -> int:
        return self.config.dimensions

    def embed(self, seqs: list[list[int]]) -> torch.Tensor:
        """Token-id sequences (special tokens included, each 1..max_seq_len long) -> `[B, dimensions]` float32 on
        the CPU."""
        batch = PackedBatch.from_sequences(seqs, self.encoder.device)
        return pool(self.encoder.forward(batch), batch, self.config).cpu()
