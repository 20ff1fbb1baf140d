"""Request JSON as RFC 8259 defines it: Python's json module accepts `NaN`, `Infinity` and `-Infinity`, and turns
`1e999` into inf; here each of them is a parse error (400 "could not parse the JSON body"), so no non-finite number
reaches a model, the pass-through fields or the worker. Routers opt in with `APIRouter(route_class=StrictJSONRoute)`."""

import json
import math
from collections.abc import Callable, Coroutine
from typing import Any, NoReturn

from fastapi import Request, Response
from fastapi.routing import APIRoute


class _NonFinite(ValueError):
    pass


def _refuse_constant(name: str) -> NoReturn:
    raise _NonFinite(f"{name} is not a JSON number")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise _NonFinite(f"{text[:40]} is out of the range of a finite number")
    return value


def loads_strict(raw: bytes | str) -> Any:
    """json.loads that refuses non-finite numbers with a JSONDecodeError (what FastAPI turns into a 400)."""
    try:
        return json.loads(raw, parse_constant=_refuse_constant, parse_float=_finite_float)
    except _NonFinite as exc:
        doc = raw.decode("utf-8", errors="replace") if isinstance(raw, bytes) else raw
        raise json.JSONDecodeError(str(exc), doc, 0) from exc


class StrictJSONRequest(Request):
    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            self._json = loads_strict(await self.body())
        return self._json


class StrictJSONRoute(APIRoute):
    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def strict_handler(request: Request) -> Response:
            return await handler(StrictJSONRequest(request.scope, request.receive))

        return strict_handler
