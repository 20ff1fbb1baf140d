"""GET /v1/models and /v1/models/{model}: only what the caller's key may use, in OpenAI's Model shape."""

from fastapi import APIRouter

from billing.pricing import Prices
from gateway.db import ModelEntry
from gateway.deps import CurrentKey, ServicesDep
from gateway.services import Services

router = APIRouter(prefix="/v1")


def _model_object(entry: ModelEntry, prices: Prices | None) -> dict[str, object]:
    # OpenAI's Model fields, then what a developer needs beside them: the context length and the catalog prices in
    # USD per million tokens (decimal strings, as the control plane's /api/v1/models; an adapter costs its base's)
    out: dict[str, object] = {"id": entry.public_name, "object": "model", "created": entry.created,
                              "owned_by": entry.owned_by, "context_length": entry.context_length}
    if prices is not None:
        out |= {"price_input_per_mtok": str(prices.input_per_mtok),
                "price_cached_input_per_mtok": str(prices.cached_input_per_mtok),
                "price_output_per_mtok": str(prices.output_per_mtok)}  # fmt: skip
    return out


async def _described(services: Services, entries: list[ModelEntry]) -> list[dict[str, object]]:
    return [_model_object(e, await services.prices.prices(e.base_model_id)) for e in entries]


@router.get("/models")
async def list_models(key: CurrentKey, services: ServicesDep) -> dict[str, object]:
    entries = await services.catalog.models_for(key)
    routes = [{"id": r.public_name, "object": "model", "created": r.created, "owned_by": r.owned_by, "route": True}
              for r in await services.routes.routes_for(key.account_id)]
    return {"object": "list", "data": [*await _described(services, entries), *routes]}


# Public names contain slashes (accounts/hearth/models/x), hence the path converter.
@router.get("/models/{model:path}")
async def retrieve_model(model: str, key: CurrentKey, services: ServicesDep) -> dict[str, object]:
    entry = await services.catalog.resolve(key, model)
    return _model_object(entry, await services.prices.prices(entry.base_model_id))
