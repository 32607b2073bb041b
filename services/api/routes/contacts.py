"""Contacts: the people alerts reach, which wearers they care for, and their channels.

Until accounts exist a contact is a record of its own; an account will link to one
(``contacts.user_id``) without reshaping alerts or deliveries.
"""

from __future__ import annotations

import secrets
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path, Request, Response
from psycopg import AsyncConnection
from psycopg.errors import ForeignKeyViolation, UniqueViolation
from psycopg.rows import DictRow
from psycopg.types.json import Jsonb

from services.api.alert_schemas import (
    CareIn,
    Channel,
    ChannelCreated,
    ChannelIn,
    Contact,
    ContactIn,
    ContactPatch,
    QuietHoursIn,
    VapidKey,
)
from services.api.deps import Caller, ConnDep, Principal
from services.api.schemas import COMMON

router = APIRouter(tags=["contacts"], responses=COMMON)

ContactId = Annotated[int, Path(ge=1, le=2**62)]
ChannelId = Annotated[int, Path(ge=1, le=2**62)]
_NOT_FOUND = {404: {"description": "No such contact"}}

_CONTACT = (
    "SELECT c.contact_id, c.name, c.role, c.language, c.tz, c.quiet_start, c.quiet_end,"
    " COALESCE(array_agg(care.wearer_id ORDER BY care.wearer_id)"
    "  FILTER (WHERE care.wearer_id IS NOT NULL), '{}') AS wearer_ids"
    " FROM contacts c LEFT JOIN care USING (contact_id)"
)


def _contact(row: dict[str, Any]) -> Contact:
    quiet = None
    if row["quiet_start"] is not None:
        quiet = QuietHoursIn(start=row["quiet_start"], end=row["quiet_end"])
    return Contact(
        contact_id=row["contact_id"], name=row["name"], role=row["role"],
        language=row["language"], tz=row["tz"], quiet_hours=quiet,
        wearer_ids=list(row["wearer_ids"]),
    )  # fmt: skip


async def get_contact_or_404(conn: AsyncConnection[DictRow], contact_id: int) -> Contact:
    cur = await conn.execute(
        f"{_CONTACT} WHERE c.contact_id = %s GROUP BY c.contact_id", (contact_id,)
    )
    row = await cur.fetchone()
    if row is None:
        raise HTTPException(status_code=404, detail=f"no contact {contact_id}")
    return _contact(row)


def own_or_operator(caller: Principal, contact_id: int) -> None:
    """A person sees and changes only their own contact record (another's is a 404, as if it
    did not exist); the operator manages all of them."""
    if not caller.operator and caller.contact_id != contact_id:
        raise HTTPException(status_code=404, detail=f"no contact {contact_id}")


def operator_only(caller: Principal) -> None:
    if not caller.operator:
        raise HTTPException(
            status_code=403,
            detail="contacts of people with accounts follow their relations to wearers;"
            " only the operator manages contacts directly",
        )


_OPERATOR_ONLY = {403: {"description": "Only the operator may do this"}}


@router.post("/v1/contacts", response_model=Contact, status_code=201, responses=_OPERATOR_ONLY)
async def create_contact(conn: ConnDep, caller: Caller, body: ContactIn) -> Contact:
    """A contact without an account (e.g. a neighbour reached by e-mail)."""
    operator_only(caller)
    q = body.quiet_hours
    cur = await conn.execute(
        "INSERT INTO contacts (name, role, language, tz, quiet_start, quiet_end)"
        " VALUES (%s, %s, %s, %s, %s, %s) RETURNING contact_id",
        (body.name, body.role, body.language, body.tz, q.start if q else None,
         q.end if q else None),
    )  # fmt: skip
    row = await cur.fetchone()
    assert row is not None
    return await get_contact_or_404(conn, row["contact_id"])


@router.get("/v1/contacts", response_model=list[Contact])
async def list_contacts(conn: ConnDep, caller: Caller) -> list[Contact]:
    """All contacts for the operator; a person's own for anyone else."""
    if not caller.operator:
        return [await get_contact_or_404(conn, caller.contact_id)] if caller.contact_id else []
    cur = await conn.execute(f"{_CONTACT} GROUP BY c.contact_id ORDER BY c.contact_id LIMIT 1000")
    return [_contact(r) for r in await cur.fetchall()]


@router.get("/v1/contacts/{contact_id}", response_model=Contact, responses=_NOT_FOUND)
async def get_contact(conn: ConnDep, caller: Caller, contact_id: ContactId) -> Contact:
    own_or_operator(caller, contact_id)
    return await get_contact_or_404(conn, contact_id)


@router.patch("/v1/contacts/{contact_id}", response_model=Contact, responses=_NOT_FOUND)
async def update_contact(
    conn: ConnDep, caller: Caller, contact_id: ContactId, body: ContactPatch
) -> Contact:
    own_or_operator(caller, contact_id)
    current = await get_contact_or_404(conn, contact_id)
    fields = body.model_dump(exclude_unset=True)
    quiet = current.quiet_hours
    if "quiet_hours" in fields:
        quiet = body.quiet_hours
    await conn.execute(
        "UPDATE contacts SET name = %s, role = %s, language = %s, tz = %s, quiet_start = %s,"
        " quiet_end = %s WHERE contact_id = %s",
        (body.name or current.name, body.role or current.role,
         body.language or current.language, body.tz or current.tz,
         quiet.start if quiet else None, quiet.end if quiet else None, contact_id),
    )  # fmt: skip
    return await get_contact_or_404(conn, contact_id)


@router.delete("/v1/contacts/{contact_id}", status_code=204, responses=_NOT_FOUND)
async def delete_contact(conn: ConnDep, caller: Caller, contact_id: ContactId) -> Response:
    own_or_operator(caller, contact_id)
    operator_only(caller)
    cur = await conn.execute("DELETE FROM contacts WHERE contact_id = %s", (contact_id,))
    if cur.rowcount == 0:
        raise HTTPException(status_code=404, detail=f"no contact {contact_id}")
    return Response(status_code=204)


@router.put(
    "/v1/contacts/{contact_id}/wearers",
    response_model=Contact,
    responses={404: {"description": "No such contact or wearer"}},
)
async def set_care(conn: ConnDep, caller: Caller, contact_id: ContactId, body: CareIn) -> Contact:
    own_or_operator(caller, contact_id)
    operator_only(caller)
    """The wearers this contact cares for (replaces the list): they see these wearers' alerts
    in their feed, and are told when no escalation tiers are configured."""
    await get_contact_or_404(conn, contact_id)
    wanted = sorted(set(body.wearer_ids))
    cur = await conn.execute(
        "SELECT array_agg(w) AS missing FROM unnest(%s::text[]) w"
        " WHERE NOT EXISTS (SELECT 1 FROM wearers WHERE wearer_id = w)",
        (wanted,),
    )
    row = await cur.fetchone()
    if row is not None and row["missing"]:
        raise HTTPException(status_code=404, detail=f"no wearers {sorted(row['missing'])}")
    async with conn.transaction():
        await conn.execute(
            "DELETE FROM care WHERE contact_id = %s AND NOT wearer_id = ANY(%s)",
            (contact_id, wanted),
        )
        await conn.execute(
            "INSERT INTO care (contact_id, wearer_id) SELECT %s, unnest(%s::text[])"
            " ON CONFLICT DO NOTHING",
            (contact_id, wanted),
        )
    return await get_contact_or_404(conn, contact_id)


@router.post(
    "/v1/contacts/{contact_id}/channels",
    response_model=ChannelCreated,
    status_code=201,
    responses={**_NOT_FOUND, 409: {"description": "This contact already has that address"}},
)
async def add_channel(
    conn: ConnDep, caller: Caller, contact_id: ContactId, body: ChannelIn
) -> ChannelCreated:
    """An e-mail address, a webhook (its signing secret is in this answer, and only here) or a
    Web Push subscription (the browser's PushSubscription endpoint and keys)."""
    own_or_operator(caller, contact_id)
    await get_contact_or_404(conn, contact_id)
    secret = secrets.token_urlsafe(32) if body.kind == "webhook" else None
    keys = Jsonb(body.keys.model_dump()) if body.keys else None
    try:
        cur = await conn.execute(
            "INSERT INTO contact_channels (contact_id, kind, address, secret, keys)"
            " VALUES (%s, %s, %s, %s, %s) RETURNING channel_id, kind, address, enabled",
            (contact_id, body.kind, body.address, secret, keys),
        )
    except (UniqueViolation, ForeignKeyViolation) as err:
        raise HTTPException(
            status_code=409, detail="this contact already has that address"
        ) from err
    row = await cur.fetchone()
    assert row is not None
    return ChannelCreated(**row, secret=secret)


@router.get(
    "/v1/contacts/{contact_id}/channels", response_model=list[Channel], responses=_NOT_FOUND
)
async def list_channels(conn: ConnDep, caller: Caller, contact_id: ContactId) -> list[Channel]:
    own_or_operator(caller, contact_id)
    await get_contact_or_404(conn, contact_id)
    cur = await conn.execute(
        "SELECT channel_id, kind, address, enabled FROM contact_channels"
        " WHERE contact_id = %s ORDER BY channel_id",
        (contact_id,),
    )
    return [Channel(**r) for r in await cur.fetchall()]


@router.delete(
    "/v1/contacts/{contact_id}/channels/{channel_id}",
    status_code=204,
    responses={404: {"description": "No such channel"}},
)
async def delete_channel(
    conn: ConnDep, caller: Caller, contact_id: ContactId, channel_id: ChannelId
) -> Response:
    own_or_operator(caller, contact_id)
    cur = await conn.execute(
        "DELETE FROM contact_channels WHERE contact_id = %s AND channel_id = %s",
        (contact_id, channel_id),
    )
    if cur.rowcount == 0:
        raise HTTPException(status_code=404, detail=f"no channel {channel_id}")
    return Response(status_code=204)


@router.get(
    "/v1/push/vapid-public-key",
    response_model=VapidKey,
    responses={404: {"description": "Web Push is not configured"}},
)
async def vapid_public_key(request: Request, _caller: Caller) -> VapidKey:
    """The key a browser passes to ``PushManager.subscribe`` as ``applicationServerKey``."""
    key = request.app.state.vapid_public_key
    if key is None:
        raise HTTPException(status_code=404, detail="Web Push is not configured")
    return VapidKey(public_key=key)
