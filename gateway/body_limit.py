"""Request bodies are bounded before anything parses them (or authenticates the caller): a Content-Length over the
limit is answered 413 at once, without reading a byte of the body; a body without one (chunked) is counted as it is
read and refused as soon as it passes the limit. Pure ASGI, in front of the routers."""

import json

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.errors import error_body


class PayloadTooLarge(HTTPException):
    """Raised from `receive` while FastAPI reads the body; the app's HTTPException handler answers it (errors.py)."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, _message(limit))


def _message(limit: int) -> str:
    return (f"The request body is too large: the limit is {limit} bytes ({limit / (1 << 20):g} MiB). Send fewer or "
            "shorter messages.")


def too_large_body(limit: int) -> bytes:
    return json.dumps(error_body(_message(limit), "invalid_request_error", code="request_too_large")).encode()


class BodyLimitMiddleware:
    def __init__(self, app: ASGIApp, *, max_body_bytes: int) -> None:
        self.app = app
        self.limit = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared is not None and declared > self.limit:
            await send({"type": "http.response.start", "status": 413,
                        "headers": [(b"content-type", b"application/json"), (b"connection", b"close")]})
            await send({"type": "http.response.body", "body": too_large_body(self.limit)})
            return
        num_read = 0

        async def counted() -> Message:
            nonlocal num_read
            message = await receive()
            if message["type"] == "http.request":
                num_read += len(message.get("body", b""))
                if num_read > self.limit:
                    raise PayloadTooLarge(self.limit)
            return message

        await self.app(scope, counted, send)


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None  # the server refuses a malformed length itself
    return None
