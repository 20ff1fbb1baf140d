"""Pure ASGI middleware (no BaseHTTPMiddleware: it buffers and costs ~100 µs a request): every response carries
`x-request-id`, and an unexpected exception becomes OpenAI's 500 error object instead of a bare text page."""

import json
import logging
import uuid

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.errors import error_body

log = logging.getLogger("hearth.gateway")


class RequestIdMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = f"req_{uuid.uuid4().hex}"
        scope.setdefault("state", {})["request_id"] = request_id
        id_header = (b"x-request-id", request_id.encode())
        started = False

        async def send_with_id(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                message["headers"] = [*message.get("headers", ()), id_header]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception:
            log.exception("unhandled error in request %s", request_id)
            if started:
                return  # the status line is gone; closing the body is all that is left
            body = json.dumps(error_body("The server had an error while processing your request.", "server_error"))
            await send({"type": "http.response.start", "status": 500,
                        "headers": [(b"content-type", b"application/json"), id_header]})
            await send({"type": "http.response.body", "body": body.encode()})
