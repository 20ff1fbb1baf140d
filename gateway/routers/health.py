from fastapi import APIRouter

from gateway.deps import ServicesDep

router = APIRouter()


@router.get("/health")
async def health(services: ServicesDep) -> dict[str, object]:
    return {"status": "ok", "workers": len(services.registry.workers())}
