"""POST /v1/chat/completions, /v1/completions and /v1/embeddings. Thin: the request's life after authentication is
gateway.lifecycle.InferenceCall's."""

from fastapi import APIRouter, Response

from gateway.deps import CurrentKey, MaxCostHeader, RequestId, ServicesDep
from gateway.embeddings import EmbeddingRequest
from gateway.lifecycle import InferenceCall
from gateway.schemas import ChatCompletionRequest, CompletionRequest
from gateway.strict_json import StrictJSONRoute

router = APIRouter(prefix="/v1", route_class=StrictJSONRoute)  # NaN / Infinity in the body: 400


@router.post("/chat/completions")
async def chat_completions(body: ChatCompletionRequest, key: CurrentKey, services: ServicesDep,
                           request_id: RequestId, max_cost: MaxCostHeader = None) -> Response:
    return await InferenceCall(services, key, body, "/v1/chat/completions", request_id,
                               max_cost_header=max_cost).respond()


@router.post("/completions")
async def completions(body: CompletionRequest, key: CurrentKey, services: ServicesDep,
                      request_id: RequestId, max_cost: MaxCostHeader = None) -> Response:
    return await InferenceCall(services, key, body, "/v1/completions", request_id, max_cost_header=max_cost).respond()


@router.post("/embeddings")
async def embeddings(body: EmbeddingRequest, key: CurrentKey, services: ServicesDep, request_id: RequestId) -> Response:
    return await InferenceCall(services, key, body, "/v1/embeddings", request_id).respond()
