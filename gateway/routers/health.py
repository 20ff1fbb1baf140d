from fastapi import APIRouter, Request

router = APIRouter()


@router.get("/health")
async def health(request: Request) -> dict[str, object]:
    return {"status": "ok", "workers": len(request.app.state.services.registry.workers())}
