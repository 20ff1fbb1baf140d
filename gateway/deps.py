"""FastAPI dependencies as `Annotated` aliases: a handler names what it needs (`services: ServicesDep`,
`key: CurrentKey`, `request_id: RequestId`) and never reads `request.app.state` itself."""

from typing import Annotated

from fastapi import Depends, Header, Request

from gateway.budget import MAX_COST_HEADER
from gateway.db import KeyRecord
from gateway.services import Services


def get_services(request: Request) -> Services:
    return request.app.state.services  # set once by the app's lifespan


ServicesDep = Annotated[Services, Depends(get_services)]


async def authenticate(request: Request, services: ServicesDep) -> KeyRecord:
    return await services.auth.authenticate(request.headers.get("authorization"))


CurrentKey = Annotated[KeyRecord, Depends(authenticate)]


def get_request_id(request: Request) -> str:
    return request.state.request_id  # middleware.RequestIdMiddleware names every request


RequestId = Annotated[str, Depends(get_request_id)]

MaxCostHeader = Annotated[str | None, Header(alias=MAX_COST_HEADER, include_in_schema=False)]
