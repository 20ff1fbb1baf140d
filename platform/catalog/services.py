"""Adding a base model to the catalog: read its checkpoint with the engine's own loader checks, record its
architecture, context length and the projection shapes adapters are validated against, in one transaction."""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
from pathlib import Path

from django.db import transaction

from catalog.models import BaseModel
from hearth_platform.errors import ApplicationError, ConflictError

CATALOG_ACCOUNT = "hearth"  # the catalog's models are `accounts/hearth/models/<slug>`
_SLUG_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,99}$")


def checkpoint_inspect(*, path: str) -> object:
    """-> the engine's ModelConfig of the checkpoint, or ApplicationError with the loader's or tokenizer's reason."""
    from workers.loader import CheckpointError, GGUFError  # the engine's code: what it refuses, we refuse
    from workers.loader.inspect import check_checkpoint
    from workers.model_config import UnsupportedModelError
    from workers.models.llama import WeightLoadError
    from workers.tokenizer import Tokenizer, TokenizerError

    try:
        config = check_checkpoint(path)
        Tokenizer.from_path(path)  # a worker needs it too: a GGUF's SentencePiece vocabulary, say, is not read yet
    except (UnsupportedModelError, CheckpointError, GGUFError, WeightLoadError, TokenizerError) as exc:
        raise ApplicationError(f"The engine can't load {path}: {exc}", field="path", code="unloadable") from None
    except (KeyError, TypeError, ValueError) as exc:  # a config.json missing a required key, or of the wrong type
        raise ApplicationError(f"The engine can't load {path}: bad config ({exc!r})", field="path",
                               code="unloadable") from None
    return config


def _price(value: str | Decimal, field: str) -> Decimal:
    try:
        price = Decimal(str(value))
    except InvalidOperation:
        raise ApplicationError(f"{field} must be a decimal number of USD per million tokens.", field=field) from None
    if not price.is_finite() or price < 0:
        raise ApplicationError(f"{field} must be a non-negative number.", field=field)
    return price


@transaction.atomic
def base_model_add(
    *, path: str, slug: str, price_input: str | Decimal, price_output: str | Decimal, price_cached: str | Decimal,
    display_name: str = "",
) -> BaseModel:
    """Check the checkpoint, then create the catalog row and its adapter shape. Nothing is written on a refusal."""
    from adapters.models import BaseModelShape

    if not _SLUG_RE.match(slug or ""):
        raise ApplicationError("A slug is 1-100 lowercase letters, digits, '.', '-' or '_'.", field="slug")
    prices = {
        "price_input_per_mtok": _price(price_input, "price_input"),
        "price_output_per_mtok": _price(price_output, "price_output"),
        "price_cached_input_per_mtok": _price(price_cached, "price_cached"),
    }
    if prices["price_cached_input_per_mtok"] > prices["price_input_per_mtok"]:
        raise ApplicationError("The cached-input price can't exceed the input price.", field="price_cached")
    if BaseModel.objects.filter(slug=slug).exists():
        raise ConflictError(f"The catalog already has a model '{slug}'.", field="slug", code="duplicate")
    config = checkpoint_inspect(path=path)
    weights = Path(path).resolve()
    model = BaseModel.objects.create(
        slug=slug,
        public_name=f"accounts/{CATALOG_ACCOUNT}/models/{slug}",
        display_name=display_name or slug,
        architecture=config.architecture,  # type: ignore[attr-defined]
        context_length=config.max_position_embeddings,  # type: ignore[attr-defined]
        weights_uri=str(weights),
        is_active=True,
        **prices,
    )
    BaseModelShape.objects.create(base_model=model, **shape_of(config))
    return model


def shape_of(config: object) -> dict[str, int]:
    """The BaseModelShape fields of an engine ModelConfig."""
    return {f: int(getattr(config, f)) for f in
            ("hidden_size", "intermediate_size", "num_layers", "num_heads", "num_kv_heads", "head_dim")}  # fmt: skip
