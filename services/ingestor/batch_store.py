"""The ingestor's database side: a batch of received messages in, stored and counted, out.

Everything here needs the database and nothing needs MQTT, so the MQTT edge (service.py) can
run it in its own process (store_process.py): one Python process cannot both read MQTT and
decode, decide fences and write batches at the broker's pace, because paho's network thread
and the batch loop share one GIL (docs/performance.md). The alarm lane, which gets a message
now and then and must answer at once, runs it in its own thread.

Reliability rules kept here (docs/reliability.md): a batch is retried while the database is
away, never acknowledged before it commits; a poison batch is stored message by message and
the message that fails alone is dead-lettered with the database's error.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field, fields
from datetime import date, timedelta
from typing import TYPE_CHECKING

import psycopg
from psycopg_pool import ConnectionPool

from services.ingestor.access import DeviceAccessCache
from services.ingestor.alert_stage import NewEvents, apply_alerts
from services.ingestor.decode import Limits
from services.ingestor.flood import FloodLimiter
from services.ingestor.items import Rejected
from services.ingestor.pipeline import Decoded, Received, decode_all, prepare_batch, topic_devices
from services.ingestor.plan import BatchPlan, plan_batch
from services.ingestor.store import FenceConflict, FenceOutcome, StoreResult, store_batch
from services.protocol import Topics
from services.settings import Settings
from services.storage.flavour import Flavour, installed_flavour
from services.storage.partitions import (
    apply_retention,
    ensure_day_partitions,
    ensure_partitions_around_now,
)

if TYPE_CHECKING:
    from services.ingestor.fence_stage import FenceCache

log = logging.getLogger("anxin.ingestor")
MAINTENANCE_EVERY_S = 3600.0
REPORT_EVERY_S = 10.0
# A device's bucket is full again a fraction of a second after a message (defaults: 5 a second,
# bursts of 60) and then forgotten for nothing (flood.py). Looking every second rather than at
# each report keeps about a second's devices, not ten: at 100,000 devices and ~6,500 messages
# a second that is ~20 MB less (docs/performance.md), for a scan of a few thousand buckets.
FORGET_REFILLED_EVERY_S = 1.0
# How long one attempt waits for a database connection before it counts as an outage (logged,
# then retried with backoff); also bounds how late a SIGTERM is noticed during an outage.
CONNECT_WAIT_S = 5.0


@dataclass
class Counters:
    messages: int = 0
    fixes_new: int = 0
    fixes_duplicate: int = 0
    alarms_new: int = 0
    dead_letters: int = 0
    batches: int = 0
    store_retries: int = 0
    fence_decisions: int = 0
    fence_events: int = 0
    alerts_opened: int = 0
    fence_conflicts: int = 0
    receipts: int = 0
    rate_limited: int = 0  # messages over a device's flood limit, dead-lettered
    held_max: int = 0  # most messages held in memory at once (bounded by ReceiveMaximum)

    def add(self, other: Counters) -> None:
        """Add a batch's counts (``held_max`` is the edge's own, a maximum: not added)."""
        for f in fields(self):
            if f.name != "held_max":
                setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))


@dataclass
class Stored:
    """What the edge needs back from a committed batch: the alarm receipts to send and the
    batch's counts."""

    receipts: dict[str, list[int]] = field(default_factory=dict)
    counts: Counters = field(default_factory=Counters)


class BatchStore:
    """Stages 1–4 (pipeline.py) for one lane, with the caches they need: device access,
    fences (a lane that takes fixes only) and flood buckets."""

    def __init__(self, settings: Settings, takes_fixes: bool) -> None:
        if not settings.database_url:
            raise ValueError("the ingestor needs ANXIN_DATABASE_URL")
        self.settings = settings
        self.topics = Topics(settings.topic_prefix)
        self.limits = Limits(
            max_payload_bytes=settings.max_payload_bytes,
            max_future_skew=timedelta(seconds=settings.max_future_skew_s),
            max_age=timedelta(days=min(settings.max_fix_age_days, settings.retention_days)),
        )
        self.takes_fixes = takes_fixes
        self._flood = (
            FloodLimiter(settings.device_rate_per_s, settings.device_burst)
            if settings.device_rate_per_s > 0
            else None
        )
        self._access = DeviceAccessCache()
        # Only a lane that takes fixes decides fences: the alarm lane keeps no copy of them
        # (with 300,000 fences a second copy would double the process's memory), and does
        # not even import the fence engine: without numpy and Shapely the MQTT edge, where
        # the alarm lane runs, is ~25 MB smaller (docs/performance.md).
        self._fences: FenceCache | None = None
        if takes_fixes:
            from services.ingestor.fence_stage import FenceCache

            self._fences = FenceCache()
        self._known_days: set[date] = set()
        self._pool = ConnectionPool(
            settings.database_url,
            min_size=1,
            max_size=2,
            open=False,
            # No check per checkout (a round trip per batch): a connection that died with the
            # database fails its batch with OperationalError, is dropped, and the batch retried.
            name="ingestor",
        )
        self._flavour = Flavour.PLAIN
        self._next_maintenance = 0.0
        self._next_report = time.monotonic() + REPORT_EVERY_S
        self._next_forget = 0.0

    # -- life cycle ----------------------------------------------------------------------

    def open(self, stop: threading.Event) -> bool:
        """Wait for the database, then load every fence: the first batch must not wait for
        (nor a restart hide) the cache's load, which takes seconds with a large fleet.
        False if ``stop`` came first."""
        self._pool.open(wait=False)
        if not self._wait_for_database(stop):
            return False
        with self._pool.connection() as conn:
            self._flavour = installed_flavour(conn)
            self._load_fences(conn)
        return True

    def close(self) -> None:
        self._pool.close()
        self._report_floods()

    def housekeeping(self) -> None:
        """Between batches: partitions and retention hourly (a lane that takes fixes), the
        flood report every 10 s, refilled buckets forgotten every second."""
        now = time.monotonic()
        if self.takes_fixes and now >= self._next_maintenance:
            self._maintenance()
            self._next_maintenance = time.monotonic() + MAINTENANCE_EVERY_S
        if now >= self._next_report:
            self._report_floods()
            self._next_report = now + REPORT_EVERY_S
        if self._flood is not None and now >= self._next_forget:
            self._flood.forget_refilled(time.time())
            self._next_forget = now + FORGET_REFILLED_EVERY_S

    # -- one batch -----------------------------------------------------------------------

    def store(self, received: list[Received], stop: threading.Event) -> Stored | None:
        """Store the batch, retrying while the database is away; None if ``stop`` came
        first (then nothing was committed and the caller must not acknowledge)."""
        counts = Counters()
        # Decoded once, whatever the retries: decoding needs nothing but the messages.
        decoded = decode_all(received, self.topics, self.limits)
        delay = 0.5
        while True:
            try:
                plan = self._store_or_split(decoded, counts)
                break
            except FenceConflict as err:
                counts.fence_conflicts += 1
                log.info("%s; retrying the batch with fresh fence states", err)
                continue
            except psycopg.OperationalError as err:
                counts.store_retries += 1
                log.warning("database unavailable (%s); retrying in %.1f s", err, delay)
            if stop.wait(delay):
                return None  # unacked: the broker redelivers to our session after restart
            delay = min(delay * 2, 10.0)
        return Stored(plan.receipts(), counts)

    def _store_or_split(self, received: list[Decoded], counts: Counters) -> BatchPlan:
        """A batch that fails for a reason other than the connection is stored message by
        message, and the message that fails alone is dead-lettered with the database's error,
        rather than retrying a poison batch forever."""
        try:
            return self._store(received, counts)
        except psycopg.OperationalError:
            raise
        except psycopg.Error as err:
            log.error("batch failed (%s); storing its messages one by one", err)
        merged = BatchPlan()
        for r in received:
            try:
                plan = self._store([r], counts)
            except psycopg.OperationalError:
                raise
            except psycopg.Error as err:
                reason = f"could not be stored: {type(err).__name__}: {err}"[:500]
                m = r.received
                plan = plan_batch([Rejected(m.topic, None, m.payload, reason, m.received_at)])
                with self._pool.connection() as conn:
                    _count(counts, store_batch(conn, plan), 1)
            merged.alarms.extend(plan.alarms)
        return merged

    def _store(self, received: list[Decoded], counts: Counters) -> BatchPlan:
        with self._pool.connection(timeout=CONNECT_WAIT_S) as conn:
            access = self._access.lookup(conn, topic_devices(received))
            conn.commit()
            if self._fences is not None:
                self._fences.refresh(conn)
                conn.commit()
            flood = self._flood.trial() if self._flood is not None else None
            plan = prepare_batch(received, access, flood)
            self._ensure_partitions(conn, plan)
            result = store_batch(conn, plan, self._fence_step, self._alert_step)
        if flood is not None:
            flood.commit()  # only now: a retried batch must not be charged twice
            counts.rate_limited += flood.limited.total()
        _count(counts, result, len(received))
        return plan

    def _fence_step(self, conn: psycopg.Connection, plan: BatchPlan) -> FenceOutcome:
        if self._fences is None:
            return FenceOutcome()
        return self._fences.apply(conn, plan, self._access.wearer_of)

    def _alert_step(self, conn: psycopg.Connection, plan: BatchPlan, events: NewEvents) -> int:
        return apply_alerts(
            conn,
            plan,
            events,
            self._access.wearer_of,
            bad_fix_accuracy_m=self.settings.alert_bad_fix_accuracy_m,
        )

    def _ensure_partitions(self, conn: psycopg.Connection, plan: BatchPlan) -> None:
        if self._flavour is not Flavour.PLAIN:
            return
        days = plan.fix_days - self._known_days
        if days:
            ensure_day_partitions(conn, days)
            self._known_days |= days

    # -- the rest ------------------------------------------------------------------------

    def _load_fences(self, conn: psycopg.Connection) -> None:
        if self._fences is None:
            return
        t0 = time.monotonic()
        self._fences.refresh(conn, force=True)
        conn.commit()
        log.info(
            "fence cache: %d fences (version %d) in %.1f s",
            len(self._fences.index),
            self._fences.version,
            time.monotonic() - t0,
        )

    def _report_floods(self) -> None:
        report = self._flood.take_report() if self._flood is not None else None
        if report:
            top = ", ".join(f"{d} ×{n}" for d, n in report.most_common(5))
            log.warning(
                "flood limit: %d messages from %d devices dead-lettered as rate_limited"
                " since the last report (%s)",
                report.total(),
                len(report),
                top,
            )

    def _maintenance(self) -> None:
        try:
            with self._pool.connection() as conn:
                ensure_partitions_around_now(
                    conn, self._flavour, days_ahead=self.settings.partition_days_ahead
                )
                dropped = apply_retention(conn, self._flavour, self.settings.retention_days)
                if dropped:
                    log.info("retention dropped %s", ", ".join(dropped))
        except psycopg.Error as err:
            log.warning("maintenance skipped: %s", err)

    def _wait_for_database(self, stop: threading.Event) -> bool:
        delay = 0.5
        while not stop.is_set():
            try:
                with self._pool.connection(timeout=5) as conn:
                    conn.execute("SELECT 1")
                return True
            except Exception as err:
                log.warning("waiting for the database: %s", err)
                stop.wait(delay)
                delay = min(delay * 2, 10.0)
        return False


def _count(c: Counters, result: StoreResult, messages: int) -> None:
    c.messages += messages
    c.batches += 1
    c.fixes_new += result.fixes_new
    c.fixes_duplicate += result.fixes_duplicate
    c.alarms_new += result.alarms_new
    c.dead_letters += result.dead_letters
    c.fence_decisions += result.fences.decisions
    c.fence_events += result.fences.transitions
    c.alerts_opened += result.alerts_opened
