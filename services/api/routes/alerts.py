"""Alerts: list and filter, one alert, acknowledge, resolve with a note, the timeline.

Acknowledge and resolve write the alert, its log row and its feed row in one transaction, in
the lock order every writer keeps (the alert row, then the feed lock; services/alerts/sql.py).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path, Query
from psycopg import AsyncConnection
from psycopg.rows import DictRow
from psycopg.types.json import Jsonb

from services.alerts import sql
from services.api.access import alert_wearer, require_wearer, visible_wearers
from services.api.alert_schemas import (
    Acknowledge,
    Alert,
    AlertPage,
    KindLabel,
    Resolve,
    SeverityLabel,
    Timeline,
    TimelineEntry,
)
from services.api.deps import Caller, ConnDep, Principal
from services.api.schemas import COMMON
from services.people.access import Action

router = APIRouter(prefix="/v1/alerts", tags=["alerts"], responses=COMMON)

AlertId = Annotated[int, Path(ge=1, le=2**62)]
_SEVERITY = {"low": 1, "medium": 2, "high": 3, "critical": 4}
_NOT_FOUND = {404: {"description": "No such alert (or contact)"}}
_CHANGE_RESPONSES: dict[int | str, dict[str, Any]] = {
    **_NOT_FOUND,
    403: {"description": "The contact does not care for this wearer"},
    409: {"description": "The alert is already resolved"},
}


async def fetch_alert(conn: AsyncConnection[DictRow], alert_id: int) -> Alert:
    cur = await conn.execute("SELECT alert FROM alert_public WHERE alert_id = %s", (alert_id,))
    row = await cur.fetchone()
    if row is None:
        raise HTTPException(status_code=404, detail=f"no alert {alert_id}")
    return Alert.model_validate(row["alert"])


async def append_feed(conn: AsyncConnection[DictRow], alert_id: int, kind: str) -> None:
    """The feed row of a change (inside the caller's transaction; see sql.FEED_LOCK)."""
    await conn.execute(sql.LOCK_FEED, (sql.FEED_LOCK,))
    cur = await conn.execute(sql.APPEND_FEED, {"type": kind, "alert_id": alert_id})
    row = await cur.fetchone()
    if row is not None:
        await conn.execute(sql.NOTIFY_FEED, (row["feed_id"],))


async def acting_contact(
    conn: AsyncConnection[DictRow], caller: Principal, contact_id: int | None, alert_id: int
) -> int:
    """Who acknowledges or resolves: a person acts as their own contact, with their relation
    to the wearer checked (404/403); the operator names a contact that cares for the wearer."""
    await require_wearer(conn, caller, await alert_wearer(conn, alert_id), Action.HANDLE_ALERTS)
    if not caller.operator:
        if caller.contact_id is None:
            raise HTTPException(status_code=403, detail="your account has no contact record")
        if contact_id is not None and contact_id != caller.contact_id:
            raise HTTPException(status_code=403, detail="you can only act as yourself")
        return caller.contact_id
    if contact_id is None:
        raise HTTPException(status_code=422, detail="the operator must name the contact_id")
    await _check_contact(conn, contact_id, alert_id)
    return contact_id


async def _check_contact(conn: AsyncConnection[DictRow], contact_id: int, alert_id: int) -> None:
    """Only someone who cares for the wearer (in their care list or escalation tiers) may
    acknowledge or resolve the wearer's alert."""
    cur = await conn.execute(
        "SELECT EXISTS (SELECT 1 FROM contacts WHERE contact_id = %(c)s) AS known,"
        " EXISTS (SELECT 1 FROM alerts a JOIN care USING (wearer_id)"
        "         WHERE a.alert_id = %(a)s AND care.contact_id = %(c)s)"
        " OR EXISTS (SELECT 1 FROM alerts a JOIN escalation_tiers t USING (wearer_id)"
        "         WHERE a.alert_id = %(a)s AND %(c)s = ANY(t.contact_ids)) AS cares",
        {"c": contact_id, "a": alert_id},
    )
    row = await cur.fetchone()
    assert row is not None
    if not row["known"]:
        raise HTTPException(status_code=404, detail=f"no contact {contact_id}")
    if not row["cares"]:
        raise HTTPException(
            status_code=403, detail=f"contact {contact_id} does not care for this wearer"
        )


@router.get("", response_model=AlertPage)
async def list_alerts(
    conn: ConnDep,
    caller: Caller,
    wearer_id: Annotated[str | None, Query(max_length=80)] = None,
    kind: KindLabel | None = None,
    status: Annotated[
        str | None,
        Query(
            pattern="^(open|acknowledged|resolved|unresolved)$",
            description="unresolved: open or acknowledged",
        ),
    ] = None,
    min_severity: SeverityLabel | None = None,
    before: Annotated[int | None, Query(ge=1, le=2**62)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> AlertPage:
    """Newest first; page with ``before`` (the last alert id of the previous page)."""
    where = ["true"]
    params: dict[str, Any] = {"limit": limit}
    visible = await visible_wearers(conn, caller)
    if visible is not None:
        where.append("wearer_id = ANY(%(visible)s)")
        params["visible"] = visible
    if wearer_id is not None:
        where.append("wearer_id = %(wearer)s")
        params["wearer"] = wearer_id
    if kind is not None:
        where.append("kind = %(kind)s")
        params["kind"] = kind
    if status == "unresolved":
        where.append("status <> 'resolved'")
    elif status is not None:
        where.append("status = %(status)s")
        params["status"] = status
    if min_severity is not None:
        where.append("severity >= %(sev)s")
        params["sev"] = _SEVERITY[min_severity]
    if before is not None:
        where.append("alert_id < %(before)s")
        params["before"] = before
    cur = await conn.execute(
        f"SELECT alert_id, alert FROM alert_public WHERE {' AND '.join(where)}"
        " ORDER BY alert_id DESC LIMIT %(limit)s",
        params,
    )
    rows = await cur.fetchall()
    alerts = [Alert.model_validate(r["alert"]) for r in rows]
    return AlertPage(
        alerts=alerts, next_before=alerts[-1].alert_id if len(alerts) == limit else None
    )


@router.get("/{alert_id}", response_model=Alert, responses=_NOT_FOUND)
async def get_alert(conn: ConnDep, caller: Caller, alert_id: AlertId) -> Alert:
    await require_wearer(conn, caller, await alert_wearer(conn, alert_id), Action.VIEW_ALERTS)
    return await fetch_alert(conn, alert_id)


@router.post(
    "/{alert_id}/acknowledge",
    response_model=Alert,
    responses=_CHANGE_RESPONSES,
)
async def acknowledge(
    conn: ConnDep, caller: Caller, alert_id: AlertId, body: Acknowledge | None = None
) -> Alert:
    """Someone is on it: escalation stops. Acknowledging twice changes nothing."""
    contact_id = await acting_contact(conn, caller, body.contact_id if body else None, alert_id)
    async with conn.transaction():
        cur = await conn.execute(sql.ACKNOWLEDGE, {"alert_id": alert_id, "contact_id": contact_id})
        row = await cur.fetchone()
        if row is None:
            status = await (await conn.execute(sql.ALERT_STATUS, (alert_id,))).fetchone()
            if status is not None and status["status"] == "resolved":
                raise HTTPException(status_code=409, detail="the alert is already resolved")
        else:
            await conn.execute(
                sql.LOG,
                {"alert_id": alert_id, "action": "acknowledged", "contact_id": contact_id,
                 "tier": row["tier"], "detail": Jsonb({})},
            )  # fmt: skip
            await append_feed(conn, alert_id, "alert.acknowledged")
    return await fetch_alert(conn, alert_id)


@router.post(
    "/{alert_id}/resolve",
    response_model=Alert,
    responses=_CHANGE_RESPONSES,
)
async def resolve(conn: ConnDep, caller: Caller, alert_id: AlertId, body: Resolve) -> Alert:
    """Closed, with a note saying what happened (it also counts as an acknowledgement)."""
    contact_id = await acting_contact(conn, caller, body.contact_id, alert_id)
    async with conn.transaction():
        cur = await conn.execute(
            sql.RESOLVE,
            {"alert_id": alert_id, "contact_id": contact_id, "note": body.note},
        )
        row = await cur.fetchone()
        if row is None:
            raise HTTPException(status_code=409, detail="the alert is already resolved")
        await conn.execute(
            sql.LOG,
            {"alert_id": alert_id, "action": "resolved", "contact_id": contact_id,
             "tier": row["tier"], "detail": Jsonb({"note": body.note})},
        )  # fmt: skip
        await append_feed(conn, alert_id, "alert.resolved")
    return await fetch_alert(conn, alert_id)


@router.get("/{alert_id}/timeline", response_model=Timeline, responses=_NOT_FOUND)
async def timeline(conn: ConnDep, caller: Caller, alert_id: AlertId) -> Timeline:
    """Everything that happened to an alert, in time order: the events it gathered, what
    people and the system did (opened, escalated, acknowledged, resolved) and every delivery
    attempt."""
    await require_wearer(conn, caller, await alert_wearer(conn, alert_id), Action.VIEW_ALERTS)
    alert = await fetch_alert(conn, alert_id)
    cur = await conn.execute(
        "SELECT * FROM (SELECT e.created_at AS at, 'event' AS type, e.kind AS what,"
        "  NULL::bigint AS contact_id, NULL::smallint AS tier, NULL::boolean AS ok,"
        "  e.detail || jsonb_build_object('t', e.t, 'lat', e.lat, 'lon', e.lon, 'acc', e.acc)"
        "  AS detail, e.event_id AS n"
        " FROM alert_events ae JOIN events e USING (event_id) WHERE ae.alert_id = %(a)s"
        " UNION ALL SELECT at, 'action', action, contact_id, tier, NULL, detail, log_id"
        " FROM alert_log WHERE alert_id = %(a)s"
        " UNION ALL SELECT at, 'delivery', channel, contact_id, NULL, ok,"
        "  jsonb_build_object('attempt', attempt, 'status_code', status_code, 'detail', detail),"
        "  delivery_id FROM deliveries WHERE alert_id = %(a)s"
        ") entries ORDER BY at, CASE type WHEN 'event' THEN 0 WHEN 'action' THEN 1 ELSE 2 END, n",
        {"a": alert_id},
    )
    entries = [
        TimelineEntry(
            at=r["at"],
            type=r["type"],
            what=r["what"],
            contact_id=r["contact_id"],
            tier=r["tier"],
            ok=r["ok"],
            detail=r["detail"] or {},
        )
        for r in await cur.fetchall()
    ]
    return Timeline(alert=alert, entries=entries)
