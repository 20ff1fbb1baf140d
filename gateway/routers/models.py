"""GET /v1/models and /v1/models/{model}: only what the caller's key may use, in OpenAI's Model shape."""

from fastapi import APIRouter

from gateway.db import ModelEntry
from gateway.deps import CurrentKey, ServicesDep

router = APIRouter(prefix="/v1")


def _model_object(entry: ModelEntry) -> dict[str, object]:
    return {"id": entry.public_name, "object": "model", "created": entry.created, "owned_by": entry.owned_by}


@router.get("/models")
async def list_models(key: CurrentKey, services: ServicesDep) -> dict[str, object]:
    entries = await services.catalog.models_for(key)
    return {"object": "list", "data": [_model_object(e) for e in entries]}


# Public names contain slashes (accounts/hearth/models/x), hence the path converter.
@router.get("/models/{model:path}")
async def retrieve_model(model: str, key: CurrentKey, services: ServicesDep) -> dict[str, object]:
    return _model_object(await services.catalog.resolve(key, model))
