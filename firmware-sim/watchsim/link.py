"""One watch's MQTT connection: a paho client set up the way a real watch would use it.

MQTT 5, a stable client id, a persistent session (``clean_start=False`` plus a session expiry)
so that receipts published while the watch was away are delivered when it is back, and a
retained will ``State(online=False)`` so that the backend sees a dead watch go offline.

paho runs this client's network thread; its callbacks only put events on the fleet's queue,
never touch the ``Watch``. The fleet's single loop owns all state, so no locks are needed
(and none could be taken in ``on_publish`` anyway: paho calls it holding its own mutex).
"""

from __future__ import annotations

import queue
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from services.mqtt_url import MqttTarget
from services.protocol import Topics, UplinkKind
from watchsim.watch import Uplink, Watch

Event = tuple[str, int, Any]  # (kind, link index, data)

# MQTT 5 DISCONNECT reason 0x04 "Disconnect with Will Message": a watch that loses its network
# looks offline to the backend at once, as if the broker had noticed the dead connection.
WITH_WILL = ReasonCode(PacketTypes.DISCONNECT, identifier=4)


class Link:
    """A watch, its paho client and what happened to its messages."""

    def __init__(
        self,
        index: int,
        watch: Watch,
        broker: MqttTarget,
        topics: Topics,
        events: queue.SimpleQueue[Event],
        *,
        keepalive_s: int = 30,
        session_expiry_s: int = 24 * 3600,
    ) -> None:
        self.index = index
        self.watch = watch
        self.broker = broker
        self.topics = topics
        self.keepalive_s = keepalive_s
        self.session_expiry_s = session_expiry_s
        self._events = events
        self.connected = False
        self.connects = 0
        self.radio_was_up = True
        self.inflight: dict[int, Uplink] = {}  # mid -> message, until its PUBACK
        self.fix_seqs: list[int] = []  # fixes handed to the broker (loc or in a batch)
        self.fixes_acked = 0
        self.batches_sent = 0
        self.alarm_sends = 0
        self.heartbeats = 0
        self.refused = 0  # PUBACKs with a failure reason code
        self.client = self._make_client()

    @property
    def device_id(self) -> str:
        return self.watch.device_id

    @property
    def drained(self) -> bool:
        """Connected once, done producing, nothing buffered, pending or unacknowledged."""
        w = self.watch
        return self.connects > 0 and not w.producing and w.settled and not self.inflight

    def connect(self) -> None:
        """Start (or restart after ``disconnect``) the network thread; paho retries forever."""
        self.client.loop_stop()  # joins a thread that ended with an earlier disconnect
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = self.session_expiry_s
        self.client.connect_async(
            self.broker.host,
            self.broker.port,
            keepalive=self.keepalive_s,
            clean_start=False,
            properties=props,
        )
        self.client.loop_start()

    def publish(self, up: Uplink) -> int:
        """Hand a message to paho, QoS 1. Returns paho's rc; NO_CONN still means queued:
        paho keeps a QoS 1 message and sends it after the reconnect."""
        topic = self.topics.uplink(self.device_id, up.kind)
        info = self.client.publish(topic, up.payload, qos=1, retain=up.retain)
        if info.rc not in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_NO_CONN):
            return info.rc
        self.inflight[info.mid] = up
        self.fix_seqs.extend(up.fix_seqs)
        if up.kind is UplinkKind.BATCH:
            self.batches_sent += 1
        elif up.kind is UplinkKind.ALARM:
            self.alarm_sends += 1
        elif up.kind is UplinkKind.STATUS:
            self.heartbeats += 1
        return mqtt.MQTT_ERR_SUCCESS

    def puback(self, mid: int, failed: bool) -> None:
        up = self.inflight.pop(mid, None)
        if up is not None and failed:
            self.refused += 1
        elif up is not None:
            self.fixes_acked += len(up.fix_seqs)

    # --- paho ---------------------------------------------------------------------------

    def _make_client(self) -> mqtt.Client:
        c = self.broker.client(f"watch-{self.device_id}")
        c.reconnect_delay_set(min_delay=1, max_delay=30)
        c.will_set(
            self.topics.uplink(self.device_id, UplinkKind.STATE),
            self.watch.state_payload(False, None),
            qos=1,
            retain=True,
        )
        c.on_connect = self._on_connect
        c.on_connect_fail = self._on_connect_fail
        c.on_disconnect = self._on_disconnect
        c.on_message = self._on_message
        c.on_publish = self._on_publish
        return c

    def _put(self, kind: str, data: Any) -> None:
        self._events.put((kind, self.index, data))

    def _on_connect(self, c: mqtt.Client, u: Any, flags: Any, rc: ReasonCode, p: Any) -> None:
        self._put("connect_refused" if rc.is_failure else "connected", str(rc))

    def _on_connect_fail(self, c: mqtt.Client, u: Any) -> None:
        self._put("connect_refused", "no connection")

    def _on_disconnect(self, c: mqtt.Client, u: Any, f: Any, rc: ReasonCode, p: Any) -> None:
        self._put("disconnected", str(rc))

    def _on_message(self, c: mqtt.Client, u: Any, msg: mqtt.MQTTMessage) -> None:
        # Only what arrives on this watch's own command topic is a command to it. A session
        # can still hold messages queued under an older subscription (another topic prefix):
        # those are not for this watch as it is configured now.
        if msg.topic != self.topics.command(self.device_id):
            return
        self._put("cmd", msg.payload)

    def _on_publish(self, c: mqtt.Client, u: Any, mid: int, rc: ReasonCode, p: Any) -> None:
        self._put("puback", (mid, rc.is_failure))
