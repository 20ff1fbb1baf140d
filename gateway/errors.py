"""OpenAI's error object, to the letter: {"error": {"message", "type", "param", "code"}}, with the status codes and
`code` values the OpenAI API uses, so SDKs raise the right exception class and retry only what they should."""

from collections.abc import Mapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException


class GatewayError(Exception):
    status_code = 500
    error_type = "server_error"
    code: str | None = None

    def __init__(
        self,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        if code is not None:
            self.code = code
        self.headers = dict(headers or {})

    def body(self) -> dict[str, Any]:
        return error_body(self.message, self.error_type, self.param, self.code)


class InvalidRequest(GatewayError):
    status_code = 400
    error_type = "invalid_request_error"


class InvalidApiKey(GatewayError):
    status_code = 401
    error_type = "invalid_request_error"
    code = "invalid_api_key"


class AccountSuspended(GatewayError):
    status_code = 403
    error_type = "invalid_request_error"
    code = "account_suspended"


class ModelNotFound(GatewayError):
    status_code = 404
    error_type = "invalid_request_error"
    code = "model_not_found"


class RateLimited(GatewayError):
    status_code = 429
    error_type = "requests"  # OpenAI sets type to the exhausted limit: "requests" or "tokens"
    code = "rate_limit_exceeded"

    def __init__(self, message: str, *, limit_type: str, headers: Mapping[str, str]) -> None:
        super().__init__(message, headers=headers)
        self.error_type = limit_type


class UpstreamFailed(GatewayError):
    status_code = 502
    error_type = "server_error"
    code = "upstream_error"


class NoCapacity(GatewayError):
    status_code = 503
    error_type = "server_error"
    code = "no_capacity"


class ServiceUnavailable(GatewayError):
    """Postgres is away and the answer isn't cached (gateway/outages.py); SDKs retry a 503."""

    status_code = 503
    error_type = "server_error"
    code = "service_unavailable"


class UpstreamError(GatewayError):
    """A worker's own OpenAI-shaped error (e.g. 400 context too long), relayed with its status."""

    def __init__(self, status_code: int, body: dict[str, Any]) -> None:
        err = body.get("error") if isinstance(body.get("error"), dict) else {}
        super().__init__(str(err.get("message") or "worker error"), param=err.get("param"), code=err.get("code"))
        self.status_code = status_code
        self.error_type = str(err.get("type") or ("invalid_request_error" if status_code < 500 else "server_error"))


def error_body(message: str, error_type: str, param: str | None = None, code: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": error_type, "param": param, "code": code}}


def _param_from_loc(loc: tuple[Any, ...]) -> str | None:
    # ("body", "messages", 0, "role") -> "messages.[0].role", the way OpenAI names nested params.
    parts = [f"[{p}]" if isinstance(p, int) else str(p) for p in loc if p != "body"]
    return ".".join(parts) or None


async def _gateway_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, GatewayError)
    return JSONResponse(exc.body(), status_code=exc.status_code, headers=exc.headers)


async def _validation_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    first = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid request"}
    param = _param_from_loc(tuple(first.get("loc", ())))
    if first.get("type") == "json_invalid":
        message, param = "We could not parse the JSON body of your request.", None
        reason = str((first.get("ctx") or {}).get("error") or "")
        if "JSON number" in reason or "finite number" in reason:  # strict_json: NaN, Infinity, 1e999
            message = f"{message} {reason[0].upper()}{reason[1:]}: numbers must be finite."
    elif first.get("type") == "extra_forbidden":
        message = f"Unrecognized request argument supplied: {param}"
    elif first.get("type") == "missing":
        message = f"Missing required parameter: '{param}'."
    else:
        message = f"Invalid value for '{param}': {first.get('msg')}."
    return JSONResponse(error_body(message, "invalid_request_error", param), status_code=400)


async def _http_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    if exc.status_code == 404:
        body = error_body("Unknown request URL. Please check the URL and method.", "invalid_request_error",
                          code="unknown_url")
    elif exc.status_code == 405:
        body = error_body("Method not allowed for this URL.", "invalid_request_error", code="method_not_allowed")
    elif exc.status_code == 413:  # body_limit.PayloadTooLarge, raised while the body was being read
        body = error_body(str(exc.detail), "invalid_request_error", code="request_too_large")
    else:
        body = error_body(str(exc.detail), "invalid_request_error" if exc.status_code < 500 else "server_error")
    return JSONResponse(body, status_code=exc.status_code, headers=getattr(exc, "headers", None))


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(GatewayError, _gateway_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    # Anything unexpected becomes a 500 error object in middleware.RequestIdMiddleware, which also stamps its id.
