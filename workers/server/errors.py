"""Every error leaves the worker in OpenAI's shape: {"error": {"message", "type", "param", "code"}}.

Request bodies are parsed here rather than by FastAPI so that non-UTF-8 bytes, malformed JSON and wrong types all
come out as a 400 that names the offending parameter (FastAPI would answer 422, or a bare 400 for bad bytes).
"""

import hmac
import json
import logging
from typing import Any, TypeVar

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from workers.engine.sampling_params import InvalidRequestError

log = logging.getLogger("hearth.worker.server")

M = TypeVar("M", bound=BaseModel)


class OpenAIError(Exception):
    status_code = 400
    type = "invalid_request_error"

    def __init__(self, message: str, *, param: str | None = None, code: str | None = None):
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code


class ModelNotFoundError(OpenAIError):
    status_code = 404

    def __init__(self, model: str):
        super().__init__(f"The model `{model}` does not exist on this worker.", param="model", code="model_not_found")


class WorkerAuthError(OpenAIError):
    status_code = 401
    type = "authentication_error"

    def __init__(self) -> None:
        super().__init__("Missing or wrong x-hearth-worker-secret header.", code="invalid_worker_secret")


def check_worker_secret(expected: str, given: str | None) -> None:
    """The gateway's shared secret (contracts.WORKER_SECRET_HEADER), compared in constant time; no secret
    configured means an open worker, which only development allows (contracts.worker_secret)."""
    if expected and not hmac.compare_digest((given or "").encode(), expected.encode()):
        raise WorkerAuthError()


class EngineError(OpenAIError):
    """The engine failed while serving a request that was already accepted (not the client's fault)."""

    status_code = 500
    type = "server_error"


class AdapterDeletedError(EngineError):
    """The adapter a running request used was deleted: the request ends here (its weights are gone)."""

    status_code = 404
    type = "invalid_request_error"

    def __init__(self, uid: str):
        super().__init__(f"The model adapter '{uid}' was deleted while this request ran.", param="model",
                         code="model_not_found")


def error_body(message: str, *, type: str, param: str | None = None, code: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": type, "param": param, "code": code}}


def error_response(exc: OpenAIError) -> JSONResponse:
    body = error_body(exc.message, type=exc.type, param=exc.param, code=exc.code)
    return JSONResponse(body, status_code=exc.status_code)


# Union members show up in pydantic's error locations as their type: ("stop", "list[str]", 0). OpenAI's `param`
# names only fields and indices, so type-like segments are dropped.
_TYPE_SEGMENTS = {"str", "int", "float", "bool", "none", "list", "dict"}


def _param_from_loc(loc: tuple[int | str, ...]) -> str | None:
    parts: list[str] = []
    for item in loc:
        if item == "body":
            continue
        if isinstance(item, int):
            parts.append(f"[{item}]")
        elif item.isidentifier() and item[:1].islower() and item not in _TYPE_SEGMENTS:
            parts.append(item)
    return ".".join(parts) or None


def validation_error_to_openai(errors: list[Any]) -> OpenAIError:
    if not errors:
        return OpenAIError("Invalid request body.")
    first = errors[0]
    if first.get("type") == "json_invalid":
        detail = (first.get("ctx") or {}).get("error", first.get("msg", ""))
        return OpenAIError(f"We could not parse the JSON body of your request: {detail}.", code="invalid_json")
    param = _param_from_loc(tuple(first.get("loc", ())))
    msg = first.get("msg", "invalid value")
    if first.get("type") == "missing":
        return OpenAIError(f"Missing required parameter: '{param}'.", param=param, code="missing_required_parameter")
    where = f"'{param}'" if param else "the request body"
    return OpenAIError(f"Invalid value for {where}: {msg}.", param=param, code="invalid_type")


def parse_body(raw: bytes, model: type[M]) -> M:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise OpenAIError(
            f"The request body is not valid UTF-8 (bad byte at offset {exc.start}).", code="invalid_encoding"
        ) from None
    if not text.strip():
        raise OpenAIError("The request body is empty; send a JSON object.", code="invalid_json")
    try:
        return model.model_validate_json(text)
    except ValidationError as exc:
        raise validation_error_to_openai(exc.errors(include_url=False)) from None


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(OpenAIError)
    async def _openai(_: Request, exc: OpenAIError) -> JSONResponse:
        return error_response(exc)

    @app.exception_handler(InvalidRequestError)
    async def _invalid(_: Request, exc: InvalidRequestError) -> JSONResponse:
        err = OpenAIError(exc.message, param=exc.param, code=exc.code)
        if exc.code == "model_not_found":  # the engine could not load the adapter the request names
            err.status_code = 404
        return error_response(err)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        return error_response(validation_error_to_openai(list(exc.errors())))

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        kind = "invalid_request_error" if exc.status_code < 500 else "server_error"
        detail = exc.detail if isinstance(exc.detail, str) else json.dumps(exc.detail)
        body = error_body(detail, type=kind, code=None if exc.status_code != 404 else "not_found")
        return JSONResponse(body, status_code=exc.status_code, headers=getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error while serving a request")
        return JSONResponse(error_body("Internal server error.", type="server_error"), status_code=500)
