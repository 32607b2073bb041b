from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse
from psycopg_pool import AsyncConnectionPool

from services.api.deps import get_pool
from services.api.schemas import Health

router = APIRouter(tags=["health"])


@router.get(
    "/healthz",
    response_model=Health,
    responses={503: {"model": Health, "description": "The database is unreachable"}},
)
async def healthz(pool: Annotated[AsyncConnectionPool, Depends(get_pool)]) -> Health | JSONResponse:
    """Unauthenticated, for load balancers and compose health checks: says nothing private."""
    try:
        async with pool.connection(timeout=2) as conn:
            await conn.execute("SELECT 1")
    except Exception:
        return JSONResponse(
            status_code=503, content=Health(status="degraded", database="down").model_dump()
        )
    return Health(status="ok", database="ok")
