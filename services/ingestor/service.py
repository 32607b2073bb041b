"""The ingestor's MQTT edge: receive, batch, hand each batch to the store, confirm.

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

The database side (decode, plan, store, retries) is batch_store.py; for the main lane it runs
in a child process (store_process.py), so that reading MQTT and storing do not share a GIL.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from services.ingestor.batch_store import BatchStore, Counters, Stored
from services.ingestor.pipeline import Received
from services.ingestor.store_process import StoreProcess
from services.mqtt_url import note_packets_sent, parse_mqtt_url
from services.protocol import AlarmReceipt, Topics, UplinkKind
from services.settings import Settings

log = logging.getLogger("anxin.ingestor")


@dataclass(frozen=True, slots=True)
class Inbound:
    received: Received
    mid: int
    qos: int
    generation: int


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
    on their own connection with no batch wait, everything else batched. The main lane's store
    process is started first, while this process still has one thread (store_process.py); the
    alarm lane subscribes next, so that nothing is published to a lane that has no session."""
    main = Ingestor(settings, Lane.FIXES if settings.ingestor_alarm_lane else Lane.ALL)
    main.start_store()
    if not settings.ingestor_alarm_lane:
        main.run(stop, leave_group)
        return
    alarms = Ingestor(settings, Lane.ALARMS)
    lane = threading.Thread(
        target=alarms.run, args=(stop, leave_group), name="alarm-lane", daemon=True
    )
    lane.start()
    if not alarms.subscribed.wait(30):
        log.warning("the alarm lane is not subscribed yet; starting the main lane anyway")
    try:
        main.run(stop, leave_group)
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
        self.counters = Counters()
        self.receive_maximum = receive_maximum(settings)
        # The database side: in a child process for a lane that takes fixes (the load), in
        # this process for the alarm lane (an alarm now and then, answered at once).
        self._store: BatchStore | StoreProcess = (
            StoreProcess(settings, takes_fixes=True)
            if lane.takes_fixes
            else BatchStore(settings, takes_fixes=False)
        )
        self._held = 0  # messages received and not yet finished (acked or given up)
        # One lock for the buffer: the network thread appends to ``_inbox`` and waits on
        # ``_room`` at the bound; the main loop takes batches, waiting on ``_arrived``.
        lock = threading.Lock()
        self._room = threading.Condition(lock)  # signalled when a batch is finished
        # Signalled when the inbox holds what the main loop waits for (``_wanted``): the first
        # message, or the rest of a batch. Not at every message: waking the main loop for each
        # one cost the network thread a fifth of its time in notify and GIL hand-offs.
        self._arrived = threading.Condition(lock)
        self._wanted = 1
        self._closing = False
        self._full_logged_at = float("-inf")
        self.connected = threading.Event()
        self._inbox: deque[Inbound] = deque()
        self._generation = 0
        self._last_message_at = time.monotonic()
        self._client = self._make_client()
        # The main lane's batches in flight to the store process (store_process.py).
        self._window = threading.Semaphore(StoreProcess.WINDOW)
        self._awaiting: queue.Queue[list[Inbound] | None] = queue.Queue()
        self._confirmer: threading.Thread | None = None
        self._store_failure: BaseException | None = None

    def start_store(self) -> None:
        """Start the store process now (``run`` does it otherwise): see run_ingestor."""
        if isinstance(self._store, StoreProcess):
            self._store.start()

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
            if len(self._inbox) >= self._wanted:
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
        try:
            # The store is open (the database reached, every fence loaded) before we subscribe.
            if self._store.open(stop):
                self._receive(stop, leave_group)
        finally:
            self._store.close()
            # The main lane's line keeps its historical form ("stopped: Counters(…)").
            tag = " (alarms lane)" if self.lane is Lane.ALARMS else ""
            log.info("stopped%s: %s", tag, self.counters)

    def _receive(self, stop: threading.Event, leave_group: bool) -> None:
        t = self._target
        self._client.connect_async(
            t.host,
            t.port,
            keepalive=self.settings.mqtt_keepalive_s,
            clean_start=False,
            properties=self._connect_properties(),
        )
        self._client.loop_start()
        if isinstance(self._store, StoreProcess):
            self._confirmer = threading.Thread(
                target=self._confirm_answers, args=(self._store, stop), name="confirm"
            )
            self._confirmer.start()
        next_report = time.monotonic() + 10
        try:
            while not stop.is_set():
                self._store.housekeeping()
                batch = self._collect()
                if batch:
                    self._handle(batch, stop)
                elif leave_group and self.connected.is_set() and self._idle_for(2.0):
                    break
                if time.monotonic() >= next_report:
                    log.info("%s", self.counters)
                    next_report = time.monotonic() + 10
            if leave_group:
                self._leave_group()
        finally:
            self._drain()
            with self._room:  # a network thread waiting for room must not block the exit
                self._closing = True
                self._room.notify_all()
            self._client.disconnect(properties=self._disconnect_properties(leave_group))
            self._client.loop_stop()

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
        self._drain()
        log.info("left the subscription group; in-flight messages stored and acknowledged")

    def _collect(self) -> list[Inbound]:
        # An alarm waits for nobody: its lane takes what has arrived and goes.
        wait_ms = 0 if self.lane is Lane.ALARMS else self.settings.ingestor_batch_wait_ms
        size = self.settings.ingestor_batch_size
        inbox = self._inbox
        with self._arrived:
            if not inbox:
                self._wanted = 1
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
                self._wanted = size - len(batch)  # woken when the batch can be filled
                self._arrived.wait(left)

    def _handle(self, batch: list[Inbound], stop: threading.Event) -> None:
        """Store the batch (the store retries while the database is away), then confirm it:
        here for the alarm lane; for the main lane the store process's answer is awaited by
        the confirming thread, while this one collects and sends the next batch."""
        received = [b.received for b in batch]
        if isinstance(self._store, BatchStore):
            self._finish(batch, self._store.store(received, stop))
            return
        while not self._window.acquire(timeout=0.2):
            self._raise_if_store_failed()
        self._awaiting.put(batch)
        self._store.send(received)

    def _confirm_answers(self, store: StoreProcess, stop: threading.Event) -> None:
        """The confirming thread: each answer of the store process, in order, for the batch
        that is oldest in flight. Ends at the None put by ``_drain``."""
        try:
            while (batch := self._awaiting.get()) is not None:
                self._finish(batch, store.receive(stop))
                self._window.release()
        except BaseException as err:
            log.error("confirming stopped: %s", err)
            self._store_failure = err
            stop.set()

    def _raise_if_store_failed(self) -> None:
        if self._store_failure is not None:
            raise self._store_failure

    def _drain(self) -> None:
        """Wait for every batch in flight to be answered (stored and confirmed, or given up
        because we are stopping)."""
        if self._confirmer is None:
            return
        self._awaiting.put(None)
        self._confirmer.join()
        self._confirmer = None
        self._raise_if_store_failed()

    def _finish(self, batch: list[Inbound], stored: Stored | None) -> None:
        if stored is None:
            self._release(len(batch))
            return  # unacked: the broker redelivers to our session after restart
        self.counters.add(stored.counts)
        self._confirm(batch, stored)

    def _confirm(self, batch: list[Inbound], stored: Stored) -> None:
        """Stage 5: receipts for committed alarms, then MQTT acks (current connection only)."""
        for device_id, seqs in stored.receipts.items():
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


def receive_maximum(settings: Settings) -> int:
    """The in-flight window the ingestor asks for: at least one batch, or batches never fill."""
    size = settings.ingestor_batch_size
    wanted = settings.ingestor_receive_maximum or 2 * size
    return min(65535, max(wanted, size, 100))
