"""Relations: organisations and their caregivers, a wearer and their guardian, family
invitations (effective only once accepted), care granted to an organisation.

Whoever may see a wearer is also told about the wearer's alerts: every change of a relation
re-derives that person's ``care`` rows (``sync_care``), which the notifier and the feed read.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Path, Response
from psycopg import AsyncConnection
from psycopg.errors import UniqueViolation
from psycopg.rows import DictRow
from pydantic import BaseModel, Field

from services.api.access import VISIBLE_WEARERS, require_wearer
from services.api.deps import Caller, ConnDep, Principal
from services.api.routes.auth import E164, Email, UserOut, create_user
from services.api.schemas import COMMON
from services.api.text import Text
from services.people.access import Action

router = APIRouter(prefix="/v1", tags=["people"], responses=COMMON)

WearerId = Annotated[str, Path(max_length=80)]
OrgId = Annotated[int, Path(ge=1, le=2**62)]
_DENIED = {403: {"description": "Not allowed for your role"}}


async def sync_care(conn: AsyncConnection[DictRow], user_ids: list[int]) -> None:
    """Each user's contact cares for exactly the wearers the user may see."""
    for user_id in user_ids:
        cur = await conn.execute(
            "SELECT u.role, u.org_id, c.contact_id FROM users u"
            " JOIN contacts c ON c.user_id = u.user_id WHERE u.user_id = %s",
            (user_id,),
        )
        row = await cur.fetchone()
        if row is None:
            continue
        params = {"u": user_id, "o": row["org_id"], "c": row["contact_id"],
                  "caregiver": row["role"] in ("caregiver", "org_admin")}  # fmt: skip
        await conn.execute(
            f"DELETE FROM care WHERE contact_id = %(c)s AND wearer_id NOT IN ({VISIBLE_WEARERS})",
            params,
        )
        await conn.execute(
            f"INSERT INTO care (contact_id, wearer_id) SELECT %(c)s, wearer_id"
            f" FROM ({VISIBLE_WEARERS}) v ON CONFLICT DO NOTHING",
            params,
        )


class OrganisationIn(BaseModel):
    name: Annotated[Text, Field(min_length=1, max_length=200)]
    admin_email: Email
    admin_name: Annotated[Text, Field(min_length=1, max_length=120)]
    admin_password: Annotated[Text, Field(min_length=1, max_length=256)]


class Organisation(BaseModel):
    org_id: int
    name: str
    admin: UserOut


class CaregiverIn(BaseModel):
    email: Email
    name: Annotated[Text, Field(min_length=1, max_length=120)]
    password: Annotated[Text, Field(min_length=1, max_length=256)]
    phone: Annotated[Text | None, Field(pattern=E164)] = None


@router.post(
    "/organisations", response_model=Organisation, status_code=201,
    responses={**_DENIED, 409: {"description": "Name or e-mail taken"}},
)  # fmt: skip
async def create_organisation(conn: ConnDep, caller: Caller, body: OrganisationIn) -> Organisation:
    """A community care centre and its first admin (the operator sets these up)."""
    if not caller.operator:
        raise HTTPException(status_code=403, detail="only the operator creates organisations")
    try:
        cur = await conn.execute(
            "INSERT INTO organisations (name) VALUES (%s) RETURNING org_id", (body.name,)
        )
    except UniqueViolation as err:
        raise HTTPException(status_code=409, detail="that organisation exists") from err
    row = await cur.fetchone()
    assert row is not None
    admin = await create_user(
        conn, body.admin_email, body.admin_name, body.admin_password, "org_admin", row["org_id"]
    )
    return Organisation(org_id=row["org_id"], name=body.name, admin=admin)


@router.post(
    "/organisations/{org_id}/caregivers", response_model=UserOut, status_code=201,
    responses={**_DENIED, 404: {"description": "No such organisation"}},
)  # fmt: skip
async def add_caregiver(conn: ConnDep, caller: Caller, org_id: OrgId, body: CaregiverIn) -> UserOut:
    """An organisation's admin adds a caregiver; they see the wearers granted to the centre."""
    if not caller.operator and not (caller.role == "org_admin" and caller.org_id == org_id):
        raise HTTPException(status_code=404, detail=f"no organisation {org_id}")
    cur = await conn.execute("SELECT 1 FROM organisations WHERE org_id = %s", (org_id,))
    if await cur.fetchone() is None:
        raise HTTPException(status_code=404, detail=f"no organisation {org_id}")
    user = await create_user(
        conn, body.email, body.name, body.password, "caregiver", org_id, body.phone
    )
    await sync_care(conn, [user.user_id])
    return user


class WearerIn(BaseModel):
    wearer_id: Annotated[Text, Field(pattern=r"^[A-Za-z0-9._-]{3,80}$")]
    name: Annotated[Text, Field(min_length=1, max_length=120)]
    tz: Annotated[Text, Field(max_length=64)] = "Asia/Shanghai"


class WearerOut(BaseModel):
    wearer_id: str
    name: str
    tz: str
    relation: str


@router.post(
    "/wearers", response_model=WearerOut, status_code=201,
    responses={**_DENIED, 409: {"description": "That wearer id is taken"}},
)  # fmt: skip
async def create_wearer(conn: ConnDep, caller: Caller, body: WearerIn) -> WearerOut:
    """A family member registers the person who will wear the watch and becomes their
    primary guardian."""
    if caller.operator or caller.role != "family":
        raise HTTPException(status_code=403, detail="a family member registers a wearer")
    try:
        async with conn.transaction():
            await conn.execute(
                "INSERT INTO wearers (wearer_id, name, tz) VALUES (%s, %s, %s)",
                (body.wearer_id, body.name, body.tz),
            )
            await conn.execute(
                "INSERT INTO guardianships (wearer_id, user_id, role, status, accepted_at)"
                " VALUES (%s, %s, 'guardian', 'active', now())",
                (body.wearer_id, caller.user_id),
            )
            await sync_care(conn, [caller.user_id])  # type: ignore[list-item]
    except UniqueViolation as err:
        raise HTTPException(status_code=409, detail="that wearer id is taken") from err
    return WearerOut(wearer_id=body.wearer_id, name=body.name, tz=body.tz, relation="guardian")


class InvitationIn(BaseModel):
    email: Email


class Invitation(BaseModel):
    wearer_id: str
    wearer_name: str
    user_id: int
    name: str
    status: str
    invited_by: int | None


_INVITATION = (
    "SELECT g.wearer_id, w.name AS wearer_name, g.user_id, u.name, g.status, g.invited_by"
    " FROM guardianships g JOIN wearers w USING (wearer_id) JOIN users u USING (user_id)"
)


@router.post(
    "/wearers/{wearer_id}/invitations", response_model=Invitation, status_code=201,
    responses={**_DENIED, 404: {"description": "No such wearer, or no account with that e-mail"},
               409: {"description": "Already related"}},
)  # fmt: skip
async def invite(
    conn: ConnDep, caller: Caller, wearer_id: WearerId, body: InvitationIn
) -> Invitation:
    """The guardian invites a family member by the e-mail of their account. Nothing is shared
    until the invitee accepts."""
    await require_wearer(conn, caller, wearer_id, Action.MANAGE_WEARER)
    cur = await conn.execute(
        "SELECT user_id, role FROM users WHERE lower(email) = lower(%s)", (body.email,)
    )
    user = await cur.fetchone()
    if user is None or user["role"] != "family":
        raise HTTPException(
            status_code=404, detail="no family account with that e-mail: ask them to register"
        )
    try:
        await conn.execute(
            "INSERT INTO guardianships (wearer_id, user_id, role, status, invited_by)"
            " VALUES (%s, %s, 'family', 'invited', %s)",
            (wearer_id, user["user_id"], caller.user_id),
        )
    except UniqueViolation as err:
        raise HTTPException(status_code=409, detail="already invited or related") from err
    cur = await conn.execute(
        f"{_INVITATION} WHERE g.wearer_id = %s AND g.user_id = %s", (wearer_id, user["user_id"])
    )
    return Invitation(**(await cur.fetchone()))  # type: ignore[arg-type]


@router.get("/invitations", response_model=list[Invitation])
async def my_invitations(conn: ConnDep, caller: Caller) -> list[Invitation]:
    """Invitations waiting for the caller's answer."""
    cur = await conn.execute(
        f"{_INVITATION} WHERE g.user_id = %s AND g.status = 'invited' ORDER BY g.created_at",
        (caller.user_id,),
    )
    return [Invitation(**r) for r in await cur.fetchall()]


async def _answer(
    conn: AsyncConnection[DictRow], caller: Principal, wearer_id: str, accept: bool
) -> None:
    if accept:
        cur = await conn.execute(
            "UPDATE guardianships SET status = 'active', accepted_at = now()"
            " WHERE wearer_id = %s AND user_id = %s AND status = 'invited'",
            (wearer_id, caller.user_id),
        )
    else:
        cur = await conn.execute(
            "DELETE FROM guardianships WHERE wearer_id = %s AND user_id = %s"
            " AND status = 'invited'",
            (wearer_id, caller.user_id),
        )
    if cur.rowcount == 0:
        raise HTTPException(status_code=404, detail="no invitation for you to that wearer")
    await sync_care(conn, [caller.user_id])  # type: ignore[list-item]


_NO_INVITATION = {404: {"description": "No invitation"}}


@router.post("/invitations/{wearer_id}/accept", status_code=204, responses=_NO_INVITATION)
async def accept_invitation(conn: ConnDep, caller: Caller, wearer_id: WearerId) -> Response:
    """The second confirmation: only now does the invitee see the wearer."""
    await _answer(conn, caller, wearer_id, True)
    return Response(status_code=204)


@router.post("/invitations/{wearer_id}/decline", status_code=204, responses=_NO_INVITATION)
async def decline_invitation(conn: ConnDep, caller: Caller, wearer_id: WearerId) -> Response:
    await _answer(conn, caller, wearer_id, False)
    return Response(status_code=204)


@router.put(
    "/wearers/{wearer_id}/care-grants/{org_id}", status_code=204,
    responses={**_DENIED, 404: {"description": "No such wearer or organisation"}},
)  # fmt: skip
async def grant_care(conn: ConnDep, caller: Caller, wearer_id: WearerId, org_id: OrgId) -> Response:
    """The guardian lets a care centre's caregivers see the wearer and the wearer's alerts."""
    await require_wearer(conn, caller, wearer_id, Action.MANAGE_WEARER)
    cur = await conn.execute("SELECT 1 FROM organisations WHERE org_id = %s", (org_id,))
    if await cur.fetchone() is None:
        raise HTTPException(status_code=404, detail=f"no organisation {org_id}")
    await conn.execute(
        "INSERT INTO care_grants (wearer_id, org_id, granted_by) VALUES (%s, %s, %s)"
        " ON CONFLICT DO NOTHING",
        (wearer_id, org_id, caller.user_id),
    )
    await _sync_org(conn, org_id)
    return Response(status_code=204)


@router.delete(
    "/wearers/{wearer_id}/care-grants/{org_id}", status_code=204,
    responses={**_DENIED, 404: {"description": "No such grant"}},
)  # fmt: skip
async def revoke_care(
    conn: ConnDep, caller: Caller, wearer_id: WearerId, org_id: OrgId
) -> Response:
    await require_wearer(conn, caller, wearer_id, Action.MANAGE_WEARER)
    cur = await conn.execute(
        "DELETE FROM care_grants WHERE wearer_id = %s AND org_id = %s", (wearer_id, org_id)
    )
    if cur.rowcount == 0:
        raise HTTPException(status_code=404, detail="no such grant")
    await _sync_org(conn, org_id)
    return Response(status_code=204)


async def _sync_org(conn: AsyncConnection[DictRow], org_id: int) -> None:
    cur = await conn.execute("SELECT user_id FROM users WHERE org_id = %s", (org_id,))
    await sync_care(conn, [r["user_id"] for r in await cur.fetchall()])
