from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request

from services.api.access import visible_wearers
from services.api.deps import Caller, ConnDep
from services.api.schemas import BAD_PARAMETERS, UNAUTHORIZED, DevicePage, DeviceSummary

router = APIRouter(
    prefix="/v1/devices", tags=["devices"], responses={**UNAUTHORIZED, **BAD_PARAMETERS}
)


@router.get("", response_model=DevicePage)
async def list_devices(
    request: Request,
    conn: ConnDep,
    caller: Caller,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    after: Annotated[str | None, Query(max_length=64, description="Last device_id seen")] = None,
) -> DevicePage:
    """Devices with online state, battery and last seen, in device-id order (keyset paging,
    so the cost of a page does not grow with the fleet). A person sees the devices of the
    wearers they are related to; the operator sees all."""
    visible = await visible_wearers(conn, caller)
    cur = await conn.execute(
        "SELECT d.device_id, d.wearer_id, w.name AS wearer_name,"
        " COALESCE(s.online AND s.last_seen > now() - make_interval(secs => %(off)s), false)"
        "   AS online,"
        " s.battery, s.last_seen, s.fix_t AS last_fix_t"
        " FROM devices d JOIN wearers w USING (wearer_id)"
        " LEFT JOIN device_state s USING (device_id)"
        " WHERE d.revoked_at IS NULL AND (%(after)s::text IS NULL OR d.device_id > %(after)s)"
        " AND (%(all)s OR d.wearer_id = ANY(%(visible)s))"
        " ORDER BY d.device_id LIMIT %(limit)s",
        {
            "off": request.app.state.offline_after_s,
            "after": after,
            "limit": limit + 1,
            "all": visible is None,
            "visible": visible or [],
        },
    )
    rows = await cur.fetchall()
    devices = [DeviceSummary(**r) for r in rows[:limit]]
    more = len(rows) > limit
    return DevicePage(devices=devices, next_after=devices[-1].device_id if more else None)
