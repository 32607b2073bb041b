"""Stage 4b, fences: decide each new fix against its wearer's fences, inside the batch's
transaction, and write state changes and enter/exit events with it.

The decisions themselves are pure (geofences.batch.decide_batch, vectorised). Here is only
what touches the database: the fence cache that follows changes within ``refresh_s``, reading
the prior states, and writing the new ones by compare-and-set on ``fence_state.version`` — if
another replica changed a state first, the whole batch is rolled back and retried with fresh
states, so one transition is never emitted twice.
"""

from __future__ import annotations

import ctypes
import logging
import time
from collections.abc import Callable
from datetime import datetime

import psycopg
from psycopg.types.json import Jsonb

from geofences.batch import decide_batch
from geofences.engine import FenceIndex
from geofences.model import BatchDecisions, DeviceFix, FenceState, FixSample
from services.alerts.model import Location
from services.ingestor.alert_stage import FenceCrossing
from services.ingestor.plan import BatchPlan
from services.ingestor.store import FenceConflict, FenceOutcome
from services.storage.fences import current_version, load_changed

log = logging.getLogger("anxin.ingestor")


class FenceCache:
    PAGE = 5_000  # fences read and compiled at a time: a large fleet's load stays lean

    def __init__(self, refresh_s: float = 0.5) -> None:
        self.index = FenceIndex()
        self.version = 0
        self.refresh_s = refresh_s
        self._checked_at = float("-inf")

    def refresh(self, conn: psycopg.Connection, force: bool = False) -> None:
        """Apply fence changes made since the last look; looks at most every ``refresh_s``.
        Changes are read a page at a time, so that loading 300,000 fences at start-up never
        holds more than a page of decoded GeoJSON beside the compact cache."""
        now = time.monotonic()
        if not force and now - self._checked_at < self.refresh_s:
            return
        self._checked_at = now
        if current_version(conn) <= self.version:
            return
        pages = 0
        while True:
            live, deleted, newest = load_changed(conn, self.version, limit=self.PAGE)
            if newest == self.version:
                break
            pages += 1
            for fence_id in deleted:
                self.index.remove(fence_id)
            for skipped in self.index.upsert_many(live):
                log.error("fence %s is not watched: %s", skipped.fence_id, skipped.reason)
            self.version = newest
        if pages > 1:
            give_back_free_heap()

    def apply(
        self, conn: psycopg.Connection, plan: BatchPlan, wearer_of: Callable[[str], str | None]
    ) -> FenceOutcome:
        """``apply_fences`` against this cache."""
        return apply_fences(conn, plan, self.index, wearer_of)


def give_back_free_heap() -> bool:
    """Return to the system the heap a bulk load left free. Each page's rows (decoded GeoJSON,
    psycopg's buffers) are freed once compiled, but glibc keeps the freed heap for reuse: at
    300,000 fences ~60 bytes a fence (18 MB) that the ingestor would never use again, since
    changes afterwards come a few at a time (``python -m bench --devices 100000``). False
    where the C library has no ``malloc_trim`` (not glibc): nothing is lost there but this."""
    try:
        trim = ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):
        return False
    trim(0)
    return True


def apply_fences(
    conn: psycopg.Connection,
    plan: BatchPlan,
    index: FenceIndex,
    wearer_of: Callable[[str], str | None],
) -> FenceOutcome:
    """Must run inside the batch transaction, before device_state takes this batch's fixes:
    the stored ``fix_t`` is the newest fix already decided."""
    fixes = []
    slots_of = index.wearer_slots
    for item in plan.fixes:
        wearer = wearer_of(item.device_id)
        if wearer is not None and slots_of(wearer):
            f = item.fix
            fixes.append(DeviceFix(item.device_id, wearer, FixSample(f.t, f.lat, f.lon, f.acc)))
    if not fixes:
        return FenceOutcome()
    devices = list({f.device_id for f in fixes})
    newest: dict[str, datetime | None] = dict.fromkeys(devices)
    newest.update(
        conn.execute(
            "SELECT device_id, fix_t FROM device_state WHERE device_id = ANY(%s)", (devices,)
        ).fetchall()
    )
    # fence_id as text: the cache's keys are strings, and a UUID object per row costs more
    # than the cast.
    rows = conn.execute(
        "SELECT device_id, fence_id::text, inside, since, pending_exit_since, active, version"
        " FROM fence_state WHERE device_id = ANY(%s)",
        (devices,),
    ).fetchall()
    make = FenceState._make
    states = {(r[0], r[1]): make(r[2:]) for r in rows}
    result = decide_batch(index, fixes, states, newest)
    _write_states(conn, result, states)
    crossings = _write_events(conn, result, index)
    return FenceOutcome(result.decisions, len(result.transitions), tuple(crossings))


def _write_states(
    conn: psycopg.Connection,
    result: BatchDecisions,
    prior: dict[tuple[str, str], FenceState],
) -> None:
    """Every changed state by compare-and-set, in key order (so that two replicas lock rows
    in the same order), as two pipelined ``executemany`` rather than a round trip a row: the
    first fixes of a fleet change three states each. Each statement touches exactly one row
    or none, so the summed row count says whether any state changed meanwhile."""
    updates, inserts = [], []
    for (device_id, fence_id), s in sorted(result.changed.items()):
        values = (s.inside, s.since, s.pending_exit_since, s.active)
        if (device_id, fence_id) in prior:
            updates.append((*values, device_id, fence_id, prior[device_id, fence_id].version))
        else:
            inserts.append((device_id, fence_id, *values))
    with conn.cursor() as cur:
        if updates:
            cur.executemany(
                "UPDATE fence_state SET inside = %s, since = %s, pending_exit_since = %s,"
                " active = %s, version = version + 1"
                " WHERE device_id = %s AND fence_id = %s AND version = %s",
                updates,
            )
            if cur.rowcount != len(updates):
                raise FenceConflict(f"{len(updates) - cur.rowcount} fence states changed meanwhile")
        if inserts:
            cur.executemany(
                "INSERT INTO fence_state (device_id, fence_id, inside, since,"
                " pending_exit_since, active, version) VALUES (%s, %s, %s, %s, %s, %s, 1)"
                " ON CONFLICT DO NOTHING",
                inserts,
            )
            if cur.rowcount != len(inserts):
                raise FenceConflict(
                    f"{len(inserts) - cur.rowcount} fence states were created meanwhile"
                )


def _write_events(
    conn: psycopg.Connection, result: BatchDecisions, index: FenceIndex
) -> list[FenceCrossing]:
    """One event per transition (transitions are rare: one statement each is fine)."""
    crossings: list[FenceCrossing] = []
    with conn.cursor() as cur:
        for df, d in result.transitions:
            if d.transition is None:
                continue
            fence = index.get(d.fence_id)
            kind = fence.kind.value if fence is not None else "safe"
            detail = {"fence_kind": kind, "fence_name": fence.name if fence is not None else None}
            cur.execute(
                "INSERT INTO events (device_id, wearer_id, kind, fence_id, t, lat, lon, acc,"
                " distance_m, detail) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
                " RETURNING event_id",
                (df.device_id, df.wearer_id, f"fence_{d.transition.value}", d.fence_id,
                 df.fix.t, df.fix.lat, df.fix.lon, df.fix.acc, d.distance_m, Jsonb(detail)),
            )  # fmt: skip
            row = cur.fetchone()
            assert row is not None
            f = df.fix
            crossings.append(
                FenceCrossing(df.device_id, df.wearer_id, d.fence_id, kind, d.transition.value,
                              f.t, Location(f.lat, f.lon, f.acc, f.t), d.distance_m, row[0])
            )  # fmt: skip
    return crossings
