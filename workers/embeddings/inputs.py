"""An embeddings request's `input` -> token-id sequences the batcher can run, or an OpenAIError naming the input.

Token-id inputs are the model's text tokens (what its tokenizer gives without special tokens); the worker wraps
them in the same special tokens as text ([CLS] ... [SEP] for BERT), so `input=[ids]` and `input=text` embed alike.
Usage counts every token the model ran, special tokens included.
"""

from workers.embeddings.protocol import MAX_INPUTS, EmbeddingRequest
from workers.embeddings.tokenizer import EncoderTokenizer
from workers.server.errors import OpenAIError


def check_shape(req: EmbeddingRequest, dimensions: int) -> list[str] | list[list[int]]:
    """The inputs as a list (a single string or id list becomes one input), before tokenizing."""
    if req.dimensions is not None and req.dimensions != dimensions:
        raise OpenAIError(
            f"This model returns {dimensions}-dimensional embeddings and does not support shortening them "
            f"(no Matryoshka training); omit 'dimensions' or pass {dimensions}.", param="dimensions",
            code="unsupported_dimensions")
    raw = req.input
    if isinstance(raw, str):
        items: list[str] | list[list[int]] = [raw]
    elif raw and isinstance(raw[0], int):
        items = [raw]  # type: ignore[list-item]  # one input given as token ids
    else:
        items = raw  # type: ignore[assignment]
    if not items:
        raise OpenAIError("'input' is an empty list; send at least one string or token list.", param="input",
                          code="empty_input")
    if len(items) > MAX_INPUTS:
        raise OpenAIError(f"'input' has {len(items)} items; at most {MAX_INPUTS} inputs fit in one request.",
                          param="input", code="too_many_inputs")
    for i, item in enumerate(items):
        if len(item) == 0:
            kind = "an empty string" if isinstance(item, str) else "an empty token list"
            raise OpenAIError(f"'input[{i}]' is {kind}; every input needs at least one token.",
                              param=f"input[{i}]", code="empty_input")
    return items


def tokenize(items: list[str] | list[list[int]], tok: EncoderTokenizer, *, vocab_size: int, max_seq_len: int,
             max_request_tokens: int, truncate: bool) -> list[list[int]]:
    if isinstance(items[0], str):
        seqs = tok.encode_batch(items)  # type: ignore[arg-type]
    else:
        seqs = []
        for i, ids in enumerate(items):
            bad = next((t for t in ids if not 0 <= t < vocab_size), None)  # type: ignore[union-attr]
            if bad is not None:
                raise OpenAIError(f"'input[{i}]' has token id {bad}, outside this model's vocabulary "
                                  f"[0, {vocab_size}).", param=f"input[{i}]", code="invalid_token_id")
            seqs.append(tok.wrap(ids))  # type: ignore[arg-type]
    total = 0
    for i, ids in enumerate(seqs):
        if len(ids) > max_seq_len:
            if not truncate:
                raise OpenAIError(
                    f"'input[{i}]' is {len(ids)} tokens, over this model's maximum context of {max_seq_len} tokens; "
                    "shorten it, or pass \"truncate\": true to keep its first tokens.", param=f"input[{i}]",
                    code="context_length_exceeded")
            seqs[i] = ids = tok.truncate(ids, max_seq_len)
        total += len(ids)
    if total > max_request_tokens:
        raise OpenAIError(f"The inputs total {total} tokens; at most {max_request_tokens} tokens fit in one "
                          "request. Split it into smaller requests.", param="input", code="max_tokens_per_request")
    return seqs
