"""Helpers shared by the embedding tests."""

import torch


def cosine(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.cosine_similarity(a.float(), b.float(), dim=-1)


# Lengths from 1 word to past the 256-token context, with punctuation, accents, CJK and emoji (the tokenizer's
# normaliser and [UNK] paths), so a packed batch mixes very different lengths.
TEXTS = [
    "hi",
    "The quick brown fox jumps over the lazy dog.",
    "Crème brûlée, naïve café — déjà vu. 東京は日本の首都です。 🙂",
    "Retrieval-augmented generation retrieves passages by embedding similarity. " * 6,
    "Hearth serves chat and embedding models behind one OpenAI-compatible gateway; adapters cost the same as "
    "their base model, and every token is metered from the worker's own count. " * 4,
    "short again",
]
