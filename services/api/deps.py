"""Dependencies every route declares in its signature: the database and the caller's right to
be here. Until accounts exist (people issue) the right is one configured bearer token; routes
depend on ``Caller`` so that per-wearer checks can replace it in one place."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from psycopg import AsyncConnection
from psycopg.rows import DictRow
from psycopg_pool import AsyncConnectionPool

_bearer = HTTPBearer(auto_error=False, description="The configured API token (ANXIN_API_TOKEN)")


def get_pool(request: Request) -> AsyncConnectionPool:
    return request.app.state.pool


async def get_conn(
    pool: Annotated[AsyncConnectionPool, Depends(get_pool)],
) -> AsyncIterator[AsyncConnection[DictRow]]:
    async with pool.connection() as conn:
        yield conn  # type: ignore[misc]


def require_token(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> str:
    expected: str = request.app.state.api_token
    if credentials is None or not secrets.compare_digest(
        credentials.credentials.encode(), expected.encode()
    ):
        raise HTTPException(
            status_code=status.HTTP_401_UNAUTHORIZED,
            detail="missing or wrong bearer token",
            headers={"WWW-Authenticate": "Bearer"},
        )
    return "token"


ConnDep = Annotated[AsyncConnection[DictRow], Depends(get_conn)]
Caller = Annotated[str, Depends(require_token)]
