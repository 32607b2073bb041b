from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, TypeVar

from fastapi import APIRouter, HTTPException, Path, Query, Request, Response

from services.api.deps import Caller, ConnDep
from services.api.privacy import open_location
from services.api.schemas import (
    BAD_PARAMETERS,
    NOT_FOUND,
    UNAUTHORIZED,
    History,
    InvalidRequest,
    LatestLocation,
    Location,
    TrackPoint,
    WearerEvent,
    as_json,
)
from services.people.privacy import coarse

router = APIRouter(
    prefix="/v1/wearers",
    tags=["wearers"],
    responses={**UNAUTHORIZED, **NOT_FOUND, **BAD_PARAMETERS},
)

WearerId = Annotated[str, Path(max_length=80)]
MAX_RANGE = timedelta(days=31)
_BIN_ORIGIN = datetime(2000, 1, 1, tzinfo=UTC)


@router.get("/{wearer_id}/location", response_model=LatestLocation)
async def latest_location(
    request: Request, conn: ConnDep, caller: Caller, wearer_id: WearerId
) -> Response:
    """Where the wearer is now: the newest fix (by device time) of any of their devices.
    Audited, and the wearer's watch is told who looked; a caregiver without an open alert
    sees it to about 500 m (``location.coarse``)."""
    gate = await open_location(conn, caller, wearer_id, "location")
    exact, devices = gate.exact, gate.devices
    cur = await conn.execute(
        "SELECT device_id, fix_t, lat, lon, acc, src, spd, hdg, battery, last_seen,"
        " online AND last_seen > now() - make_interval(secs => %s) AS online"
        " FROM device_state WHERE device_id = ANY(%s)"
        " ORDER BY fix_t DESC NULLS LAST, last_seen DESC NULLS LAST LIMIT 1",
        (request.app.state.offline_after_s, devices),
    )
    row = await cur.fetchone()
    if row is None:
        return as_json(
            LatestLocation(
                wearer_id=wearer_id,
                device_id=gate.worn,
                location=None,
                age_s=None,
                online=False,
                battery=None,
                last_seen=None,
            )
        )
    location = None
    age = None
    if row["fix_t"] is not None:
        location = Location(
            t=row["fix_t"], lat=row["lat"], lon=row["lon"], acc=row["acc"], src=row["src"],
            spd=row["spd"], hdg=row["hdg"],
        )  # fmt: skip
        if not exact:
            location = coarsened(location)
        age = max(0.0, (datetime.now(UTC) - row["fix_t"]).total_seconds())
    return as_json(
        LatestLocation(
            wearer_id=wearer_id,
            device_id=row["device_id"],
            location=location,
            age_s=age,
            online=bool(row["online"]),
            battery=row["battery"],
            last_seen=row["last_seen"],
        )
    )


@router.get(
    "/{wearer_id}/history",
    response_model=History,
    responses={422: {"model": InvalidRequest, "description": "Bad time range or bucket"}},
)
async def location_history(
    conn: ConnDep,
    caller: Caller,
    wearer_id: WearerId,
    start: Annotated[datetime | None, Query(description="Default: end minus 24 h")] = None,
    end: Annotated[datetime | None, Query(description="Default: now")] = None,
    bucket_s: Annotated[
        int | None,
        Query(ge=10, le=86400, description="Bucket width in seconds: one point per bucket"),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=50000)] = 10000,
) -> Response:
    """The wearer's track in time order. With ``bucket_s`` each point is the most accurate fix
    of its bucket (a real position, never an average that may lie in the river)."""
    end = _aware(end) if end else datetime.now(UTC)
    start = _aware(start) if start else end - timedelta(hours=24)
    if start >= end:
        raise HTTPException(status_code=422, detail="start must be before end")
    if end - start > MAX_RANGE:
        raise HTTPException(status_code=422, detail="the range may span at most 31 days")
    gate = await open_location(conn, caller, wearer_id, "history")
    exact, devices = gate.exact, gate.devices
    params = {"devs": devices, "start": start, "end": end, "limit": limit + 1}
    if bucket_s is None:
        query = (
            "SELECT t, lat, lon, acc, src, spd, hdg, 1 AS n FROM positions"
            " WHERE device_id = ANY(%(devs)s) AND t >= %(start)s AND t < %(end)s"
            " ORDER BY t, seq LIMIT %(limit)s"
        )
    else:
        params |= {"bucket": timedelta(seconds=bucket_s), "origin": _BIN_ORIGIN}
        query = (
            "SELECT t, lat, lon, acc, src, spd, hdg, n FROM ("
            " SELECT DISTINCT ON (b) b, t, lat, lon, acc, src, spd, hdg,"
            "  count(*) OVER (PARTITION BY b) AS n"
            " FROM (SELECT date_bin(%(bucket)s, t, %(origin)s) AS b, * FROM positions"
            "  WHERE device_id = ANY(%(devs)s) AND t >= %(start)s AND t < %(end)s) p"
            " ORDER BY b, acc, t DESC) q ORDER BY t LIMIT %(limit)s"
        )
    cur = await conn.execute(query, params)
    rows = await cur.fetchall()
    history = History.model_validate(
        {"wearer_id": wearer_id, "start": start, "end": end, "bucket_s": bucket_s,
         "points": rows[:limit], "truncated": len(rows) > limit}
    )  # fmt: skip
    if not exact:
        history.points = [coarsened(p) for p in history.points]
    # A day is ~1,440 points: validated and written in one pass each (pydantic-core).
    return as_json(history)


def _aware(t: datetime) -> datetime:
    """A time without a zone is taken as UTC, the protocol's only zone."""
    return t if t.tzinfo else t.replace(tzinfo=UTC)


@router.get("/{wearer_id}/events", response_model=list[WearerEvent])
async def events(
    conn: ConnDep,
    caller: Caller,
    wearer_id: WearerId,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    before: Annotated[int | None, Query(description="Only events older than this event_id")] = None,
    since: Annotated[
        datetime | None, Query(description="Only events at or after this time")
    ] = None,
) -> list[WearerEvent]:
    """What happened to the wearer, newest first: fence enter/exit and alarms (one event per
    alarm, however often the watch re-sent it). Events carry positions: audited like them."""
    exact = (await open_location(conn, caller, wearer_id, "events")).exact
    cur = await conn.execute(
        "SELECT e.event_id, e.device_id, e.kind, e.fence_id::text, f.name AS fence_name, e.t,"
        " e.lat, e.lon, e.acc, e.distance_m, e.detail, e.created_at"
        " FROM events e LEFT JOIN fences f USING (fence_id)"
        " WHERE e.wearer_id = %s AND (%s::bigint IS NULL OR e.event_id < %s)"
        " AND (%s::timestamptz IS NULL OR e.t >= %s)"
        " ORDER BY e.event_id DESC LIMIT %s",
        (wearer_id, before, before, since, since, limit),
    )
    out = [WearerEvent(**r) for r in await cur.fetchall()]
    return out if exact else [coarsened(e) for e in out]


P = TypeVar("P", Location, TrackPoint, WearerEvent)


def coarsened(point: P) -> P:
    """The point as a caregiver without an open alert sees it: its ~500 m grid cell."""
    if point.lat is None or point.lon is None:
        return point
    lat, lon, acc = coarse(point.lat, point.lon)
    extra = {"spd": None, "hdg": None} if hasattr(point, "spd") else {}
    return point.model_copy(update={"lat": lat, "lon": lon, "acc": max(acc, point.acc or 0),
                                    "coarse": True, **extra})  # fmt: skip
