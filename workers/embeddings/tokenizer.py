"""The encoder's tokenizer: HF `tokenizers` from tokenizer.json, with its own padding and truncation switched off
(the batcher packs sequences; the API decides about over-long inputs) and the special tokens its post-processor
wraps every input in, so token-id inputs get the same [CLS] ... [SEP] as text."""

import json
from pathlib import Path

from tokenizers import Tokenizer


class EncoderTokenizer:
    def __init__(self, tokenizer_json: Path):
        self._tok = Tokenizer.from_file(str(tokenizer_json))
        self._tok.no_padding()
        self._tok.no_truncation()
        self.vocab_size: int = self._tok.get_vocab_size(with_added_tokens=True)
        self.prefix_ids, self.suffix_ids = _special_wrap(json.loads(tokenizer_json.read_text()).get("post_processor"))

    @property
    def num_special_tokens(self) -> int:
        return len(self.prefix_ids) + len(self.suffix_ids)

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        """Token ids with the model's special tokens, untruncated."""
        return [e.ids for e in self._tok.encode_batch(texts, add_special_tokens=True)]

    def wrap(self, ids: list[int]) -> list[int]:
        """A caller's token ids (text tokens, as `encode_batch` would produce between the special tokens)."""
        return [*self.prefix_ids, *ids, *self.suffix_ids]

    def truncate(self, ids: list[int], max_len: int) -> list[int]:
        """Keeps the first tokens and the closing special tokens: what sentence-transformers' truncation gives."""
        if len(ids) <= max_len:
            return ids
        keep = max_len - len(self.suffix_ids)
        return ids[:keep] + (ids[len(ids) - len(self.suffix_ids):] if self.suffix_ids else [])


def _special_wrap(post: dict | None) -> tuple[list[int], list[int]]:
    """(ids before, ids after) the sequence in a single-input post-processor (TemplateProcessing, BertProcessing,
    RobertaProcessing); none for a tokenizer without one."""
    if not post:
        return [], []
    kind = post.get("type")
    if kind in ("BertProcessing", "RobertaProcessing"):
        return [int(post["cls"][1])], [int(post["sep"][1])]
    if kind == "TemplateProcessing":
        specials = post.get("special_tokens", {})
        before: list[int] = []
        after: list[int] = []
        seen_sequence = False
        for piece in post.get("single", []):
            if "Sequence" in piece:
                seen_sequence = True
            elif "SpecialToken" in piece:
                ids = [int(i) for i in specials[piece["SpecialToken"]["id"]]["ids"]]
                (after if seen_sequence else before).extend(ids)
        return before, after
    if kind == "Sequence":
        for proc in post.get("processors", []):
            wrap = _special_wrap(proc)
            if wrap != ([], []):
                return wrap
    return [], []
