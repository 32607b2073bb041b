"""Dependencies every route declares in its signature: the database and who is calling.

A caller is a logged-in person (a short-lived access token from /v1/auth/login, its session
still open) or the deployment's operator (``ANXIN_API_TOKEN``, for ops scripts and benchmarks).
What the caller may do with a wearer is decided in services/api/access.py from the table in
services/people/access.py.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from psycopg import AsyncConnection
from psycopg.rows import DictRow
from psycopg_pool import AsyncConnectionPool

from services.people.tokens import read_access_token

_bearer = HTTPBearer(
    auto_error=False,
    description="An access token from POST /v1/auth/login (or the operator token)",
)


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling. ``user_id`` is None only for the operator."""

    user_id: int | None
    name: str
    role: str  # family | caregiver | org_admin | operator
    org_id: int | None = None
    contact_id: int | None = None
    session_id: str | None = None

    @property
    def operator(self) -> bool:
        return self.user_id is None


OPERATOR = Principal(None, "operator", "operator")


async def get_pool(request: Request) -> AsyncConnectionPool:
    # async: FastAPI runs a plain def dependency in a worker thread, a hop on every request
    return request.app.state.pool


async def get_conn(
    pool: Annotated[AsyncConnectionPool, Depends(get_pool)],
) -> AsyncIterator[AsyncConnection[DictRow]]:
    async with pool.connection() as conn:
        yield conn  # type: ignore[misc]


# One connection a request, shared by the caller's session check and the route (FastAPI
# caches a dependency within a request): a request that held one connection and waited for a
# second could wait forever once every connection was held by such requests. It goes back to
# the pool when the route function returns ("function" scope), before the answer is sent, so
# a live feed's open stream holds none (tests/integration/test_api_concurrency.py).
ConnDep = Annotated[AsyncConnection[DictRow], Depends(get_conn, scope="function")]


def _unauthorized(detail: str) -> HTTPException:
    return HTTPException(
        status_code=status.HTTP_401_UNAUTHORIZED,
        detail=detail,
        headers={"WWW-Authenticate": "Bearer"},
    )


async def require_principal(
    request: Request,
    conn: ConnDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    if credentials is None:
        raise _unauthorized("log in: missing bearer token")
    token = credentials.credentials
    operator: str | None = request.app.state.api_token
    if operator and secrets.compare_digest(token.encode(), operator.encode()):
        return OPERATOR
    secret: str | None = request.app.state.auth_secret
    claims = read_access_token(secret, token, datetime.now(UTC)) if secret else None
    if claims is None:
        raise _unauthorized("invalid or expired token: refresh it or log in again")
    cur = await conn.execute(
        "SELECT u.user_id, u.name, u.role, u.org_id, c.contact_id"
        " FROM sessions s JOIN users u ON u.user_id = s.user_id"
        " LEFT JOIN contacts c ON c.user_id = u.user_id"
        " WHERE s.session_id = %s AND s.user_id = %s AND s.revoked_at IS NULL"
        " AND s.expires_at > now()",
        (claims.session_id, claims.user_id),
    )
    row = await cur.fetchone()
    if row is None:
        raise _unauthorized("this session has ended: log in again")
    return Principal(
        row["user_id"], row["name"], row["role"], row["org_id"], row["contact_id"],
        claims.session_id,
    )  # fmt: skip


Caller = Annotated[Principal, Depends(require_principal)]
