"""Silence as an alert: a watch with no fix and no heartbeat for ``offline_after_s``.

One offline alert per silence: it opens once the device has been quiet long enough (unless
one was already opened for this silence — a person may have resolved it while the watch is
still away), and it resolves itself as soon as the watch is heard again. High instead of
medium when the wearer was last known outside a safe fence.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import psycopg

from services.alerts.model import (
    AlertKind,
    AlertLocation,
    Clear,
    Location,
    LocationSource,
    Trigger,
)
from services.alerts.rules import offline_severity
from services.alerts.store import AlertWrites

SILENT_DEVICES = """
SELECT ds.device_id, d.wearer_id, ds.last_seen, ds.fix_t, ds.lat, ds.lon, ds.acc, ds.battery,
    EXISTS (SELECT 1 FROM fence_state fs JOIN fences f ON f.fence_id = fs.fence_id
            WHERE fs.device_id = ds.device_id AND f.kind = 'safe' AND f.deleted_at IS NULL
              AND fs.active AND fs.inside = false) AS outside_safe
FROM device_state ds
JOIN devices d ON d.device_id = ds.device_id AND d.revoked_at IS NULL
WHERE ds.last_seen < %(cutoff)s
  AND NOT EXISTS (SELECT 1 FROM alerts a WHERE a.device_id = ds.device_id
                  AND a.kind = 'offline' AND a.opened_at >= ds.last_seen)
ORDER BY ds.device_id
LIMIT %(limit)s
"""

BACK_ONLINE = """
SELECT a.device_id FROM alerts a JOIN device_state ds ON ds.device_id = a.device_id
WHERE a.kind = 'offline' AND a.status <> 'resolved' AND ds.last_seen > a.t
ORDER BY a.device_id
"""


def offline_trigger(
    device_id: str,
    wearer_id: str,
    last_seen: datetime,
    last_fix: Location | None,
    battery: int | None,
    outside_safe: bool,
    now: datetime,
) -> Trigger:
    """Pure: the alert a silent device raises (``t`` is when it was last heard)."""
    where = AlertLocation(last_fix, LocationSource.LAST_KNOWN) if last_fix else None
    detail: dict[str, object] = {
        "last_seen": last_seen.isoformat(),
        "silent_for_s": int((now - last_seen).total_seconds()),
        "outside_safe_fence": outside_safe,
    }
    if battery is not None:
        detail["battery"] = battery
    return Trigger(
        device_id, wearer_id, AlertKind.OFFLINE, offline_severity(outside_safe), last_seen,
        None, where, detail,
    )  # fmt: skip


def scan_offline(
    conn: psycopg.Connection, now: datetime, offline_after_s: float, limit: int = 1000
) -> tuple[int, int]:
    """Open alerts for newly silent devices and clear those heard again, in one transaction.
    Returns (opened, cleared)."""
    with conn.transaction():
        writes = AlertWrites(conn, now)
        cleared = 0
        for (device_id,) in conn.execute(BACK_ONLINE).fetchall():
            cleared += len(writes.clear(Clear(device_id, AlertKind.OFFLINE, None, now, "back")))
        rows = conn.execute(
            SILENT_DEVICES,
            {"cutoff": now - timedelta(seconds=offline_after_s), "limit": limit},
        ).fetchall()
        for device_id, wearer_id, last_seen, fix_t, lat, lon, acc, battery, outside in rows:
            fix = Location(lat, lon, acc, fix_t) if fix_t is not None else None
            writes.raise_alert(
                offline_trigger(device_id, wearer_id, last_seen, fix, battery, outside, now)
            )
        writes.finish()
    return writes.opened, cleared
