"""The downlink outbox: queued commands → the watches' ``cmd`` topics, and their expiry.

Runs as a thread of the notifier (``start_dispatcher``), any number of replicas:
    1. expire   pending/sent commands past ``expires_at`` → expired
    2. send     claim pending commands (FOR UPDATE SKIP LOCKED: two replicas never send the
                same one), publish each QoS 1, and mark it sent once the broker has it
                (PUBACK). An offline watch gets it from its persistent session when it is back,
                unless it has expired: the publish carries an MQTT 5 message expiry, so the
                broker drops a stale command too.
    3. wait     for NOTIFY anxin_commands, or POLL_S at most
The watch's ack moves a command on to acknowledged or failed (services/ingestor/store.py).
A replica that dies between the publish and the commit leaves the row pending, so it is sent
again: harmless, the watch answers by id and does a command once.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import paho.mqtt.client as mqtt
import psycopg
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from pydantic import ValidationError

from services.commands.queue import COMMANDS_CHANNEL
from services.commands.rules import message_expiry_s, wire_payload
from services.mqtt_url import parse_mqtt_url
from services.protocol import Topics
from services.settings import Settings

log = logging.getLogger("anxin.commands")

POLL_S = 1.0
CLAIM_LIMIT = 100
PUBACK_TIMEOUT_S = 5.0
NO_SESSION = 0x10  # PUBACK "No matching subscribers": the watch has no session at the broker

EXPIRE = """
UPDATE commands SET status = 'expired',
    detail = COALESCE(detail, 'no acknowledgement from the watch before it expired')
WHERE status IN ('pending', 'sent') AND expires_at <= now()
"""
CLAIM = """
SELECT command_id, device_id, kind, payload, expires_at FROM commands
WHERE status = 'pending' AND expires_at > now()
ORDER BY created_at LIMIT %s FOR UPDATE SKIP LOCKED
"""
# Only from pending: the watch's ack may already have moved it on (it can beat this commit).
MARK_SENT = (
    "UPDATE commands SET status = 'sent', sent_at = now(), detail = %s"
    " WHERE command_id = %s AND status = 'pending'"
)
MARK_EXPIRED = (
    "UPDATE commands SET status = 'expired', detail = 'under a second left: not sent'"
    " WHERE command_id = %s AND status = 'pending'"
)
MARK_FAILED = (
    "UPDATE commands SET status = 'failed', detail = %s"
    " WHERE command_id = %s AND status = 'pending'"
)


@dataclass
class DispatchCounters:
    sent: int = 0
    unsendable: int = 0
    expired: int = 0


class CommandDispatcher:
    def __init__(self, settings: Settings) -> None:
        if not settings.database_url or not settings.mqtt_url:
            raise ValueError("the command dispatcher needs ANXIN_DATABASE_URL and ANXIN_MQTT_URL")
        self.database_url = settings.database_url
        self.broker = parse_mqtt_url(settings.mqtt_url)
        self.topics = Topics(settings.topic_prefix)
        self.counters = DispatchCounters()
        self._connected = threading.Event()
        self._reasons: dict[int, ReasonCode] = {}  # mid -> PUBACK reason (paho's thread writes)
        self.client = self._make_client()

    def run(self, stop: threading.Event) -> None:
        self.client.connect_async(self.broker.host, self.broker.port, keepalive=30)
        self.client.loop_start()
        delay = 0.5
        try:
            while not stop.is_set():
                try:
                    with (
                        psycopg.connect(self.database_url, autocommit=True) as conn,
                        psycopg.connect(self.database_url, autocommit=True) as listener,
                    ):
                        listener.execute(f"LISTEN {COMMANDS_CHANNEL}")
                        delay = 0.5
                        while not stop.is_set():
                            self.expire(conn)
                            if self.send_pending(conn) >= CLAIM_LIMIT:
                                continue  # more is waiting
                            for _ in listener.notifies(timeout=POLL_S, stop_after=1):
                                pass
                except psycopg.OperationalError as err:
                    log.warning("database unavailable (%s); retrying in %.1f s", err, delay)
                    stop.wait(delay)
                    delay = min(delay * 2, 10.0)
        finally:
            self.client.disconnect()
            self.client.loop_stop()
            log.info("command dispatcher stopped: %s", self.counters)

    def expire(self, conn: psycopg.Connection) -> int:
        n = conn.execute(EXPIRE).rowcount
        self.counters.expired += n
        return n

    def send_pending(self, conn: psycopg.Connection) -> int:
        """Publish the oldest pending commands; returns how many were claimed. Without a
        broker connection nothing is claimed: the commands wait, pending."""
        if not self._connected.is_set():
            return 0
        with conn.transaction():
            rows = conn.execute(CLAIM, (CLAIM_LIMIT,)).fetchall()
            now = datetime.now(UTC)
            published: list[tuple[str, mqtt.MQTTMessageInfo]] = []
            for command_id, device_id, kind, payload, expires_at in rows:
                try:
                    body = wire_payload(kind, command_id, payload, expires_at)
                except ValidationError as err:
                    reason = f"cannot be sent: {err.errors()[0]['msg']}"
                    conn.execute(MARK_FAILED, (reason, command_id))
                    self.counters.unsendable += 1
                    continue
                expiry_s = message_expiry_s(expires_at, now)
                if expiry_s is None:
                    conn.execute(MARK_EXPIRED, (command_id,))
                    self.counters.expired += 1
                    continue
                props = Properties(PacketTypes.PUBLISH)
                props.MessageExpiryInterval = expiry_s
                info = self.client.publish(
                    self.topics.command(device_id), body, qos=1, properties=props
                )
                if info.rc != mqtt.MQTT_ERR_SUCCESS:
                    break  # connection lost: the rest stays pending
                published.append((command_id, info))
            deadline = time.monotonic() + PUBACK_TIMEOUT_S
            for command_id, info in published:
                info.wait_for_publish(max(0.01, deadline - time.monotonic()))
                if not info.is_published():
                    continue  # no PUBACK in time: stays pending, sent again
                reason = self._reasons.pop(info.mid, None)
                if reason is not None and reason.is_failure:
                    conn.execute(MARK_FAILED, (f"the broker refused it: {reason}", command_id))
                    self.counters.unsendable += 1
                    continue
                note = None
                if reason is not None and reason.value == NO_SESSION:
                    note = (
                        "the broker holds no session for this watch (it has never connected,"
                        " or was away longer than its session expiry): it cannot arrive"
                    )
                conn.execute(MARK_SENT, (note, command_id))
                self.counters.sent += 1
        return len(rows)

    # --- paho ---------------------------------------------------------------------------

    def _make_client(self) -> mqtt.Client:
        c = self.broker.client(f"anxin-commands-{uuid.uuid4().hex[:8]}")
        c.reconnect_delay_set(min_delay=1, max_delay=10)
        c.on_connect = self._on_connect
        c.on_disconnect = self._on_disconnect
        c.on_publish = self._on_publish
        return c

    def _on_connect(self, c: mqtt.Client, u: Any, flags: Any, rc: ReasonCode, p: Any) -> None:
        if rc.is_failure:
            log.warning("broker %s refused the dispatcher: %s", self.broker.redacted(), rc)
            return
        self._connected.set()
        log.info("command dispatcher connected to %s", self.broker.redacted())

    def _on_disconnect(self, c: mqtt.Client, u: Any, f: Any, rc: ReasonCode, p: Any) -> None:
        self._connected.clear()
        log.warning("command dispatcher lost the broker (%s); reconnecting", rc)

    def _on_publish(self, c: mqtt.Client, u: Any, mid: int, rc: ReasonCode, p: Any) -> None:
        self._reasons[mid] = rc


def start_dispatcher(settings: Settings, stop: threading.Event) -> threading.Thread | None:
    """The dispatcher in a thread of its own; None (and a log line) without a broker."""
    if not settings.mqtt_url:
        log.info("no ANXIN_MQTT_URL: commands to watches are not sent by this notifier")
        return None
    dispatcher = CommandDispatcher(settings)
    thread = threading.Thread(target=dispatcher.run, args=(stop,), name="commands", daemon=True)
    thread.start()
    return thread
