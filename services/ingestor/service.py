"""The ingestor's MQTT and database edge: receive, batch, run the pipeline, confirm.

Reliability rules (docs/reliability.md):
- a persistent session (stable client id, ``clean_start=False``, long expiry) on a shared
  subscription, so replicas split the load and a restarted replica gets its backlog back;
- manual acknowledgement, only after the batch's transaction has committed; messages received
  on an earlier connection are never acked on a later one (their packet ids are meaningless
  there: the broker redelivers them and the unique keys drop the copies);
- a bounded buffer: ``ReceiveMaximum`` (``ANXIN_INGESTOR_RECEIVE_MAXIMUM``, default twice the
  batch size, never below it, so batches fill) asks the broker for at most that many
  unacknowledged messages, and the ingestor enforces the same bound itself, because Mosquitto
  2.0.11 overshoots it when it drains its queue after a stall: at the bound the network thread
  waits until a batch is finished, and TCP backpressure leaves the rest in the broker. So what
  we hold in memory stays bounded while the database is down and we retry;
  ``Counters.held_max`` records the most ever held;
- a per-device flood limit (flood.py): the excess is dead-lettered and counted, alarms pass.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from enum import StrEnum

import paho.mqtt.client as mqtt
import psycopg
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from psycopg_pool import ConnectionPool

from services.ingestor.access import DeviceAccessCache
from services.ingestor.alert_stage import NewEvents, apply_alerts
from services.ingestor.decode import Limits
from services.ingestor.fence_stage import FenceCache, FenceConflict, FenceOutcome, apply_fences
from services.ingestor.flood import FloodLimiter
from services.ingestor.items import Rejected
from services.ingestor.pipeline import Decoded, Received, decode_all, prepare_batch, topic_devices
from services.ingestor.plan import BatchPlan, plan_batch
from services.ingestor.store import StoreResult, store_batch
from services.mqtt_url import note_packets_sent, parse_mqtt_url
from services.protocol import AlarmReceipt, Topics, UplinkKind
from services.settings import Settings
from services.storage.flavour import Flavour, installed_flavour
from services.storage.partitions import (
    apply_retention,
    ensure_day_partitions,
    ensure_partitions_around_now,
)

log = logging.getLogger("anxin.ingestor")
MAINTENANCE_EVERY_S = 3600.0
# How long one attempt waits for a database connection before it counts as an outage (logged,
# then retried with backoff); also bounds how late a SIGTERM is noticed during an outage.
CONNECT_WAIT_S = 5.0


@dataclass(frozen=True, slots=True)
class Inbound:
    received: Received
    mid: int
    qos: int
    generation: int


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


class Lane(StrEnum):
    """Which uplinks a consumer takes. MQTT acknowledges in arrival order on a connection, so
    an SOS behind a backlog of fixes on the same connection waits for all of them; on its own
    connection (its own session) it is stored at once, whatever the load."""

    ALL = "all"
    FIXES = "fixes"  # everything but alarms
    ALARMS = "alarms"

    def kinds(self) -> tuple[UplinkKind, ...]:
        if self is Lane.ALARMS:
            return (UplinkKind.ALARM,)
        if self is Lane.FIXES:
            return tuple(k for k in UplinkKind if k is not UplinkKind.ALARM)
        return tuple(UplinkKind)

    @property
    def takes_fixes(self) -> bool:
        """Whether location fixes (and so fence decisions) come through this lane."""
        return self is not Lane.ALARMS


def run_ingestor(settings: Settings, stop: threading.Event, leave_group: bool = False) -> None:
    """``anxin ingest``: with the alarm lane (default) two consumers in one process — alarms
    on their own connection with no batch wait, everything else batched. The alarm lane starts
    first so that nothing is published to a lane that has no session yet."""
    if not settings.ingestor_alarm_lane:
        Ingestor(settings).run(stop, leave_group)
        return
    alarms = Ingestor(settings, Lane.ALARMS)
    lane = threading.Thread(
        target=alarms.run, args=(stop, leave_group), name="alarm-lane", daemon=True
    )
    lane.start()
    if not alarms.subscribed.wait(30):
        log.warning("the alarm lane is not subscribed yet; starting the main lane anyway")
    try:
        Ingestor(settings, Lane.FIXES).run(stop, leave_group)
    finally:
        stop.set()
        lane.join(30)


class Ingestor:
    def __init__(self, settings: Settings, lane: Lane = Lane.ALL) -> None:
        if not settings.mqtt_url or not settings.database_url:
            raise ValueError("the ingestor needs ANXIN_MQTT_URL and ANXIN_DATABASE_URL")
        self.settings = settings
        self.lane = lane
        self.client_id = settings.ingestor_client_id + ("-alarms" if lane is Lane.ALARMS else "")
        self.subscribed = threading.Event()
        self.topics = Topics(settings.topic_prefix)
        self.limits = Limits(
            max_payload_bytes=settings.max_payload_bytes,
            max_future_skew=timedelta(seconds=settings.max_future_skew_s),
            max_age=timedelta(days=min(settings.max_fix_age_days, settings.retention_days)),
        )
        self.counters = Counters()
        self.receive_maximum = receive_maximum(settings)
        self._flood = (
            FloodLimiter(settings.device_rate_per_s, settings.device_burst)
            if settings.device_rate_per_s > 0
            else None
        )
        self._held = 0  # messages received and not yet finished (acked or given up)
        # One lock for the buffer: the network thread appends to ``_inbox`` and waits on
        # ``_room`` at the bound; the main loop takes batches, waiting on ``_arrived``.
        lock = threading.Lock()
        self._room = threading.Condition(lock)  # signalled when a batch is finished
        self._arrived = threading.Condition(lock)  # signalled when a message is appended
        self._closing = False
        self._full_logged_at = float("-inf")
        self.connected = threading.Event()
        self._inbox: deque[Inbound] = deque()
        self._generation = 0
        self._last_message_at = time.monotonic()
        self._access = DeviceAccessCache()
        # Only a lane that takes fixes decides fences: the alarm lane keeps no copy of them
        # (with 300,000 fences a second copy would double the process's memory).
        self._fences = FenceCache() if lane.takes_fixes else None
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
        self._client = self._make_client()
        self._flavour = Flavour.PLAIN

    # -- MQTT edge ---------------------------------------------------------------------

    def _make_client(self) -> mqtt.Client:
        target = parse_mqtt_url(self.settings.mqtt_url or "")
        client = target.client(self.client_id, manual_ack=True)
        # One backend client, not a fleet: reconnect promptly (at most 2 s after the broker is
        # back), since alarms buffered in the watches wait for it.
        client.reconnect_delay_set(min_delay=1, max_delay=2)
        client.max_queued_messages_set(0)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        client.on_subscribe = self._on_subscribe
        self._target = target
        return client

    def _connect_properties(self) -> Properties:
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = self.settings.ingestor_session_expiry_s
        props.ReceiveMaximum = self.receive_maximum
        return props

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            log.error("broker refused the connection: %s", reason_code)
            return
        self._generation += 1
        client.subscribe([(f, 1) for f in self._filters()])
        self.connected.set()
        log.info(
            "connected to %s as %s (session present: %s)",
            self._target.redacted(),
            self.client_id,
            flags.session_present,
        )

    def _filters(self) -> list[str]:
        s = self.settings
        if s.ingestor_shared_subscription:
            return self.topics.shared_uplink_filters(s.ingestor_group, self.lane.kinds())
        return self.topics.uplink_filters(self.lane.kinds())

    def _on_subscribe(self, client, userdata, mid, reason_codes, properties) -> None:
        failed = [rc for rc in reason_codes if rc.is_failure]
        if failed:
            log.error("subscription refused: %s", failed)
        else:
            self.subscribed.set()
            log.info("subscribed to %d uplink filters (%s lane)", len(reason_codes), self.lane)

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        self.connected.clear()
        log.warning("disconnected from broker (%s); reconnecting", reason_code)

    def _on_message(self, client, userdata, msg: mqtt.MQTTMessage) -> None:
        try:
            topic = msg.topic
        except UnicodeDecodeError:
            topic = msg._topic.decode("utf-8", "replace")
        with self._room:
            self._wait_for_room()
            self._held += 1
            self.counters.held_max = max(self.counters.held_max, self._held)
            received = Received(topic, bytes(msg.payload), datetime.now(UTC))
            self._inbox.append(Inbound(received, msg.mid, msg.qos, self._generation))
            self._arrived.notify()
        self._last_message_at = time.monotonic()

    def _wait_for_room(self) -> None:
        """The bounded buffer, on the network thread (holding the buffer's lock): at the
        bound, stop reading (the broker keeps the rest) until the main loop finishes a batch."""
        while self._held >= self.receive_maximum and not self._closing:
            if time.monotonic() - self._full_logged_at > 10:
                self._full_logged_at = time.monotonic()
                log.warning(
                    "holding %d unacknowledged messages, the bound: reading paused until"
                    " a batch is stored",
                    self._held,
                )
            self._room.wait(1.0)

    # -- the loop ------------------------------------------------------------------------

    def run(self, stop: threading.Event, leave_group: bool = False) -> None:
        """Run until ``stop`` is set; then finish the batch in hand and disconnect, keeping
        the session (and the subscription) so that nothing published meanwhile is lost.

        ``leave_group`` is the scale-down runbook: store the backlog queued for this replica's
        session, then unsubscribe, finish what is in flight and end the session, so the broker
        stops keeping a share of the traffic for a replica that will not come back."""
        self._pool.open(wait=False)
        self._wait_for_database(stop)
        with self._pool.connection() as conn:
            self._flavour = installed_flavour(conn)
            self._load_fences(conn)
        t = self._target
        self._client.connect_async(
            t.host,
            t.port,
            keepalive=self.settings.mqtt_keepalive_s,
            clean_start=False,
            properties=self._connect_properties(),
        )
        self._client.loop_start()
        next_maintenance = 0.0
        next_report = time.monotonic() + 10
        try:
            while not stop.is_set():
                if self.lane is not Lane.ALARMS and time.monotonic() >= next_maintenance:
                    self._maintenance()
                    next_maintenance = time.monotonic() + MAINTENANCE_EVERY_S
                batch = self._collect()
                if batch:
                    self._handle(batch, stop)
                elif leave_group and self.connected.is_set() and self._idle_for(2.0):
                    break
                if time.monotonic() >= next_report:
                    log.info("%s", self.counters)
                    self._report_floods()
                    if self._flood is not None:
                        self._flood.forget_refilled(time.time())
                    next_report = time.monotonic() + 10
            if leave_group:
                self._leave_group()
        finally:
            with self._room:  # a network thread waiting for room must not block the exit
                self._closing = True
                self._room.notify_all()
            self._client.disconnect(properties=self._disconnect_properties(leave_group))
            self._client.loop_stop()
            self._pool.close()
            self._report_floods()
            # The main lane's line keeps its historical form ("stopped: Counters(…)").
            tag = " (alarms lane)" if self.lane is Lane.ALARMS else ""
            log.info("stopped%s: %s", tag, self.counters)

    def _load_fences(self, conn: psycopg.Connection) -> None:
        """Every fence, before the first message: the first batch must not wait for (nor a
        restart hide) the cache's load, which takes seconds with a large fleet."""
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

    def _idle_for(self, seconds: float) -> bool:
        return time.monotonic() - self._last_message_at >= seconds

    def _disconnect_properties(self, end_session: bool) -> Properties | None:
        if not end_session:
            return None
        props = Properties(PacketTypes.DISCONNECT)
        props.SessionExpiryInterval = 0
        return props

    def _leave_group(self) -> None:
        if not self.connected.is_set():
            return
        self._client.unsubscribe(self._filters())
        quiet_until = time.monotonic() + 1.0
        while time.monotonic() < quiet_until:
            batch = self._collect()
            if batch:
                self._handle(batch, threading.Event())
                quiet_until = time.monotonic() + 0.5
        log.info("left the subscription group; in-flight messages stored and acknowledged")

    def _collect(self) -> list[Inbound]:
        # An alarm waits for nobody: its lane takes what has arrived and goes.
        wait_ms = 0 if self.lane is Lane.ALARMS else self.settings.ingestor_batch_wait_ms
        size = self.settings.ingestor_batch_size
        inbox = self._inbox
        with self._arrived:
            if not inbox:
                self._arrived.wait(0.2)
                if not inbox:
                    return []
            deadline = time.monotonic() + wait_ms / 1000
            batch: list[Inbound] = []
            while True:
                batch.extend(inbox.popleft() for _ in range(min(len(inbox), size - len(batch))))
                left = deadline - time.monotonic()
                if len(batch) >= size or left <= 0:
                    return batch
                self._arrived.wait(left)

    def _handle(self, batch: list[Inbound], stop: threading.Event) -> None:
        """Store the batch, retrying while the database is away, then confirm it."""
        # Decoded once, whatever the retries: decoding needs nothing but the messages.
        received = decode_all((b.received for b in batch), self.topics, self.limits)
        delay = 0.5
        while True:
            try:
                plan = self._store_or_split(received)
                break
            except FenceConflict as err:
                self.counters.fence_conflicts += 1
                log.info("%s; retrying the batch with fresh fence states", err)
                continue
            except psycopg.OperationalError as err:
                self.counters.store_retries += 1
                log.warning("database unavailable (%s); retrying in %.1f s", err, delay)
            if stop.wait(delay):
                self._release(len(batch))
                return  # unacked: the broker redelivers to our session after restart
            delay = min(delay * 2, 10.0)
        self._confirm(batch, plan)

    def _store_or_split(self, received: list[Decoded]) -> BatchPlan:
        """A batch that fails for a reason other than the connection is stored message by
        message, and the message that fails alone is dead-lettered with the database's error,
        rather than retrying a poison batch forever."""
        try:
            return self._store(received)
        except psycopg.OperationalError:
            raise
        except psycopg.Error as err:
            log.error("batch failed (%s); storing its messages one by one", err)
        merged = BatchPlan()
        for r in received:
            try:
                plan = self._store([r])
            except psycopg.OperationalError:
                raise
            except psycopg.Error as err:
                reason = f"could not be stored: {type(err).__name__}: {err}"[:500]
                m = r.received
                plan = plan_batch([Rejected(m.topic, None, m.payload, reason, m.received_at)])
                with self._pool.connection() as conn:
                    self._count(store_batch(conn, plan), 1)
            merged.alarms.extend(plan.alarms)
        return merged

    def _store(self, received: list[Decoded]) -> BatchPlan:
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
            self.counters.rate_limited += flood.limited.total()
        self._count(result, len(received))
        return plan

    def _fence_step(self, conn: psycopg.Connection, plan: BatchPlan) -> FenceOutcome:
        if self._fences is None:
            return FenceOutcome()
        return apply_fences(conn, plan, self._fences.index, self._access.wearer_of)

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

    def _count(self, result: StoreResult, messages: int) -> None:
        c = self.counters
        c.messages += messages
        c.batches += 1
        c.fixes_new += result.fixes_new
        c.fixes_duplicate += result.fixes_duplicate
        c.alarms_new += result.alarms_new
        c.dead_letters += result.dead_letters
        c.fence_decisions += result.fences.decisions
        c.fence_events += result.fences.transitions
        c.alerts_opened += result.alerts_opened

    def _confirm(self, batch: list[Inbound], plan: BatchPlan) -> None:
        """Stage 5: receipts for committed alarms, then MQTT acks (current connection only)."""
        for device_id, seqs in plan.receipts().items():
            receipt = AlarmReceipt(id=uuid.uuid4().hex[:16], seqs=sorted(set(seqs)))
            self._client.publish(
                self.topics.command(device_id), receipt.model_dump_json().encode(), qos=1
            )
            self.counters.receipts += 1
        generation = self._generation
        self._release(len(batch))  # before the acks: the broker sends more only after them
        acked = False
        for b in batch:
            if b.qos > 0 and b.generation == generation:
                self._client.ack(b.mid, b.qos)
                acked = True
        if acked:
            note_packets_sent(self._client)

    def _release(self, n: int) -> None:
        with self._room:
            self._held -= n
            self._room.notify_all()

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

    def _wait_for_database(self, stop: threading.Event) -> None:
        delay = 0.5
        while not stop.is_set():
            try:
                with self._pool.connection(timeout=5) as conn:
                    conn.execute("SELECT 1")
                return
            except Exception as err:
                log.warning("waiting for the database: %s", err)
                stop.wait(delay)
                delay = min(delay * 2, 10.0)


def receive_maximum(settings: Settings) -> int:
    """The in-flight window the ingestor asks for: at least one batch, or batches never fill."""
    size = settings.ingestor_batch_size
    wanted = settings.ingestor_receive_maximum or 2 * size
    return min(65535, max(wanted, size, 100))
