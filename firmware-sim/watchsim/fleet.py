"""The MQTT edge: N watches, each with its own paho client, driven by one scheduler loop.

Each watch is a real MQTT 5 client (its own client id, persistent session, will message),
because the backend's online/offline logic and per-device ACLs need exactly that. The watches'
logic is not threaded, though: paho's network threads only put events on one queue, and a
single loop (the caller's thread) ticks every ``Watch``, handles those events and publishes.
So all state has one owner and no locks; note that paho calls ``on_publish`` while holding its
own mutex, which is one more reason not to take locks of ours in callbacks.

Delivery is tracked by message id: a PUBACK (``on_publish``) removes the message from
``inflight``. ``MQTTMessageInfo.is_published()`` is not used: it raises for a message queued
while disconnected, which paho still delivers after the reconnect.
"""

from __future__ import annotations

import math
import queue
import random
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from services.protocol import AlarmMode, AlarmType, Topics, UplinkKind
from watchsim.plan import FleetConfig, PlannedPress
from watchsim.report import progress_line, summary, unreceipted_alarms
from watchsim.walk import WalkConfig
from watchsim.watch import Uplink, Watch, WatchConfig

# MQTT 5 DISCONNECT reason 0x04 "Disconnect with Will Message": a watch that loses its network
# looks offline to the backend at once, as if the broker had noticed the dead connection.
_WITH_WILL = ReasonCode(PacketTypes.DISCONNECT, identifier=4)


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


class Link:
    """One watch, its paho client and what happened to its messages."""

    def __init__(self, index: int, watch: Watch, client: mqtt.Client) -> None:
        self.index = index
        self.watch = watch
        self.client = client
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

    @property
    def device_id(self) -> str:
        return self.watch.device_id

    @property
    def drained(self) -> bool:
        w = self.watch
        return self.connects > 0 and not w.producing and w.settled and not self.inflight


class Fleet:
    """Run with ``Fleet(config).run()`` (blocks; returns the exit code). ``request_stop()``
    from any thread or a signal handler ends it cleanly; ``summary()`` reports afterwards."""

    def __init__(self, config: FleetConfig, *, log: Callable[[str], None] = _stderr) -> None:
        config.validate()
        self.cfg = config
        self.log = log
        self.seed = (
            config.seed if config.seed is not None else random.SystemRandom().randrange(2**31)
        )
        self.topics = Topics(config.topic_prefix)
        self._rng = random.Random(self.seed)
        self._events: queue.SimpleQueue[tuple[str, int, Any]] = queue.SimpleQueue()
        self._stop = threading.Event()
        self._last_warning = -math.inf
        self.started_at = time.time()
        self.ended_at: float | None = None
        self.exit_code: int | None = None
        # Seqs must grow across restarts too: the ingestor drops a (device, seq) it has seen.
        # Epoch milliseconds stay ahead of any earlier run below 1000 messages/s per watch.
        self.seq_base = (
            config.seq_base if config.seq_base is not None else int(self.started_at * 1000)
        )
        wcfg = WatchConfig(
            fix_interval_s=1.0 / config.rate,
            heartbeat_s=config.heartbeat_s,
            max_fixes=config.fixes,
            batch_max_bytes=min(60_000, config.max_payload_bytes - 2048),
            offline_every_s=config.offline_every_s or None,
            offline_for_s=config.offline_for_s,
            walk=WalkConfig(utc_offset_h=config.utc_offset_h),
        )
        self.links: list[Link] = []
        for i, did in enumerate(config.device_ids()):
            rng = random.Random(f"{self.seed}/{did}")  # a device's day does not depend on N
            watch = Watch(did, now=self.started_at, rng=rng, config=wcfg, first_seq=self.seq_base)
            self.links.append(Link(i, watch, self._client(i, watch)))

    # --- public -------------------------------------------------------------------------

    def request_stop(self) -> None:
        self._stop.set()

    def run(self) -> int:
        self.log(
            f"[watchsim] {len(self.links)} watches -> {self.cfg.broker} "
            f"prefix={self.cfg.topic_prefix} rate={self.cfg.rate}/s seed={self.seed}"
        )
        for link in self.links:
            self._connect(link)
        try:
            code = self._loop()
        finally:
            self._shutdown()
        self.exit_code, self.ended_at = code, time.time()
        return code

    def summary(self) -> dict[str, Any]:
        return summary(self)

    # --- paho side (network threads: only enqueue) ----------------------------------------

    def _client(self, index: int, watch: Watch) -> mqtt.Client:
        c = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=f"watch-{watch.device_id}",
            protocol=mqtt.MQTTv5,
            userdata=index,
        )
        b = self.cfg.broker
        if b.username:
            c.username_pw_set(b.username, b.password)
        if b.tls:
            c.tls_set()
        c.reconnect_delay_set(min_delay=1, max_delay=30)
        c.will_set(
            self.topics.uplink(watch.device_id, UplinkKind.STATE),
            watch.state_payload(False, None),
            qos=1,
            retain=True,
        )
        c.on_connect = self._on_connect
        c.on_connect_fail = self._on_connect_fail
        c.on_disconnect = self._on_disconnect
        c.on_message = self._on_message
        c.on_publish = self._on_publish
        return c

    def _on_connect(self, client: mqtt.Client, idx: int, flags: Any, rc: Any, props: Any) -> None:
        self._events.put(("connect_refused" if rc.is_failure else "connected", idx, str(rc)))

    def _on_connect_fail(self, client: mqtt.Client, idx: int) -> None:
        self._events.put(("connect_refused", idx, "no connection"))

    def _on_disconnect(self, client: mqtt.Client, idx: int, f: Any, rc: Any, p: Any) -> None:
        self._events.put(("disconnected", idx, str(rc)))

    def _on_message(self, client: mqtt.Client, idx: int, msg: mqtt.MQTTMessage) -> None:
        self._events.put(("cmd", idx, msg.payload))

    def _on_publish(self, client: mqtt.Client, idx: int, mid: int, rc: Any, p: Any) -> None:
        self._events.put(("puback", idx, (mid, rc.is_failure)))

    # --- the scheduler ------------------------------------------------------------------

    def _connect(self, link: Link) -> None:
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = self.cfg.session_expiry_s
        b = self.cfg.broker
        link.client.connect_async(
            b.host, b.port, keepalive=self.cfg.keepalive_s, clean_start=False, properties=props
        )
        link.client.loop_start()

    def _loop(self) -> int:
        cfg = self.cfg
        t0 = time.monotonic()
        tick_s = min(0.25, max(0.02, 0.25 / cfg.rate))
        next_tick, next_progress = t0, t0 + cfg.progress_every_s
        presses = sorted(cfg.presses, key=lambda p: p.at_s)
        last_wall = time.time()
        drain_deadline: float | None = None
        while True:
            self._pump(max(0.0, next_tick - time.monotonic()))
            mono, now = time.monotonic(), time.time()
            if self._stop.is_set() or (cfg.duration_s is not None and mono - t0 >= cfg.duration_s):
                if cfg.fixes is None or all(link.drained for link in self.links):
                    return 0
                self._report_undrained()
                return 1
            if mono < next_tick:
                continue
            next_tick = mono + tick_s
            while presses and presses[0].at_s <= mono - t0:
                self._press(presses.pop(0), now)
            self._random_sos(now - last_wall, now)
            last_wall = now
            for link in self.links:
                link.watch.tick(now)
                self._follow_radio(link, now)
                self._publish(link)
            if mono >= next_progress:
                self.log(progress_line(self, mono - t0))
                next_progress = mono + cfg.progress_every_s
            if cfg.fixes is None or presses or any(lk.watch.producing for lk in self.links):
                continue
            if all(link.drained for link in self.links):
                self.log(progress_line(self, mono - t0) + " -- all delivered")
                return 0
            drain_deadline = drain_deadline or mono + cfg.drain_timeout_s
            if mono >= drain_deadline:
                self.log(f"[watchsim] drain timeout after {cfg.drain_timeout_s:g}s")
                self._report_undrained()
                return 1

    def _pump(self, timeout: float) -> None:
        """Handle queued paho events, waiting up to ``timeout`` for the first one."""
        try:
            ev = self._events.get(timeout=timeout) if timeout > 0 else self._events.get_nowait()
        except queue.Empty:
            return
        for _ in range(100_000):
            self._handle(*ev)
            try:
                ev = self._events.get_nowait()
            except queue.Empty:
                return

    def _handle(self, kind: str, idx: int, data: Any) -> None:
        link, now = self.links[idx], time.time()
        w = link.watch
        if kind == "connected" and w.radio_up and not self._stop.is_set():
            link.connected = True
            link.connects += 1
            link.client.subscribe(self.topics.command(w.device_id), qos=1)
            state = Uplink(UplinkKind.STATE, w.state_payload(True, now), retain=True)
            self._send(link, state)
            w.set_link(True, now)  # flushes the offline buffer and pending alarms
        elif kind == "disconnected":
            link.connected = False
            w.set_link(False, now)
            if w.radio_up and not self._stop.is_set():
                self._warn(f"[watchsim] {w.device_id} lost the broker ({data}); reconnecting")
        elif kind == "connect_refused":
            self._warn(f"[watchsim] {w.device_id} cannot connect to {self.cfg.broker}: {data}")
        elif kind == "cmd":
            w.on_command(data, now)
        elif kind == "puback":
            mid, failed = data
            up = link.inflight.pop(mid, None)
            if up is not None and failed:
                link.refused += 1
            elif up is not None:
                link.fixes_acked += len(up.fix_seqs)
        self._publish(link)

    def _warn(self, line: str) -> None:
        """At most one warning a second: a broker restart would otherwise print N lines."""
        if time.monotonic() - self._last_warning >= 1.0:
            self._last_warning = time.monotonic()
            self.log(line)

    def _follow_radio(self, link: Link, now: float) -> None:
        """Mirror the watch's simulated network on its MQTT connection."""
        up = link.watch.radio_up
        if up == link.radio_was_up:
            return
        link.radio_was_up = up
        if not up:
            link.client.disconnect(reasoncode=_WITH_WILL)
            link.connected = False
            link.watch.set_link(False, now)
        else:
            link.client.loop_stop()  # joins the thread that ended with the disconnect
            self._connect(link)

    def _publish(self, link: Link) -> None:
        for up in link.watch.take_uplinks():
            self._send(link, up)

    def _send(self, link: Link, up: Uplink) -> None:
        topic = self.topics.uplink(link.device_id, up.kind)
        info = link.client.publish(topic, up.payload, qos=1, retain=up.retain)
        # NO_CONN: paho keeps a QoS 1 message and sends it after the reconnect.
        if info.rc not in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_NO_CONN):
            self._warn(f"[watchsim] {link.device_id}: publish failed: {mqtt.error_string(info.rc)}")
            return
        link.inflight[info.mid] = up
        link.fix_seqs.extend(up.fix_seqs)
        if up.kind is UplinkKind.BATCH:
            link.batches_sent += 1
        elif up.kind is UplinkKind.ALARM:
            link.alarm_sends += 1
        elif up.kind is UplinkKind.STATUS:
            link.heartbeats += 1

    def _press(self, press: PlannedPress, now: float) -> None:
        w = self.links[press.device_index - self.cfg.first_index].watch
        if press.kind is AlarmType.SOS:
            seq = w.press_sos(now, press.mode)
        elif press.kind is AlarmType.FALL:
            seq = w.fall(now, press.mode)
        else:
            seq = w.removed(now)
        self.log(f"[watchsim] {w.device_id} {press.kind.value}/{press.mode.value} seq={seq}")

    def _random_sos(self, dt: float, now: float) -> None:
        mean = self.cfg.sos_every_s
        if not mean or dt <= 0 or self._rng.random() >= -math.expm1(-dt / mean):
            return
        candidates = [lk for lk in self.links if lk.watch.producing]
        if candidates:
            w = self._rng.choice(candidates).watch
            mode = AlarmMode.SILENT if self._rng.random() < 0.3 else AlarmMode.AUDIBLE
            seq = w.press_sos(now, mode)
            self.log(f"[watchsim] {w.device_id} sos/{mode.value} seq={seq} (random)")

    def _report_undrained(self) -> None:
        for a in unreceipted_alarms(self):
            self.log(
                f"[watchsim] NOT RECEIPTED: {a['device_id']} seq={a['seq']} "
                f"{a['type']}/{a['mode']} sent {a['sends']}x"
            )
        unacked = sum(len(lk.inflight) for lk in self.links)
        buffered = sum(len(lk.watch.buffer) for lk in self.links)
        if unacked or buffered:
            self.log(f"[watchsim] {unacked} publishes unacknowledged, {buffered} fixes buffered")

    def _shutdown(self) -> None:
        """Ctrl-C is not a dead battery: say offline ourselves, then disconnect normally."""
        now = time.time()
        for link in self.links:
            if link.connected:
                w = link.watch
                self._send(link, Uplink(UplinkKind.STATE, w.state_payload(False, now), retain=True))
        deadline = time.monotonic() + 3.0
        while time.monotonic() < deadline and any(lk.inflight for lk in self.links if lk.connected):
            self._pump(0.05)
        for link in self.links:
            link.client.disconnect()
        for link in self.links:
            link.client.loop_stop()
