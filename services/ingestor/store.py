"""Stage 4, store: write a planned batch in ONE transaction.

Fixes go through a binary COPY into a per-connection staging table and on into ``positions``
with ``ON CONFLICT DO NOTHING``: that is where redelivered and re-sent duplicates disappear.
Everything else is a handful of set-based statements, so the cost per batch is flat in the
number of devices. The caller acknowledges the MQTT messages only after this commits.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import psycopg
from psycopg.types.json import Jsonb

from services.ingestor.fence_stage import FenceOutcome
from services.ingestor.plan import BatchPlan

FenceStep = Callable[[psycopg.Connection, BatchPlan], FenceOutcome]

_POSITION_COLUMNS = (
    "device_id, seq, t, lat, lon, acc, src, spd, hdg, battery, received_at",
    ["text", "int8", "timestamptz", "float8", "float8", "float4", "text", "float4", "float4",
     "int2", "timestamptz"],
)  # fmt: skip


@dataclass(frozen=True)
class StoreResult:
    fixes_new: int
    fixes_duplicate: int
    alarms_new: int
    dead_letters: int
    fences: FenceOutcome


def store_batch(
    conn: psycopg.Connection, plan: BatchPlan, fence_step: FenceStep | None = None
) -> StoreResult:
    """``fence_step`` (stage 4b) runs after the fixes are in and before the devices' latest
    state moves on, so that it sees which fixes are newer than the last ones decided."""
    with conn.transaction():
        fixes_new = _store_fixes(conn, plan) if plan.fixes else 0
        alarms_new = _store_alarms(conn, plan) if plan.alarms else 0
        fences = fence_step(conn, plan) if fence_step and plan.fixes else FenceOutcome()
        _store_acks(conn, plan)
        _store_device_state(conn, plan)
        _store_dead_letters(conn, plan)
    return StoreResult(
        fixes_new=fixes_new,
        fixes_duplicate=len(plan.fixes) - fixes_new,
        alarms_new=alarms_new,
        dead_letters=len(plan.rejected),
        fences=fences,
    )


def _store_fixes(conn: psycopg.Connection, plan: BatchPlan) -> int:
    columns, types = _POSITION_COLUMNS
    conn.execute(
        "CREATE TEMP TABLE IF NOT EXISTS positions_in"
        " (LIKE positions INCLUDING DEFAULTS) ON COMMIT DELETE ROWS"
    )
    with conn.cursor() as cur:
        with cur.copy(f"COPY positions_in ({columns}) FROM STDIN (FORMAT BINARY)") as copy:
            copy.set_types(types)
            for item in plan.fixes:
                f = item.fix
                copy.write_row(
                    (item.device_id, f.seq, f.t, f.lat, f.lon, f.acc, f.src.value, f.spd, f.hdg,
                     f.bat, item.received_at)
                )  # fmt: skip
        cur.execute(
            f"INSERT INTO positions ({columns}) SELECT {columns} FROM positions_in"
            " ORDER BY device_id, t, seq ON CONFLICT DO NOTHING"
        )
        return cur.rowcount


def _store_alarms(conn: psycopg.Connection, plan: BatchPlan) -> int:
    """Each alarm stored once; a newly stored one (not a re-send) also becomes an event."""
    new = 0
    with conn.cursor() as cur:
        for a in plan.alarms:
            p = a.position
            cur.execute(
                "INSERT INTO alarms (device_id, seq, t, type, mode, fix_t, lat, lon, acc, src,"
                " fix_error, received_at) VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s)"
                " ON CONFLICT DO NOTHING",
                (a.device_id, a.alarm.seq, a.alarm.t, a.alarm.type.value, a.alarm.mode.value,
                 p.t if p else None, p.lat if p else None, p.lon if p else None,
                 p.acc if p else None, p.src.value if p else None, a.fix_error, a.received_at),
            )  # fmt: skip
            if cur.rowcount == 0:
                continue  # a re-send: stored and announced before
            new += 1
            detail = {"mode": a.alarm.mode.value, "seq": a.alarm.seq, "fix_error": a.fix_error}
            cur.execute(
                "INSERT INTO events (device_id, wearer_id, kind, t, lat, lon, acc, detail)"
                " SELECT device_id, wearer_id, %s, %s, %s, %s, %s, %s FROM devices"
                " WHERE device_id = %s",
                (f"alarm_{a.alarm.type.value}", a.alarm.t, p.lat if p else None,
                 p.lon if p else None, p.acc if p else None, Jsonb(detail), a.device_id),
            )  # fmt: skip
    return new


def _store_acks(conn: psycopg.Connection, plan: BatchPlan) -> None:
    if not plan.acks:
        return
    with conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO command_acks (device_id, seq, t, cmd, ok, detail, received_at)"
            " VALUES (%s,%s,%s,%s,%s,%s,%s) ON CONFLICT DO NOTHING",
            [
                (a.device_id, a.ack.seq, a.ack.t, a.ack.cmd, a.ack.ok, a.ack.detail, a.received_at)
                for a in plan.acks
            ],
        )


def _store_device_state(conn: psycopg.Connection, plan: BatchPlan) -> None:
    """Latest state per device. Rows are touched in device order so that two replicas
    updating overlapping devices lock them in the same order and cannot deadlock."""
    if plan.seen:
        ids = sorted(plan.seen)
        conn.execute(
            "INSERT INTO device_state AS d (device_id, last_seen, online, online_changed_at)"
            " SELECT id, seen, online, seen FROM unnest(%s::text[], %s::timestamptz[],"
            " %s::bool[]) AS u(id, seen, online) ORDER BY id"
            " ON CONFLICT (device_id) DO UPDATE SET"
            "  last_seen = GREATEST(d.last_seen, excluded.last_seen),"
            "  online = CASE WHEN d.last_seen IS NULL OR excluded.last_seen >= d.last_seen"
            "           THEN excluded.online ELSE d.online END,"
            "  online_changed_at = CASE WHEN (d.last_seen IS NULL"
            "           OR excluded.last_seen >= d.last_seen) AND d.online <> excluded.online"
            "           THEN excluded.last_seen ELSE d.online_changed_at END",
            (
                ids,
                [plan.seen[i].last_seen for i in ids],
                [plan.seen[i].online for i in ids],
            ),
        )
    if plan.newest_fix:
        ids = sorted(plan.newest_fix)
        fixes = [plan.newest_fix[i].fix for i in ids]
        conn.execute(
            "UPDATE device_state AS d SET fix_t = u.t, fix_seq = u.seq, lat = u.lat,"
            " lon = u.lon, acc = u.acc, src = u.src, spd = u.spd, hdg = u.hdg"
            " FROM unnest(%s::text[], %s::timestamptz[], %s::int8[], %s::float8[],"
            " %s::float8[], %s::float4[], %s::text[], %s::float4[], %s::float4[])"
            " AS u(id, t, seq, lat, lon, acc, src, spd, hdg)"
            " WHERE d.device_id = u.id AND (d.fix_t IS NULL OR u.t > d.fix_t)",
            (
                ids,
                [f.t for f in fixes],
                [f.seq for f in fixes],
                [f.lat for f in fixes],
                [f.lon for f in fixes],
                [f.acc for f in fixes],
                [f.src.value for f in fixes],
                [f.spd for f in fixes],
                [f.hdg for f in fixes],
            ),
        )
    if plan.battery:
        ids = sorted(plan.battery)
        readings = [plan.battery[i] for i in ids]
        conn.execute(
            "UPDATE device_state AS d SET battery = u.pct, battery_t = u.t,"
            " charging = COALESCE(u.charging, d.charging)"
            " FROM unnest(%s::text[], %s::timestamptz[], %s::int2[], %s::bool[])"
            " AS u(id, t, pct, charging)"
            " WHERE d.device_id = u.id AND (d.battery_t IS NULL OR u.t >= d.battery_t)",
            (ids, [r.t for r in readings], [r.percent for r in readings],
             [r.charging for r in readings]),
        )  # fmt: skip


def _store_dead_letters(conn: psycopg.Connection, plan: BatchPlan) -> None:
    if not plan.rejected:
        return
    with (
        conn.cursor() as cur,
        cur.copy(
            "COPY dead_letters (received_at, topic, device_id, payload, payload_size, reason)"
            " FROM STDIN (FORMAT BINARY)"
        ) as copy,
    ):
        copy.set_types(["timestamptz", "text", "text", "bytea", "int4", "text"])
        for r in plan.rejected:
            copy.write_row(
                (r.received_at, _clean_text(r.topic), r.device_id, r.payload,
                 len(r.payload), _clean_text(r.reason))
            )  # fmt: skip


def _clean_text(text: str) -> str:
    """PostgreSQL text cannot hold NUL; a hostile topic or reason must not fail the batch."""
    return text.replace("\x00", "\\x00")
