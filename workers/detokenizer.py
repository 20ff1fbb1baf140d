"""Incremental detokenization over any tokenizer with decode(ids, skip_special_tokens), in the prefix-window style
of vLLM/TGI: decode a short window before and after the new token and emit the difference, holding back while the
text ends in U+FFFD (an incomplete UTF-8 sequence split across byte tokens).

Standalone (no tokenizers/jinja2/gguf imports), so the engine can use it where only torch is installed; the
tokenizer module re-exports it.
"""

from collections.abc import Sequence
from typing import Protocol


class Decoder(Protocol):
    def decode(self, ids: Sequence[int], skip_special_tokens: bool = True) -> str: ...


class IncrementalDetokenizer:
    def __init__(self, tokenizer: Decoder, prompt_ids: Sequence[int] = (), skip_special_tokens: bool = True) -> None:
        self._decode = tokenizer.decode
        self._skip = skip_special_tokens
        # A few prompt tokens give the first output token its context (a leading space, a merged byte).
        self._ids: list[int] = list(prompt_ids[-6:])
        self._prefix_offset = max(len(self._ids) - 5, 0)
        self._read_offset = len(self._ids)
        self.text = ""

    def add(self, token_id: int) -> str:
        """Append one token; -> the newly complete text, "" while the text ends inside a UTF-8 character."""
        self._ids.append(token_id)
        return self._emit(final=False)

    def flush(self) -> str:
        """At the end of the sequence: whatever is held back, replacement characters included."""
        return self._emit(final=True)

    def _emit(self, final: bool) -> str:
        prefix = self._decode(self._ids[self._prefix_offset : self._read_offset], self._skip)
        full = self._decode(self._ids[self._prefix_offset :], self._skip)
        # U+FFFD at the end: the last token ends partway through a multi-byte character; wait for the rest.
        if len(full) <= len(prefix) or (full.endswith("\ufffd") and not final):
            return ""
        delta = full[len(prefix) :]
        self._prefix_offset = self._read_offset
        self._read_offset = len(self._ids)
        self.text += delta
        return delta
