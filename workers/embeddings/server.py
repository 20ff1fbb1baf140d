"""The embedding worker's FastAPI app: OpenAI's `/v1/embeddings` and `/v1/models`, `/health`, `/metrics`, and the
registry heartbeat (kind "embedding", so gateways route only embedding requests here).

`create_app(model, settings)` takes a loaded model, so the CLI decides how it is loaded and tests reuse one.
"""

import asyncio
import base64
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Annotated, Any

import torch
from fastapi import Depends, FastAPI, Header, Request
from fastapi.responses import JSONResponse, Response

from contracts import WORKER_SECRET_HEADER
from contracts.model_kinds import MODEL_KIND_EMBEDDING
from workers.embeddings import inputs
from workers.embeddings.batcher import BatcherStoppedError, EmbeddingBatcher
from workers.embeddings.metrics import EmbeddingMetrics
from workers.embeddings.model import EmbeddingModel
from workers.embeddings.protocol import MAX_REQUEST_TOKENS, EmbeddingRequest
from workers.server.errors import (
    EngineError,
    ModelNotFoundError,
    check_worker_secret,
    install_error_handlers,
    parse_body,
)
from workers.server.heartbeat import Heartbeat
from workers.server.metrics import CONTENT_TYPE

DEFAULT_SERVED_MODEL_NAME = "all-minilm-l6-v2"


@dataclass(slots=True)
class EmbeddingServerSettings:
    served_model_name: str = DEFAULT_SERVED_MODEL_NAME
    worker_id: str = "e0"
    url: str = "http://127.0.0.1:8002"  # what the gateway should call, as written to the registry
    region: str = "local"
    redis_url: str | None = None  # None: no registry heartbeat (a worker tried alone)
    worker_secret: str | None = None  # HEARTH_WORKER_SECRET; when set, /v1/* requires the worker-secret header
    heartbeat_interval_s: float = 1.0
    max_num_batched_tokens: int = 8192  # the batcher's token budget per step
    max_num_seqs: int = 256
    max_request_tokens: int = MAX_REQUEST_TOKENS


class EmbeddingWorker:
    def __init__(self, model: EmbeddingModel, settings: EmbeddingServerSettings):
        self.model = model
        self.settings = settings
        self.metrics = EmbeddingMetrics(settings.served_model_name)
        self.batcher = EmbeddingBatcher(model.embed, max_num_batched_tokens=settings.max_num_batched_tokens,
                                        max_num_seqs=settings.max_num_seqs, metrics=self.metrics)

    def registry_entry(self) -> dict[str, Any]:
        stats = self.batcher.stats()
        s = self.settings
        return {
            "worker_id": s.worker_id, "url": s.url, "base_model": s.served_model_name, "kind": MODEL_KIND_EMBEDDING,
            "region": s.region, "max_loras": 0, "resident_adapters": [], "num_running": stats["num_running"],
            "num_waiting": stats["num_waiting"], "num_free_blocks": 0, "updated_at": time.time(),
        }

    async def embed(self, req: EmbeddingRequest) -> dict[str, Any]:
        if req.model != self.settings.served_model_name:
            raise ModelNotFoundError(req.model)
        m = self.model
        items = inputs.check_shape(req, m.dimensions)
        seqs = await asyncio.to_thread(
            inputs.tokenize, items, m.tokenizer, vocab_size=m.config.vocab_size, max_seq_len=m.max_seq_len,
            max_request_tokens=self.settings.max_request_tokens, truncate=req.truncate)
        try:
            rows = await self.batcher.embed(seqs)
        except BatcherStoppedError as exc:
            raise EngineError(str(exc)) from None
        num_tokens = sum(len(s) for s in seqs)
        data = [{"object": "embedding", "index": i, "embedding": _encode(row, req.encoding_format)}
                for i, row in enumerate(rows)]
        return {"object": "list", "data": data, "model": req.model,
                "usage": {"prompt_tokens": num_tokens, "total_tokens": num_tokens}}


def _encode(row: torch.Tensor, encoding_format: str) -> list[float] | str:
    if encoding_format == "base64":  # little-endian float32, what the openai SDK decodes with np.frombuffer
        return base64.b64encode(row.numpy().astype("<f4", copy=False).tobytes()).decode("ascii")
    return row.tolist()


def _worker(request: Request) -> EmbeddingWorker:
    return request.app.state.worker


def _check_secret(
    request: Request, worker_secret: Annotated[str | None, Header(alias=WORKER_SECRET_HEADER)] = None
) -> None:
    check_worker_secret(_worker(request).settings.worker_secret, worker_secret)


CurrentWorker = Annotated[EmbeddingWorker, Depends(_worker)]
Authorized = Depends(_check_secret)


def create_app(model: EmbeddingModel, settings: EmbeddingServerSettings | None = None) -> FastAPI:
    settings = settings or EmbeddingServerSettings()
    worker = EmbeddingWorker(model, settings)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        worker.batcher.start()
        heartbeat = None
        if settings.redis_url:
            heartbeat = Heartbeat(redis_url=settings.redis_url, payload=worker.registry_entry,
                                  worker_id=settings.worker_id, interval_s=settings.heartbeat_interval_s)
            await heartbeat.start()
        try:
            yield
        finally:
            if heartbeat is not None:
                await heartbeat.stop()
            await worker.batcher.stop()

    app = FastAPI(title="Hearth embedding worker", lifespan=lifespan)
    app.state.worker = worker
    install_error_handlers(app)

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {"status": "ok", "model": settings.served_model_name, "kind": MODEL_KIND_EMBEDDING,
                **worker.batcher.stats()}

    @app.get("/metrics")
    async def metrics() -> Response:
        worker.metrics.set_waiting(worker.batcher.stats()["num_waiting"])
        return Response(worker.metrics.render(), media_type=CONTENT_TYPE)

    @app.get("/v1/models", dependencies=[Authorized])
    async def models(w: CurrentWorker) -> dict[str, Any]:
        card = {"id": settings.served_model_name, "object": "model", "created": 0, "owned_by": "hearth",
                "root": settings.served_model_name, "parent": None, "kind": MODEL_KIND_EMBEDDING,
                "max_model_len": w.model.max_seq_len, "dimensions": w.model.dimensions}
        return {"object": "list", "data": [card]}

    @app.post("/v1/embeddings", dependencies=[Authorized])
    async def embeddings(request: Request, w: CurrentWorker) -> Response:
        arrival = time.perf_counter()
        req = parse_body(await request.body(), EmbeddingRequest)
        body = await w.embed(req)
        request_id = f"embd-{uuid.uuid4().hex}"
        w.metrics.observe_request(len(body["data"]), body["usage"]["prompt_tokens"], time.perf_counter() - arrival)
        return JSONResponse(body, headers={"x-request-id": request_id})

    return app

