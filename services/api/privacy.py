"""The privacy edge of reading a location: the audit row, the "viewed by" notice to the watch,
and the coarse location a caregiver sees without an open alert.

Every read of a wearer's location (latest, history, membership, events, the live feed) goes
through ``open_location``: nobody looks without the wearer being told (at most one notice per
viewer per 10 minutes, services/people/privacy.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from psycopg import AsyncConnection, sql
from psycopg.rows import DictRow
from psycopg.types.json import Jsonb

from services.api.access import RELATION_COLUMNS, check_allowed, level_of, relation_params
from services.api.deps import Principal
from services.commands.queue import ENQUEUE, NOTIFY, new_command_id
from services.people.access import Action, Level, exact_location
from services.people.privacy import notice_due

NOTICE_TTL_S = 24 * 3600  # a notice still matters when the watch is back tomorrow

# Everything a location read must know before it may answer, asked in ONE query (this is the
# hot path of the family app): the caller's relation, the wearer's devices (a replaced watch
# keeps its history), when this viewer's last notice went to the watch, and what the open
# alerts say — any open alert (a caregiver then sees the exact location), and an open silent
# SOS: while it is open the watch must show nothing at all, since a "viewed by" notice on its
# screen could tell the person near the wearer that help was called. The look is still
# audited (``notified`` false); the next one after it closes tells.
_GATE = f"""
SELECT {RELATION_COLUMNS},
ARRAY(SELECT device_id FROM devices WHERE wearer_id = %(w)s ORDER BY device_id) AS devices,
(SELECT device_id FROM devices WHERE wearer_id = %(w)s AND revoked_at IS NULL
 ORDER BY created_at DESC, device_id LIMIT 1) AS worn,
EXISTS (SELECT 1 FROM alerts WHERE wearer_id = %(w)s AND status <> 'resolved') AS open,
EXISTS (SELECT 1 FROM alerts
        WHERE wearer_id = %(w)s AND status <> 'resolved' AND kind = 'sos_silent') AS silent,
(SELECT max(at) FROM location_audit WHERE wearer_id = %(w)s
 AND user_id IS NOT DISTINCT FROM %(u)s AND viewer = %(v)s AND notified) AS last_notice
"""
# The latest-location route's gate also brings the newest state of any of the wearer's
# devices, read in the same round trip (the hot path: a family app polls it). Nothing of it
# leaves the server unless the gate then allows the caller to see it.
_GATE_AND_STATE = f"""
SELECT g.*, s.* FROM ({_GATE}) g LEFT JOIN LATERAL (
 SELECT device_id AS state_device, fix_t, lat, lon, acc, src, spd, hdg, battery, last_seen,
 online AND last_seen > now() - make_interval(secs => %(offline_after_s)s) AS online
 FROM device_state WHERE device_id = ANY(g.devices)
 ORDER BY fix_t DESC NULLS LAST, last_seen DESC NULLS LAST LIMIT 1) s ON true
"""
_AUDIT = (
    "INSERT INTO location_audit (wearer_id, user_id, viewer, action, precision, at, notified)"
    " VALUES (%s, %s, %s, %s, %s, %s, %s)"
)


@dataclass(frozen=True, slots=True)
class LocationGate:
    """What one look at a wearer's location may show, before it is recorded."""

    level: Level
    exact: bool  # False: coarse, ~500 m
    devices: list[str]  # every device the wearer has worn
    worn: str | None  # the one worn now: it gets the notice
    silent_sos: bool
    last_notice: datetime | None
    # The newest device state (``_GATE_AND_STATE``), when asked for and there is one.
    state: DictRow | None = None


def viewer_name(p: Principal) -> str:
    return "Anxin operator" if p.operator else p.name


async def location_gate(
    conn: AsyncConnection[DictRow],
    p: Principal,
    wearer_id: str,
    offline_after_s: float | None = None,
) -> LocationGate:
    """The caller's view of the wearer's location (level NONE: none at all). Records nothing.
    With ``offline_after_s`` (silence after which a watch counts as offline) it also brings
    the newest device state, in the same query."""
    params = relation_params(p, wearer_id) | {"v": viewer_name(p)}
    if offline_after_s is None:
        row = await (await conn.execute(_GATE, params)).fetchone()
    else:
        params["offline_after_s"] = offline_after_s
        row = await (await conn.execute(_GATE_AND_STATE, params)).fetchone()
    assert row is not None
    level = level_of(row, p)
    state = row if offline_after_s is not None and row["state_device"] is not None else None
    return LocationGate(
        level, exact_location(level, row["open"]), row["devices"], row["worn"], row["silent"],
        row["last_notice"], state,
    )  # fmt: skip


async def open_location(
    conn: AsyncConnection[DictRow],
    p: Principal,
    wearer_id: str,
    action: str,
    offline_after_s: float | None = None,
) -> LocationGate:
    """The one way a route reads a location: 404/403 unless the caller may, then the look is
    audited and the watch told when due."""
    gate = await location_gate(conn, p, wearer_id, offline_after_s)
    check_allowed(gate.level, wearer_id, Action.VIEW_LOCATION)
    await record_read(conn, p, gate, wearer_id, action)
    return gate


async def record_read(
    conn: AsyncConnection[DictRow], p: Principal, gate: LocationGate, wearer_id: str, action: str
) -> None:
    """Audit one read and tell the watch when due.

    The audit row is committed without waiting for the disk flush (``synchronous_commit``
    off for that transaction only): a crash of the database server could lose the last few
    hundred milliseconds of audit rows, never a notice and never anything else, and in return
    a look at a location costs no fsync. A notice, when one is due, is written durably with
    its command, as every command is."""
    now = datetime.now(UTC)
    device = gate.worn
    notify = device is not None and notice_due(gate.last_notice, now) and not gate.silent_sos
    row = (wearer_id, p.user_id, viewer_name(p), action, "exact" if gate.exact else "coarse",
           now, notify)  # fmt: skip
    if not notify:
        # One round trip: the values are quoted here by libpq, and a query without parameters
        # may hold several statements (psycopg's pipeline mode cost more CPU than it saved).
        values = sql.SQL(", ").join(sql.Literal(v) for v in row)
        await conn.execute(
            sql.SQL(
                "BEGIN; SET LOCAL synchronous_commit = off;"
                " INSERT INTO location_audit (wearer_id, user_id, viewer, action, precision, at,"
                " notified) VALUES ({}); COMMIT"
            ).format(values)
        )
        return
    async with conn.transaction():
        await conn.execute(_AUDIT, row)
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
