"""POST /v1/embeddings' body, to OpenAI's letter: `input` a string, strings, token ids or lists of token ids (at most
2,048 inputs), `encoding_format` float|base64, `dimensions`, `user`, plus Hearth's `truncate` (cut over-long inputs
instead of refusing them). Shape and counts are checked here; emptiness, context length, the vocabulary and
`dimensions` against the model are the embedding worker's checks (workers/embeddings/inputs.py), relayed as its 400.

It offers what gateway.lifecycle.InferenceCall asks of a body (`check_extras`, `upstream_body`, `prompt_chars`,
`max_new_tokens`, `stream`), so an embedding request lives the same life as a chat one: keys, limits (TPM counts
its input tokens), routing to the model's pool, usage metered from the worker's count, `usage.cost`."""

from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

from contracts.model_kinds import MODEL_KIND_EMBEDDING
from gateway.db import ModelEntry
from gateway.errors import InvalidRequest
from gateway.schemas import InferenceRequest, TokenId

MAX_INPUTS = 2048  # as OpenAI
PASS_THROUGH = frozenset({"truncate"})


class EmbeddingRequest(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True, allow_inf_nan=False)

    kind: ClassVar[str] = MODEL_KIND_EMBEDDING  # what the named model must serve (lifecycle checks the catalog's)
    stream: ClassVar[bool] = False

    model: str = Field(min_length=1)
    # Counts are checked in check_extras, not here: a bound inside a union fails with pydantic's branch names.
    input: str | list[str] | list[TokenId] | list[list[TokenId]]
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = Field(default=None, ge=1, le=1 << 16)
    user: str | None = Field(default=None, max_length=256)

    def check_extras(self) -> None:
        if isinstance(self.input, list) and len(self.input) > MAX_INPUTS and not isinstance(self.input[0], int):
            raise InvalidRequest(f"'input' has {len(self.input)} items; at most {MAX_INPUTS} inputs fit in one request.",
                                 param="input", code="too_many_inputs")
        for name in self.model_extra or {}:
            if name not in PASS_THROUGH:
                raise InvalidRequest(f"Unrecognized request argument supplied: {name}", param=name)

    def upstream_body(self, worker_model: str) -> dict[str, Any]:
        body = self.model_dump(exclude_unset=True, exclude_none=True)
        body["model"] = worker_model
        return body

    @property
    def client_wants_usage(self) -> bool:
        return True

    def prompt_chars(self) -> int:
        """For the rate limiter's estimate (chars / 4); settled with the worker's token count."""
        raw = self.input
        if isinstance(raw, str):
            return len(raw)
        if raw and isinstance(raw[0], int):
            return 4 * len(raw)
        return sum(len(x) if isinstance(x, str) else 4 * len(x) for x in raw)  # type: ignore[arg-type]

    def max_new_tokens(self) -> int:
        return 0  # embeddings generate nothing


def check_model_kind(entry: ModelEntry, body: InferenceRequest | EmbeddingRequest, path: str) -> None:
    """A chat model on /v1/embeddings, or an embedding model on chat/completions: 400 naming the model."""
    if entry.kind == body.kind:
        return
    if body.kind == MODEL_KIND_EMBEDDING:
        message = (f"The model `{body.model}` is not an embedding model, so {path} can't serve it; call it with "
                   "/v1/chat/completions or /v1/completions, or name an embedding model.")
    else:
        message = (f"The model `{body.model}` is an embedding model, so {path} can't serve it; call it with "
                   "/v1/embeddings.")
    raise InvalidRequest(message, param="model", code="model_not_supported")
