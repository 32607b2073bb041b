"""A wearer's fences as GeoJSON Features, their current membership, and fence events."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, HTTPException, Path, Response

from geofences.geojson import fence_to_feature, fences_from_geojson
from geofences.validate import FenceValidationError
from services.api.access import require_wearer
from services.api.deps import Caller, ConnDep
from services.api.privacy import open_location
from services.api.routes.wearers import WearerId
from services.api.schemas import (
    MALFORMED_BODY,
    NOT_FOUND,
    UNAUTHORIZED,
    FenceMembership,
    InvalidFence,
)
from services.people.access import Action
from services.storage import fences

router = APIRouter(
    prefix="/v1/wearers/{wearer_id}", tags=["fences"], responses={**UNAUTHORIZED, **NOT_FOUND}
)

# A UUID in its canonical form: anything else would reach PostgreSQL's uuid cast and fail there.
FenceId = Annotated[str, Path(pattern=r"^[0-9a-fA-F]{8}(-[0-9a-fA-F]{4}){3}-[0-9a-fA-F]{12}$")]
FEATURE_EXAMPLE = {
    "type": "Feature",
    "geometry": {"type": "Point", "coordinates": [121.4737, 31.2304]},
    "properties": {"name": "home", "kind": "safe", "radius_m": 60, "margin_m": 25,
                   "dwell_s": 60, "schedule": {"days": ["mon", "tue", "wed", "thu", "fri"],
                                               "windows": ["21:00-07:00"]}},
}  # fmt: skip
FeatureBody = Annotated[
    dict[str, Any], Body(description="A GeoJSON Feature", examples=[FEATURE_EXAMPLE])
]
INVALID = {
    422: {"model": InvalidFence, "description": "The fence is invalid; one reason per line"},
    **MALFORMED_BODY,
}


async def _tz_and_names(conn: ConnDep, wearer_id: str, except_id: str | None) -> tuple[str, set]:
    cur = await conn.execute("SELECT tz FROM wearers WHERE wearer_id = %s", (wearer_id,))
    row = await cur.fetchone()
    if row is None:
        raise HTTPException(status_code=404, detail=f"no wearer {wearer_id!r}")
    cur = await conn.execute(
        "SELECT name FROM fences WHERE wearer_id = %s AND deleted_at IS NULL"
        " AND (%s::uuid IS NULL OR fence_id <> %s::uuid)",
        (wearer_id, except_id, except_id),
    )
    return row["tz"], {r["name"] for r in await cur.fetchall()}


async def _validated(
    conn: ConnDep, wearer_id: str, feature: dict[str, Any], fence_id: str | None
) -> Any:
    if not isinstance(feature, dict) or feature.get("type") != "Feature":
        raise HTTPException(
            status_code=422, detail={"problems": ["the body must be one GeoJSON Feature"]}
        )
    tz, names = await _tz_and_names(conn, wearer_id, fence_id)
    doc = feature | ({"id": fence_id} if fence_id else {})
    try:
        [fence] = fences_from_geojson(
            doc, default_tz=tz, wearer_id=wearer_id, existing_names={wearer_id: names}
        )
    except FenceValidationError as err:
        raise HTTPException(status_code=422, detail={"problems": err.problems}) from err
    return fence


@router.get("/fences")
async def list_fences(conn: ConnDep, caller: Caller, wearer_id: WearerId) -> dict[str, Any]:
    """The wearer's live fences as a GeoJSON FeatureCollection."""
    await require_wearer(conn, caller, wearer_id, Action.VIEW_ALERTS)
    cur = await conn.execute(
        "SELECT feature FROM fences WHERE wearer_id = %s AND deleted_at IS NULL ORDER BY name",
        (wearer_id,),
    )
    return {"type": "FeatureCollection", "features": [r["feature"] for r in await cur.fetchall()]}


@router.post("/fences", status_code=201, responses=INVALID)
async def create_fence(
    conn: ConnDep, caller: Caller, wearer_id: WearerId, feature: FeatureBody
) -> dict[str, Any]:
    await require_wearer(conn, caller, wearer_id, Action.EDIT_FENCES)
    fence = await _validated(conn, wearer_id, {k: v for k, v in feature.items() if k != "id"},
                             None)  # fmt: skip
    await conn.execute(fences.INSERT_FENCE, fences.insert_params(fence))
    return fence_to_feature(fence)


@router.put("/fences/{fence_id}", responses=INVALID)
async def replace_fence(
    conn: ConnDep, caller: Caller, wearer_id: WearerId, fence_id: FenceId, feature: FeatureBody
) -> dict[str, Any]:
    """Replace a fence's definition; the engine forgets its state and decides afresh."""
    await require_wearer(conn, caller, wearer_id, Action.EDIT_FENCES)
    fence = await _validated(conn, wearer_id, feature, fence_id.lower())
    async with conn.transaction():
        cur = await conn.execute(fences.UPDATE_FENCE, fences.update_params(fence))
        if cur.rowcount == 0:
            raise HTTPException(status_code=404, detail=f"no fence {fence_id}")
        await conn.execute(fences.FORGET_FENCE_STATE, (fence.fence_id,))
    return fence_to_feature(fence)


@router.delete("/fences/{fence_id}", status_code=204)
async def delete_fence(
    conn: ConnDep, caller: Caller, wearer_id: WearerId, fence_id: FenceId
) -> Response:
    await require_wearer(conn, caller, wearer_id, Action.EDIT_FENCES)
    cur = await conn.execute(fences.DELETE_FENCE, (fence_id, wearer_id))
    if cur.rowcount == 0:
        raise HTTPException(status_code=404, detail=f"no fence {fence_id}")
    return Response(status_code=204)


@router.get("/membership", response_model=list[FenceMembership])
async def membership(conn: ConnDep, caller: Caller, wearer_id: WearerId) -> list[FenceMembership]:
    """Inside which fences the wearer is, since when (null: not yet decided). A location read:
    audited, and the watch is told."""
    devices = (await open_location(conn, caller, wearer_id, "membership")).devices
    cur = await conn.execute(
        "SELECT f.fence_id::text, f.name, f.kind, s.inside, s.since, s.pending_exit_since,"
        " COALESCE(s.active, true) AS active"
        " FROM fences f LEFT JOIN LATERAL (SELECT * FROM fence_state s"
        "   WHERE s.fence_id = f.fence_id AND s.device_id = ANY(%s)"
        "   ORDER BY s.since DESC NULLS LAST LIMIT 1) s ON true"
        " WHERE f.wearer_id = %s AND f.deleted_at IS NULL ORDER BY f.name",
        (devices, wearer_id),
    )
    return [FenceMembership(**r) for r in await cur.fetchall()]
