"""OpenAI's embeddings request and response, to the letter (https://platform.openai.com/docs/api-reference/embeddings),
plus one extra field: `truncate` (default false) cuts inputs over the model's context instead of refusing them.

Strict mode from JSON: `"dimensions": "384"` or `"input": [1, "a"]` is a 400, not a coercion. Unknown fields are
ignored, as OpenAI-compatible servers do.
"""

from typing import Literal

from pydantic import BaseModel, ConfigDict

MAX_INPUTS = 2048  # OpenAI's limit on the number of inputs in one request
MAX_REQUEST_TOKENS = 300_000  # OpenAI's cap on the tokens summed over one request's inputs


class EmbeddingRequest(BaseModel):
    model_config = ConfigDict(strict=True, extra="ignore", allow_inf_nan=False)

    model: str
    input: str | list[str] | list[int] | list[list[int]]
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = None
    user: str | None = None
    truncate: bool = False  # Hearth's extra: keep the first max_seq_len tokens (closing special token kept)


class EmbeddingData(BaseModel):
    object: Literal["embedding"] = "embedding"
    index: int
    embedding: list[float] | str  # base64 of little-endian float32 when encoding_format is "base64"


class EmbeddingUsage(BaseModel):
    prompt_tokens: int
    total_tokens: int


class EmbeddingResponse(BaseModel):
    object: Literal["list"] = "list"
    data: list[EmbeddingData]
    model: str
    usage: EmbeddingUsage
