"""Accounts: register, log in, refresh, log out, who am I.

Passwords are Argon2id hashes; five failures in a row lock the account for 15 minutes. A login
opens a session: a short-lived access token (15 min) and a refresh token that rotates on every
use. A refresh token used twice means it was stolen: the whole session is revoked.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, HTTPException, Request, Response
from psycopg import AsyncConnection
from psycopg.errors import UniqueViolation
from psycopg.rows import DictRow
from pydantic import BaseModel, Field

from services.api.access import VISIBLE_WEARERS
from services.api.deps import Caller, ConnDep
from services.api.schemas import COMMON
from services.api.text import Text
from services.people.lockout import after_failure, is_locked
from services.people.passwords import (
    hash_password,
    needs_rehash,
    password_problem,
    verify_password,
)
from services.people.tokens import issue_access_token, new_refresh_token, refresh_hash

router = APIRouter(prefix="/v1", tags=["accounts"], responses=COMMON)

E164 = r"^\+[1-9]\d{6,14}$"
Email = Annotated[
    Text, Field(pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$", max_length=320, description="E-mail")
]


class Register(BaseModel):
    email: Email
    name: Annotated[Text, Field(min_length=1, max_length=120)]
    password: Annotated[Text, Field(min_length=1, max_length=256)]
    phone: Annotated[Text | None, Field(pattern=E164, description="E.164, e.g. +8613812345678")] = (
        None
    )
    language: Annotated[Text, Field(pattern=r"^[A-Za-z]{2,3}(-[A-Za-z0-9]{2,8})*$")] = "zh-CN"


class Login(BaseModel):
    email: Annotated[Text, Field(min_length=3, max_length=320)]
    password: Annotated[Text, Field(min_length=1, max_length=256)]


class Refresh(BaseModel):
    refresh_token: Annotated[Text, Field(min_length=10, max_length=200)]


class Tokens(BaseModel):
    access_token: str
    refresh_token: str
    token_type: str = "bearer"
    expires_in: int = Field(description="Seconds the access token lives")


class WearerRelation(BaseModel):
    wearer_id: str
    name: str
    relation: str = Field(description="guardian, family or caregiver")


class Me(BaseModel):
    user_id: int | None
    name: str
    role: str
    org_id: int | None
    contact_id: int | None
    wearers: list[WearerRelation]


class UserOut(BaseModel):
    user_id: int
    email: str
    name: str
    role: str
    org_id: int | None
    contact_id: int


async def create_user(
    conn: AsyncConnection[DictRow],
    email: str,
    name: str,
    password: str,
    role: str,
    org_id: int | None = None,
    phone: str | None = None,
    language: str = "zh-CN",
) -> UserOut:
    """A user and their contact (alerts reach people as contacts). 422 for a weak password,
    409 for an e-mail already registered."""
    problem = password_problem(password)
    if problem:
        raise HTTPException(status_code=422, detail=problem)
    try:
        async with conn.transaction():
            cur = await conn.execute(
                "INSERT INTO users (email, name, role, org_id, password_hash, phone)"
                " VALUES (%s, %s, %s, %s, %s, %s) RETURNING user_id",
                (email, name, role, org_id, hash_password(password), phone),
            )
            user = await cur.fetchone()
            assert user is not None
            cur = await conn.execute(
                "INSERT INTO contacts (name, role, language, user_id) VALUES (%s, %s, %s, %s)"
                " RETURNING contact_id",
                (name, "family" if role == "family" else "caregiver", language, user["user_id"]),
            )
            contact = await cur.fetchone()
            assert contact is not None
    except UniqueViolation as err:
        raise HTTPException(status_code=409, detail="that e-mail address is registered") from err
    return UserOut(
        user_id=user["user_id"], email=email, name=name, role=role, org_id=org_id,
        contact_id=contact["contact_id"],
    )  # fmt: skip


@router.post(
    "/auth/register",
    response_model=UserOut,
    status_code=201,
    responses={409: {"description": "E-mail already registered"}},
)
async def register(conn: ConnDep, body: Register) -> UserOut:
    """A family member signs up. They see nothing until they register a wearer (becoming its
    guardian) or accept a guardian's invitation."""
    return await create_user(
        conn, body.email, body.name, body.password, "family", None, body.phone, body.language
    )


async def _open_session(request: Request, conn: AsyncConnection[DictRow], user_id: int) -> Tokens:
    settings = request.app.state.settings
    now = datetime.now(UTC)
    session_id = str(uuid.uuid4())
    refresh = new_refresh_token()
    await conn.execute(
        "INSERT INTO sessions (session_id, user_id, refresh_hash, expires_at)"
        " VALUES (%s, %s, %s, %s)",
        (session_id, user_id, refresh_hash(refresh),
         now + timedelta(days=settings.refresh_token_ttl_days)),
    )  # fmt: skip
    return _tokens(request, session_id, user_id, refresh, now)


def _tokens(request: Request, session_id: str, user_id: int, refresh: str, now: datetime) -> Tokens:
    secret = request.app.state.auth_secret
    if not secret:
        raise HTTPException(status_code=503, detail="logins need ANXIN_AUTH_SECRET on the server")
    ttl = request.app.state.settings.access_token_ttl_s
    return Tokens(
        access_token=issue_access_token(secret, session_id, user_id, now, ttl),
        refresh_token=refresh,
        expires_in=ttl,
    )


@router.post(
    "/auth/login",
    response_model=Tokens,
    responses={
        401: {"description": "Wrong e-mail or password"},
        423: {"description": "Locked after repeated failures; see Retry-After"},
    },
)
async def login(request: Request, conn: ConnDep, body: Login) -> Tokens:
    now = datetime.now(UTC)
    cur = await conn.execute(
        "SELECT user_id, password_hash, failed_logins, locked_until FROM users"
        " WHERE lower(email) = lower(%s)",
        (body.email,),
    )
    user = await cur.fetchone()
    if user is not None and is_locked(user["locked_until"], now):
        retry = int((user["locked_until"] - now).total_seconds()) + 1
        raise HTTPException(
            status_code=423,
            detail=f"too many failed logins: try again in {retry // 60 + 1} minutes",
            headers={"Retry-After": str(retry)},
        )
    if user is None or not verify_password(user["password_hash"], body.password):
        if user is not None:
            failures, locked = after_failure(user["failed_logins"], now)
            await conn.execute(
                "UPDATE users SET failed_logins = %s, locked_until = COALESCE(%s, locked_until)"
                " WHERE user_id = %s",
                (failures, locked, user["user_id"]),
            )
        raise HTTPException(status_code=401, detail="wrong e-mail or password")
    new_hash = hash_password(body.password) if needs_rehash(user["password_hash"]) else None
    await conn.execute(
        "UPDATE users SET failed_logins = 0, locked_until = NULL,"
        " password_hash = COALESCE(%s, password_hash) WHERE user_id = %s",
        (new_hash, user["user_id"]),
    )
    return await _open_session(request, conn, user["user_id"])


@router.post(
    "/auth/refresh",
    response_model=Tokens,
    responses={401: {"description": "Unknown, expired, revoked or reused refresh token"}},
)
async def refresh(request: Request, conn: ConnDep, body: Refresh) -> Tokens:
    """A new access token and a new refresh token; the old refresh token stops working. Using
    an old one again revokes the session: someone else has it."""
    now = datetime.now(UTC)
    new = new_refresh_token()
    presented = refresh_hash(body.refresh_token)
    async with conn.transaction():
        cur = await conn.execute(
            "UPDATE sessions SET spent_hash = refresh_hash, refresh_hash = %s"
            " WHERE refresh_hash = %s AND revoked_at IS NULL AND expires_at > now()"
            " RETURNING session_id, user_id",
            (refresh_hash(new), presented),
        )
        row = await cur.fetchone()
        if row is None:
            await conn.execute(
                "UPDATE sessions SET revoked_at = now() WHERE spent_hash = %s"
                " AND revoked_at IS NULL",
                (presented,),
            )
    if row is None:
        raise HTTPException(status_code=401, detail="log in again: this refresh token is spent")
    return _tokens(request, str(row["session_id"]), row["user_id"], new, now)


@router.post("/auth/logout", status_code=204)
async def logout(conn: ConnDep, caller: Caller) -> Response:
    """Ends this session: its access and refresh tokens stop working at once."""
    if caller.session_id:
        await conn.execute(
            "UPDATE sessions SET revoked_at = now() WHERE session_id = %s AND revoked_at IS NULL",
            (caller.session_id,),
        )
    return Response(status_code=204)


@router.get("/me", response_model=Me)
async def me(conn: ConnDep, caller: Caller) -> Me:
    """Who is logged in, and the wearers they may see with their relation to each."""
    wearers: list[WearerRelation] = []
    if not caller.operator:
        cur = await conn.execute(
            "SELECT v.wearer_id, w.name, COALESCE(g.role, 'caregiver') AS relation"
            f" FROM ({VISIBLE_WEARERS}) v JOIN wearers w USING (wearer_id)"
            " LEFT JOIN guardianships g ON g.wearer_id = v.wearer_id AND g.user_id = %(u)s"
            "  AND g.status = 'active' ORDER BY v.wearer_id",
            {"u": caller.user_id, "o": caller.org_id,
             "caregiver": caller.role in ("caregiver", "org_admin")},
        )  # fmt: skip
        wearers = [WearerRelation(**r) for r in await cur.fetchall()]
    return Me(
        user_id=caller.user_id, name=caller.name, role=caller.role, org_id=caller.org_id,
        contact_id=caller.contact_id, wearers=wearers,
    )  # fmt: skip
