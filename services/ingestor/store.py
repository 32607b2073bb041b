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

from services.ingestor.alert_stage import FenceCrossing, NewAlarm, NewEvents
from services.ingestor.plan import BatchPlan


class FenceConflict(Exception):
    """Another transaction changed a fence state this batch read: retry the batch."""


@dataclass(frozen=True)
class FenceOutcome:
    """What the fence stage (fence_stage.py) did in a batch. Defined here, with the store
    that takes it, so that a process that decides no fences never imports the fence engine
    (numpy, Shapely): the MQTT edge's alarm lane."""

    decisions: int = 0
    transitions: int = 0
    crossings: tuple[FenceCrossing, ...] = ()


FenceStep = Callable[[psycopg.Connection, BatchPlan], FenceOutcome]
AlertStep = Callable[[psycopg.Connection, BatchPlan, NewEvents], int]

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
    alerts_opened: int = 0


def store_batch(
    conn: psycopg.Connection,
    plan: BatchPlan,
    fence_step: FenceStep | None = None,
    alert_step: AlertStep | None = None,
) -> StoreResult:
    """``fence_step`` (stage 4b) runs after the fixes are in and before the devices' latest
    state moves on, so that it sees which fixes are newer than the last ones decided.
    ``alert_step`` (stage 4c) runs last: it takes the live feed's lock, held until the commit
    right after it."""
    with conn.transaction():
        fixes_new = _store_fixes(conn, plan) if plan.fixes else 0
        new_alarms = _store_alarms(conn, plan) if plan.alarms else []
        fences = fence_step(conn, plan) if fence_step and plan.fixes else FenceOutcome()
        _store_acks(conn, plan)
        _store_device_state(conn, plan)
        _store_dead_letters(conn, plan)
        events = NewEvents(new_alarms, list(fences.crossings))
        opened = alert_step(conn, plan, events) if alert_step else 0
    return StoreResult(
        fixes_new=fixes_new,
        fixes_duplicate=len(plan.fixes) - fixes_new,
        alarms_new=len(new_alarms),
        dead_letters=len(plan.rejected),
        fences=fences,
        alerts_opened=opened,
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


def _store_alarms(conn: psycopg.Connection, plan: BatchPlan) -> list[NewAlarm]:
    """Each alarm stored once; a newly stored one (not a re-send) also becomes an event."""
    new: list[NewAlarm] = []
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
            detail = {"mode": a.alarm.mode.value, "seq": a.alarm.seq, "fix_error": a.fix_error}
            cur.execute(
                "INSERT INTO events (device_id, wearer_id, kind, t, lat, lon, acc, detail)"
                " SELECT device_id, wearer_id, %s, %s, %s, %s, %s, %s FROM devices"
                " WHERE device_id = %s RETURNING event_id, wearer_id",
                (f"alarm_{a.alarm.type.value}", a.alarm.t, p.lat if p else None,
                 p.lon if p else None, p.acc if p else None, Jsonb(detail), a.device_id),
            )  # fmt: skip
            row = cur.fetchone()
            if row is not None:
                new.append(NewAlarm(a, row[1], row[0]))
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
        # The answered command moves on; only the watch it was sent to can answer it, and
        # only once (a re-sent ack, or one after expiry, changes nothing). In command order,
        # so that two replicas' batches never wait for each other's rows in a cycle.
        cur.executemany(
            "UPDATE commands SET status = CASE WHEN %(ok)s THEN 'acknowledged' ELSE 'failed' END,"
            " acked_at = now(), detail = %(detail)s"
            " WHERE command_id = %(cmd)s AND device_id = %(device)s"
            " AND status IN ('pending', 'sent')",
            [
                {"ok": a.ack.ok, "cmd": a.ack.cmd, "device": a.device_id,
                 "detail": a.ack.detail or (None if a.ack.ok else "the watch did not do it")}
                for a in sorted(plan.acks, key=lambda a: (a.ack.cmd, a.device_id))
            ],
        )  # fmt: skip


_FIX_COLUMNS = ("fix_t", "fix_seq", "lat", "lon", "acc", "src", "spd", "hdg")
_BATTERY_COLUMNS = ("battery", "battery_t", "charging")
_NEWER_FIX = "excluded.fix_t IS NOT NULL AND (d.fix_t IS NULL OR excluded.fix_t > d.fix_t)"
_NEWER_BATTERY = (
    "excluded.battery_t IS NOT NULL AND (d.battery_t IS NULL OR excluded.battery_t >= d.battery_t)"
)
_NEWER_SEEN = "(d.last_seen IS NULL OR excluded.last_seen >= d.last_seen)"
_STATE_COLUMNS = ("device_id", "last_seen", "online", *_FIX_COLUMNS, *_BATTERY_COLUMNS)
_STATE_TYPES = ["text", "timestamptz", "bool", "timestamptz", "int8", "float8", "float8",
                "float4", "text", "float4", "float4", "int2", "timestamptz", "bool"]  # fmt: skip
_UPSERT_STATE = (
    f"INSERT INTO device_state AS d ({', '.join(_STATE_COLUMNS)}, online_changed_at)"
    f" SELECT {', '.join(_STATE_COLUMNS)}, last_seen FROM device_state_in ORDER BY device_id"
    " ON CONFLICT (device_id) DO UPDATE SET"
    " last_seen = GREATEST(d.last_seen, excluded.last_seen),"
    f" online = CASE WHEN {_NEWER_SEEN} THEN excluded.online ELSE d.online END,"
    f" online_changed_at = CASE WHEN {_NEWER_SEEN} AND d.online <> excluded.online"
    "  THEN excluded.last_seen ELSE d.online_changed_at END, "
    + ", ".join(f"{c} = CASE WHEN {_NEWER_FIX} THEN excluded.{c} ELSE d.{c} END"
                for c in _FIX_COLUMNS)
    + ", "
    + ", ".join(f"{c} = CASE WHEN {_NEWER_BATTERY} THEN excluded.{c} ELSE d.{c} END"
                for c in ("battery", "battery_t"))
    + f", charging = CASE WHEN {_NEWER_BATTERY} THEN COALESCE(excluded.charging, d.charging)"
    " ELSE d.charging END"
)  # fmt: skip


def _store_device_state(conn: psycopg.Connection, plan: BatchPlan) -> None:
    """Latest state per device, in ONE row version per device per batch: a binary COPY of one
    row per device, then a single upsert whose compare-and-set conditions keep the newest fix
    (by device time), the newest battery reading and the newest liveness each on their own.
    Rows are taken in device order so that two replicas lock overlapping devices in the same
    order and cannot deadlock."""
    if not plan.seen:
        return
    conn.execute(
        "CREATE TEMP TABLE IF NOT EXISTS device_state_in"
        " (LIKE device_state INCLUDING DEFAULTS) ON COMMIT DELETE ROWS"
    )
    with conn.cursor() as cur:
        with cur.copy(
            f"COPY device_state_in ({', '.join(_STATE_COLUMNS)}) FROM STDIN (FORMAT BINARY)"
        ) as copy:
            copy.set_types(_STATE_TYPES)
            for device_id, seen in plan.seen.items():
                newest = plan.newest_fix.get(device_id)
                f = newest.fix if newest else None
                fix = (
                    (f.t, f.seq, f.lat, f.lon, f.acc, f.src.value, f.spd, f.hdg)
                    if f
                    else (None,) * len(_FIX_COLUMNS)
                )
                b = plan.battery.get(device_id)
                battery = (b.percent, b.t, b.charging) if b else (None, None, None)
                copy.write_row((device_id, seen.last_seen, seen.online, *fix, *battery))
        cur.execute(_UPSERT_STATE)


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
