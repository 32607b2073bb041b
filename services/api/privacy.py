"""The privacy edge of reading a location: the audit row, the "viewed by" notice to the watch,
and the coarse location a caregiver sees without an open alert.

Every read of a wearer's location (latest, history, membership, events, the live feed) goes
through ``location_read``: nobody looks without the wearer being told (at most one notice per
viewer per 10 minutes, services/people/privacy.py).
"""

from __future__ import annotations

from datetime import UTC, datetime

from psycopg import AsyncConnection
from psycopg.rows import DictRow
from psycopg.types.json import Jsonb

from services.api.deps import Principal
from services.commands.queue import ENQUEUE, NOTIFY, WEARER_DEVICE, new_command_id
from services.people.access import Level, exact_location
from services.people.privacy import notice_due

NOTICE_TTL_S = 24 * 3600  # a notice still matters when the watch is back tomorrow


# What the open alerts say about a read, in one look: any open alert (a caregiver then sees the
# exact location), and an open silent SOS — while it is open the watch must show nothing at
# all: a "viewed by" notice on its screen could tell the person near the wearer that help was
# called. The look is still audited (``notified`` false); the next one after it closes tells.
_OPEN_ALERTS = (
    "SELECT count(*) > 0 AS open, count(*) FILTER (WHERE kind = 'sos_silent') > 0 AS silent"
    " FROM alerts WHERE wearer_id = %s AND status <> 'resolved'"
)


def viewer_name(p: Principal) -> str:
    return "Anxin operator" if p.operator else p.name


async def location_read(
    conn: AsyncConnection[DictRow], p: Principal, level: Level, wearer_id: str, action: str
) -> bool:
    """Audit one read and tell the watch when due. Returns whether the caller sees the exact
    location (False: coarse, ~500 m)."""
    alerts = await (await conn.execute(_OPEN_ALERTS, (wearer_id,))).fetchone()
    assert alerts is not None
    exact = exact_location(level, alerts["open"])
    now = datetime.now(UTC)
    async with conn.transaction():
        cur = await conn.execute(
            "SELECT max(at) AS last FROM location_audit WHERE wearer_id = %s"
            " AND user_id IS NOT DISTINCT FROM %s AND viewer = %s AND notified",
            (wearer_id, p.user_id, viewer_name(p)),
        )
        row = await cur.fetchone()
        notify = notice_due(row["last"] if row else None, now) and not alerts["silent"]
        device = None
        if notify:
            dev = await (await conn.execute(WEARER_DEVICE, (wearer_id,))).fetchone()
            device = dev["device_id"] if dev else None
        await conn.execute(
            "INSERT INTO location_audit (wearer_id, user_id, viewer, action, precision, at,"
            " notified) VALUES (%s, %s, %s, %s, %s, %s, %s)",
            (wearer_id, p.user_id, viewer_name(p), action, "exact" if exact else "coarse", now,
             device is not None),
        )  # fmt: skip
        if device is not None:
            command_id = new_command_id()
            await conn.execute(
                ENQUEUE,
                {
                    "command_id": command_id,
                    "device_id": device,
                    "wearer_id": wearer_id,
                    "kind": "viewed_by",
                    "payload": Jsonb({"viewer": viewer_name(p), "at": now.isoformat()}),
                    "requested_by": p.user_id,
                    "ttl_s": NOTICE_TTL_S,
                },
            )
            await conn.execute(NOTIFY, (command_id,))
    return exact
