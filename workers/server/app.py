"""The worker's FastAPI app: OpenAI's chat and completions endpoints over one engine, plus models, health, metrics.

`create_app(engine, settings)` takes a constructed engine, so the CLI decides how the model is loaded and tests can
build the app around any engine that follows the contract.
"""

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Annotated, Any

import jinja2
from fastapi import Depends, FastAPI, Header, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from contracts import ACCOUNT_ID_HEADER, WORKER_SECRET_HEADER, parse_worker_model_name, worker_model_name
from contracts.model_kinds import MODEL_KIND_CHAT
from workers.server import params as P
from workers.server import serving
from workers.server.adapter_events import AdapterDeletions
from workers.server.async_engine import AsyncEngine, EngineLike
from workers.server.chat_tools import ChatPlan, plan_chat
from workers.server.errors import (
    ModelNotFoundError,
    OpenAIError,
    check_worker_secret,
    install_error_handlers,
    parse_body,
)
from workers.server.heartbeat import Heartbeat
from workers.server.metrics import CONTENT_TYPE, WorkerMetrics
from workers.server.protocol import ChatCompletionRequest, CompletionRequest, ModelCard, ModelList
from workers.structured.compiler import GrammarCompiler

DEFAULT_SERVED_MODEL_NAME = "smollm2-135m-instruct"


@dataclass(slots=True)
class ServerSettings:
    served_model_name: str = DEFAULT_SERVED_MODEL_NAME
    worker_id: str = "w0"
    url: str = "http://127.0.0.1:8001"  # what the gateway should call, as written to the registry
    region: str = "local"
    max_loras: int = 4
    redis_url: str | None = None  # None: no registry heartbeat (a worker tried alone)
    worker_secret: str | None = None  # HEARTH_WORKER_SECRET; when set, /v1/* requires x-hearth-worker-secret
    heartbeat_interval_s: float = 1.0


class Worker:
    """What the routes share: the engine loop, its tokenizer's facts, the served name and the metrics."""

    def __init__(self, engine: EngineLike, settings: ServerSettings):
        self.settings = settings
        self.metrics = WorkerMetrics(settings.served_model_name)
        self.engine = AsyncEngine(engine, self.metrics)
        self.tokenizer = engine.tokenizer
        # The context the engine serves (the model's, capped by the KV pool); the engine checks requests against it.
        self.max_model_len = engine.max_model_len
        self.serves_adapters = engine.serves_adapters
        self.resident_adapters = engine.resident_adapters  # the registry's routing affinity; any thread
        self.tokens = serving.TokenText(engine.tokenizer)
        # response_format / tools grammars for this vocabulary: compiled on their own threads, cached by schema
        self.grammars = GrammarCompiler(engine.tokenizer, engine.vocab_size, engine.tokenizer.eos_token_ids)

    def resolve_model(self, model: str) -> str | None:
        """The adapter uid a request's `model` (`<base>` or `<base>:<uid>`) names, None for the base model; 404 for
        another model. The engine resolves the adapter itself (once, in new_request: 404 if the store lacks it)."""
        name = self.settings.served_model_name
        if model == name:
            return None
        try:
            base, adapter_uid = parse_worker_model_name(model)
        except ValueError:
            raise ModelNotFoundError(model) from None
        if adapter_uid is None or base != name or not self.serves_adapters:
            raise ModelNotFoundError(model)
        return adapter_uid

    async def plan_chat(self, req: ChatCompletionRequest, messages: list[dict[str, Any]], params: Any) -> ChatPlan:
        """Tools and response_format -> the messages to render and params.grammar, compiled off the event loop and
        the stepping thread (waited for here, so the engine only ever sees a ready grammar)."""
        plan = plan_chat(
            messages, tools=req.tools, tool_choice=req.tool_choice, parallel_tool_calls=req.parallel_tool_calls,
            response_format=req.response_format, chat_template=self.tokenizer.chat_template,
        )  # fmt: skip
        if plan.grammar is not None:
            params.grammar = await self.grammars.compile_async(plan.grammar)
        return plan

    def chat_prompt_ids(self, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None = None) -> list[int]:
        try:
            kw = {"tools": tools} if tools else {}  # only a template that lays out tools itself gets them
            text = self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, **kw)
        except (jinja2.TemplateError, ValueError) as exc:
            raise OpenAIError(f"The messages do not fit the model's chat template: {exc}", param="messages") from None
        return self.tokenizer.encode(text, add_special_tokens=False)  # the template wrote any BOS


def _worker(request: Request) -> Worker:
    return request.app.state.worker


def _check_secret(
    request: Request, worker_secret: Annotated[str | None, Header(alias=WORKER_SECRET_HEADER)] = None
) -> None:
    check_worker_secret(_worker(request).settings.worker_secret, worker_secret)


CurrentWorker = Annotated[Worker, Depends(_worker)]
Authorized = Depends(_check_secret)


def create_app(engine: EngineLike, settings: ServerSettings | None = None) -> FastAPI:
    settings = settings or ServerSettings()
    worker = Worker(engine, settings)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        worker.engine.start()
        heartbeat = deletions = None
        if settings.redis_url and worker.serves_adapters:
            deletions = AdapterDeletions(redis_url=settings.redis_url, on_deleted=worker.engine.drop_adapter)
            await deletions.start()
        if settings.redis_url:
            heartbeat = Heartbeat(
                redis_url=settings.redis_url,
                payload=lambda: _registry_entry(worker),
                worker_id=settings.worker_id,
                interval_s=settings.heartbeat_interval_s,
            )
            await heartbeat.start()
        try:
            yield
        finally:
            if heartbeat is not None:
                await heartbeat.stop()
            if deletions is not None:
                await deletions.stop()
            await worker.engine.stop()
            worker.grammars.close()

    app = FastAPI(title="Hearth worker", lifespan=lifespan)
    app.state.worker = worker
    install_error_handlers(app)

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {"status": "ok", "model": settings.served_model_name, **worker.engine.stats()}

    @app.get("/metrics")
    async def metrics() -> Response:
        return Response(worker.metrics.render(), media_type=CONTENT_TYPE)

    @app.get("/v1/models", dependencies=[Authorized])
    async def models(w: CurrentWorker) -> ModelList:
        base = w.settings.served_model_name
        cards = [ModelCard(id=base, root=base, max_model_len=w.max_model_len)]
        cards += [ModelCard(id=worker_model_name(base, uid), root=uid, parent=base) for uid in w.resident_adapters()]
        return ModelList(data=cards)

    @app.post("/v1/chat/completions", dependencies=[Authorized])
    async def chat_completions(request: Request, w: CurrentWorker) -> Response:
        arrival = time.perf_counter()
        req = parse_body(await request.body(), ChatCompletionRequest)
        adapter_id = w.resolve_model(req.model)
        include_usage = P.include_usage(req)
        messages = P.chat_messages(req)
        params = P.chat_sampling_params(req)
        plan = await w.plan_chat(req, messages, params)
        prompt_ids = await asyncio.to_thread(w.chat_prompt_ids, plan.messages, plan.template_tools)
        if (predicted := P.prediction_text(req)) is not None:  # drafts for speculative decoding
            params.prediction = await asyncio.to_thread(w.tokenizer.encode, predicted, add_special_tokens=False)
        request_id = f"chatcmpl-{uuid.uuid4().hex}"
        stream = await w.engine.add_request(request_id, prompt_ids, params, adapter_id, arrival,
                                            param_names=P.chat_param_names(req), account_id=_account(request))
        chunks = serving.ChatChunks(request_id, req.model, w.tokens, req.logprobs, req.n, parses_calls=plan.parses_calls)
        if req.stream:
            return _sse_response(serving.sse_stream(stream, chunks, include_usage, continuous_usage=P.continuous_usage(req),
                                                    num_prompt_tokens=len(prompt_ids)), request_id)
        result = await serving.collect(stream, request, req.n)
        if result is None:
            return _client_gone()
        out = serving.chat_completion(request_id, req.model, result, w.tokens, req.logprobs,
                                      parses_calls=plan.parses_calls)
        return JSONResponse(out.model_dump(mode="json"), headers={"x-request-id": request_id})

    @app.post("/v1/completions", dependencies=[Authorized])
    async def completions(request: Request, w: CurrentWorker) -> Response:
        arrival = time.perf_counter()
        req = parse_body(await request.body(), CompletionRequest)
        adapter_id = w.resolve_model(req.model)
        include_usage = P.include_usage(req)
        params = P.completion_sampling_params(req)
        prompt = P.completion_prompt(req)
        prompt_ids = await asyncio.to_thread(w.tokenizer.encode, prompt) if isinstance(prompt, str) else list(prompt)
        request_id = f"cmpl-{uuid.uuid4().hex}"
        stream = await w.engine.add_request(request_id, prompt_ids, params, adapter_id, arrival,
                                            param_names=P.COMPLETION_PARAM_NAMES, account_id=_account(request))
        logprobs = req.logprobs is not None
        chunks = serving.CompletionChunks(request_id, req.model, w.tokens, logprobs, req.n)
        if req.stream:
            return _sse_response(serving.sse_stream(stream, chunks, include_usage, continuous_usage=P.continuous_usage(req),
                                                    num_prompt_tokens=len(prompt_ids)), request_id)
        result = await serving.collect(stream, request, req.n)
        if result is None:
            return _client_gone()
        out = serving.completion(request_id, req.model, result, w.tokens, logprobs)
        return JSONResponse(out.model_dump(mode="json"), headers={"x-request-id": request_id})

    return app


def _account(request: Request) -> str | None:
    """The calling account, as the gateway names it (trusted: /v1 sits behind the worker secret). It namespaces the
    prefix cache; None (a client talking to the worker directly) gets the engine's default namespace."""
    return request.headers.get(ACCOUNT_ID_HEADER) or None


def _sse_response(body: AsyncIterator[str], request_id: str) -> StreamingResponse:
    headers = {"cache-control": "no-cache", "x-accel-buffering": "no", "x-request-id": request_id}
    return StreamingResponse(body, media_type="text/event-stream", headers=headers)


def _client_gone() -> Response:
    return Response(status_code=499)  # nginx's "client closed request"; nobody reads it


def _registry_entry(w: Worker) -> dict[str, Any]:
    stats = w.engine.stats()
    s = w.settings
    return {
        "worker_id": s.worker_id,
        "url": s.url,
        "base_model": s.served_model_name,
        "kind": MODEL_KIND_CHAT,  # gateways route chat/completions only to chat workers (embeddings: workers.embeddings)
        "region": s.region,
        "max_loras": s.max_loras,
        "resident_adapters": w.resident_adapters(),
        "num_running": stats.get("num_running", 0),
        "num_waiting": stats.get("num_waiting", 0),
        "num_free_blocks": stats.get("num_free_blocks", 0),
        "updated_at": time.time(),
    }

