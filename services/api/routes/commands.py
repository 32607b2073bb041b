"""Commands to a wearer's watch — locate now, speed-dial numbers, listen-in — and the
wearer's listen-in consent.

A command is a row in ``commands`` (services/commands/queue.py); the notifier's dispatcher
sends it over MQTT and the watch's ack settles it, so every route here answers 202 with the
command, whose status the caller follows with GET …/commands/{command_id}. Listen-in is the
most intrusive thing Anxin does: only a guardian asks for it, only while the wearer's consent
is recorded, only to the phone of someone in the wearer's family, and every one is audited.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path, Query, Response, status
from psycopg.types.json import Jsonb

from services.api.access import require_wearer
from services.api.command_schemas import (
    Command,
    Commands,
    Consent,
    ConsentIn,
    ListenInIn,
    LocateIn,
    SpeedDialIn,
)
from services.api.deps import Caller, ConnDep, Principal
from services.api.privacy import viewer_name
from services.api.schemas import COMMON
from services.commands.queue import ENQUEUE, NOTIFY, WEARER_DEVICE, new_command_id
from services.commands.rules import number_problem, speed_dial_problems, ttl_s
from services.people.access import Action, Level, may

router = APIRouter(prefix="/v1/wearers", tags=["commands"], responses=COMMON)

WearerId = Annotated[str, Path(max_length=80)]
_ANSWERS: dict[int | str, dict[str, Any]] = {
    404: {"description": "No such wearer (or none you are related to)"},
    403: {"description": "Your relation to the wearer does not allow this"},
    409: {"description": "The wearer has no active watch (or, listen-in: no consent)"},
    422: {"description": "The numbers are not valid: one line per problem"},
}
_ACCEPTED: dict[str, Any] = {
    "status_code": status.HTTP_202_ACCEPTED,
    "response_model": Command,
    "responses": _ANSWERS,
}
_COLUMNS = (
    "command_id, wearer_id, device_id, kind, payload, status, requested_by, created_at,"
    " sent_at, acked_at, expires_at, detail"
)
_CONSENT = (
    "SELECT consent_id, note, recorded_by, recorded_at, withdrawn_at FROM consents"
    " WHERE wearer_id = %s AND kind = 'listen_in' ORDER BY recorded_at DESC, consent_id DESC"
    " LIMIT 1"
)
_WITHDRAW = (
    "UPDATE consents SET withdrawn_at = now() WHERE wearer_id = %s AND kind = 'listen_in'"
    " AND withdrawn_at IS NULL"
)
_FAMILY_PHONE = (
    "SELECT EXISTS (SELECT 1 FROM guardianships g JOIN users u ON u.user_id = g.user_id"
    " WHERE g.wearer_id = %s AND g.status = 'active' AND u.phone = %s) AS family"
)


def _problems(problems: list[str]) -> HTTPException:
    return HTTPException(status_code=422, detail={"problems": problems})


async def _enqueue(
    conn: ConnDep, caller: Principal, wearer_id: str, kind: str, payload: dict, ttl: int | None
) -> Command:
    """Queue one command for the wearer's watch and wake the dispatcher (on commit: call it
    inside a transaction when something must be written with it)."""
    cur = await conn.execute(WEARER_DEVICE, (wearer_id,))
    device = await cur.fetchone()
    if device is None:
        raise HTTPException(
            status_code=409,
            detail=f"wearer {wearer_id!r} has no active watch: there is nothing to send to",
        )
    command_id = new_command_id()
    await conn.execute(
        ENQUEUE,
        {
            "command_id": command_id,
            "device_id": device["device_id"],
            "wearer_id": wearer_id,
            "kind": kind,
            "payload": Jsonb(payload),
            "requested_by": caller.user_id,
            "ttl_s": ttl_s(kind, ttl),
        },
    )
    await conn.execute(NOTIFY, (command_id,))
    return await _command(conn, wearer_id, command_id, listen_in=True)


async def _command(conn: ConnDep, wearer_id: str, command_id: str, listen_in: bool) -> Command:
    cur = await conn.execute(
        f"SELECT {_COLUMNS} FROM commands WHERE wearer_id = %s AND command_id = %s"
        " AND (%s OR kind <> 'listen_in')",
        (wearer_id, command_id, listen_in),
    )
    row = await cur.fetchone()
    if row is None:
        raise HTTPException(status_code=404, detail=f"no command {command_id!r} for this wearer")
    return Command(**row)


@router.post("/{wearer_id}/commands/locate", **_ACCEPTED)
async def locate_now(
    conn: ConnDep, caller: Caller, wearer_id: WearerId, body: LocateIn | None = None
) -> Command:
    """Ask the watch for a fresh fix now. Once the command is acknowledged, the wearer's
    location (GET …/location) is that fix."""
    await require_wearer(conn, caller, wearer_id, Action.LOCATE_NOW)
    return await _enqueue(conn, caller, wearer_id, "locate", {}, body.ttl_s if body else None)


@router.put("/{wearer_id}/speed-dial", **_ACCEPTED)
async def set_speed_dial(
    conn: ConnDep, caller: Caller, wearer_id: WearerId, body: SpeedDialIn
) -> Command:
    """Replace the watch's speed-dial numbers (1 to 5, E.164, no repeats). Only the
    guardian sets them."""
    await require_wearer(conn, caller, wearer_id, Action.MANAGE_WEARER)
    problems = speed_dial_problems(body.numbers)
    if problems:
        raise _problems(problems)
    return await _enqueue(
        conn, caller, wearer_id, "speed_dial", {"numbers": body.numbers}, body.ttl_s
    )


@router.post("/{wearer_id}/commands/listen-in", **_ACCEPTED)
async def listen_in(
    conn: ConnDep, caller: Caller, wearer_id: WearerId, body: ListenInIn
) -> Command:
    """The watch silently calls ``number`` back, so that the guardian hears what goes on
    around the wearer. Refused (409) unless the wearer's consent is recorded; the number must
    be the phone of the guardian or of a family member; every listen-in is written to the
    wearer's privacy audit. It expires after 5 minutes at most: a late call-back is worse
    than none."""
    await require_wearer(conn, caller, wearer_id, Action.LISTEN_IN)
    problem = number_problem(body.number)
    if problem:
        raise _problems([problem])
    async with conn.transaction():
        # FOR SHARE: a withdrawal waits for this request, or this request sees it.
        consent = await (await conn.execute(_CONSENT + " FOR SHARE", (wearer_id,))).fetchone()
        if consent is None or consent["withdrawn_at"] is not None:
            raise HTTPException(
                status_code=409,
                detail="listen-in needs the wearer's consent, and none is recorded"
                + (" (it was withdrawn)" if consent else "")
                + f": record it first with POST /v1/wearers/{wearer_id}/consents/listen-in",
            )
        family = await (await conn.execute(_FAMILY_PHONE, (wearer_id, body.number))).fetchone()
        if not (family and family["family"]):
            raise _problems(
                [
                    f"number: {body.number} is not the phone of the wearer's guardian or of a"
                    " family member: listen-in calls only them"
                ]
            )
        command = await _enqueue(
            conn, caller, wearer_id, "listen_in", {"number": body.number}, body.ttl_s
        )
        await conn.execute(
            "INSERT INTO location_audit (wearer_id, user_id, viewer, action, precision)"
            " VALUES (%s, %s, %s, 'listen_in', 'exact')",
            (wearer_id, caller.user_id, viewer_name(caller)),
        )
    return command


@router.get("/{wearer_id}/commands", response_model=Commands, responses=_ANSWERS)
async def list_commands(
    conn: ConnDep,
    caller: Caller,
    wearer_id: WearerId,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> Commands:
    """The wearer's commands, newest first. Listen-ins are shown only to whoever may ask for
    one (the guardian)."""
    level = await require_wearer(conn, caller, wearer_id, Action.VIEW_LOCATION)
    cur = await conn.execute(
        f"SELECT {_COLUMNS} FROM commands WHERE wearer_id = %s AND (%s OR kind <> 'listen_in')"
        " ORDER BY created_at DESC, command_id LIMIT %s",
        (wearer_id, _sees_listen_in(level), limit),
    )
    return Commands(commands=[Command(**r) for r in await cur.fetchall()])


@router.get("/{wearer_id}/commands/{command_id}", response_model=Command, responses=_ANSWERS)
async def get_command(
    conn: ConnDep,
    caller: Caller,
    wearer_id: WearerId,
    command_id: Annotated[str, Path(max_length=64)],
) -> Command:
    level = await require_wearer(conn, caller, wearer_id, Action.VIEW_LOCATION)
    return await _command(conn, wearer_id, command_id, _sees_listen_in(level))


def _sees_listen_in(level: Level) -> bool:
    return may(level, Action.LISTEN_IN)


# --- the wearer's consent to listen-in ----------------------------------------------------


async def _consent(conn: ConnDep, wearer_id: str) -> Consent:
    row = await (await conn.execute(_CONSENT, (wearer_id,))).fetchone()
    if row is None:
        return Consent(active=False)
    return Consent(active=row["withdrawn_at"] is None, **row)


@router.get("/{wearer_id}/consents/listen-in", response_model=Consent, responses=_ANSWERS)
async def get_listen_in_consent(conn: ConnDep, caller: Caller, wearer_id: WearerId) -> Consent:
    """Whether listen-in may be used now, and the newest consent recorded."""
    await require_wearer(conn, caller, wearer_id, Action.MANAGE_WEARER)
    return await _consent(conn, wearer_id)


@router.post(
    "/{wearer_id}/consents/listen-in",
    status_code=status.HTTP_201_CREATED,
    response_model=Consent,
    responses=_ANSWERS,
)
async def record_listen_in_consent(
    conn: ConnDep, caller: Caller, wearer_id: WearerId, body: ConsentIn
) -> Consent:
    """Record that the wearer agreed to listen-in, and how (the note). Recording it again
    replaces the consent in force; the earlier one stays in the history, withdrawn."""
    await require_wearer(conn, caller, wearer_id, Action.MANAGE_WEARER)
    async with conn.transaction():
        await conn.execute(_WITHDRAW, (wearer_id,))
        await conn.execute(
            "INSERT INTO consents (wearer_id, kind, recorded_by, note)"
            " VALUES (%s, 'listen_in', %s, %s)",
            (wearer_id, caller.user_id, body.note),
        )
    return await _consent(conn, wearer_id)


@router.delete(
    "/{wearer_id}/consents/listen-in",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    responses=_ANSWERS,
)
async def withdraw_listen_in_consent(conn: ConnDep, caller: Caller, wearer_id: WearerId) -> None:
    """Withdraw the consent: no listen-in from now on. A listen-in not yet handed to the
    broker is not sent (it fails, with the reason); one already sent expires within its 5
    minutes."""
    await require_wearer(conn, caller, wearer_id, Action.MANAGE_WEARER)
    async with conn.transaction():
        await conn.execute(_WITHDRAW, (wearer_id,))
        await conn.execute(
            "UPDATE commands SET status = 'failed', detail = 'the wearer withdrew consent'"
            " WHERE wearer_id = %s AND kind = 'listen_in' AND status = 'pending'",
            (wearer_id,),
        )
