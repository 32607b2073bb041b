from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, HTTPException, Path, Query, Request, Response
from psycopg.rows import tuple_row

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
    WearerEvent,
    as_json,
    raw_json,
)
from services.people.privacy import coarse

router = APIRouter(
    prefix="/v1/wearers",
    tags=["wearers"],
    responses={**UNAUTHORIZED, **NOT_FOUND, **BAD_PARAMETERS},
)

WearerId = Annotated[str, Path(max_length=80)]
MAX_RANGE = timedelta(days=31)
_POINT_KEYS = ("t", "lat", "lon", "acc", "src", "spd", "hdg", "n")  # the history query's columns
_BIN_ORIGIN = datetime(2000, 1, 1, tzinfo=UTC)  # also the earliest end of a history


@router.get("/{wearer_id}/location", response_model=LatestLocation)
async def latest_location(
    request: Request, conn: ConnDep, caller: Caller, wearer_id: WearerId
) -> Response:
    """Where the wearer is now: the newest fix (by device time) of any of their devices.
    Audited, and the wearer's watch is told who looked; a caregiver without an open alert
    sees it to about 500 m (``location.coarse``)."""
    gate = await open_location(
        conn, caller, wearer_id, "location", offline_after_s=request.app.state.offline_after_s
    )
    row = gate.state
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
        if not gate.exact:
            location = coarsened(location)
        age = max(0.0, (datetime.now(UTC) - row["fix_t"]).total_seconds())
    return as_json(
        LatestLocation(
            wearer_id=wearer_id,
            device_id=row["state_device"],
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
    if end <= _BIN_ORIGIN:
        raise HTTPException(status_code=422, detail="end must be after 2000-01-01")
    start = _aware(start) if start else end - timedelta(hours=24)
    if start >= end:
        raise HTTPException(status_code=422, detail="start must be before end")
    if end - start > MAX_RANGE:
        raise HTTPException(status_code=422, detail="the range may span at most 31 days")
    gate = await open_location(conn, caller, wearer_id, "history")
    params = {"devs": gate.devices, "start": start, "end": end, "limit": limit + 1}
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
    cur = conn.cursor(row_factory=tuple_row)
    rows = await (await cur.execute(query, params)).fetchall()
    # A day is ~1,440 points: plain tuples written by orjson, not a model each (that was
    # three quarters of this route's CPU, docs/performance.md); ``History`` documents them.
    points = [dict(zip(_POINT_KEYS, r, strict=True), coarse=False) for r in rows[:limit]]
    if not gate.exact:
        for point in points:
            point |= coarse_fields(point["lat"], point["lon"], point["acc"], motion=True)
    return raw_json(
        {"wearer_id": wearer_id, "start": start, "end": end, "bucket_s": bucket_s,
         "points": points, "truncated": len(rows) > limit}
    )  # fmt: skip


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


P = TypeVar("P", Location, WearerEvent)


def coarse_fields(lat: float, lon: float, acc: float | None, motion: bool) -> dict[str, Any]:
    """What a caregiver without an open alert sees of a point: its ~500 m grid cell, and no
    speed or heading (``motion``: the point has them) that would narrow it down again."""
    clat, clon, cacc = coarse(lat, lon)
    extra = {"spd": None, "hdg": None} if motion else {}
    return {"lat": clat, "lon": clon, "acc": max(cacc, acc or 0), "coarse": True, **extra}


def coarsened(point: P) -> P:
    """The point (a model) as a caregiver without an open alert sees it."""
    if point.lat is None or point.lon is None:
        return point
    return point.model_copy(
        update=coarse_fields(point.lat, point.lon, point.acc, motion=hasattr(point, "spd"))
    )
