"""The fleet: N watches driven by one scheduler loop, each with its own MQTT ``Link``.

Each watch is a real MQTT 5 client (see ``link.py``), because the backend's online/offline
logic and per-device ACLs need exactly that. Their logic is not threaded, though: paho's
network threads (one per watch, fine up to a few hundred) only enqueue events, and this loop,
in the caller's thread, ticks every ``Watch``, handles those events and publishes. One owner
for all state, no locks.

Watches live in device time (``clock.py``): the real clock by default, or one that starts in
the past and runs fast (``--clock-start-ago``/``--clock-speed``) but never gets ahead of it.

Delivery is tracked by message id: a PUBACK (``on_publish``) removes the message from
``inflight``. ``MQTTMessageInfo.is_published()`` is not used: it raises for a message queued
while disconnected, which paho still delivers after the reconnect.
"""

from __future__ import annotations

import functools
import math
import queue
import random
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as mqtt

from services.protocol import AlarmMode, AlarmType, Topics, UplinkKind
from watchsim.clock import SimClock
from watchsim.link import WITH_WILL, Event, Link
from watchsim.plan import FleetConfig, PlannedPress
from watchsim.report import progress_line, summary, unreceipted_alarms
from watchsim.scenarios import WANDER_ACC_M, WANDER_SPEED_MPS, StayingWalker, WanderingWalker
from watchsim.walk import LatLon, WalkConfig, Walker
from watchsim.watch import Uplink, WalkerFactory, Watch, WatchConfig


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


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
        self._events: queue.SimpleQueue[Event] = queue.SimpleQueue()
        self._stop = threading.Event()
        self._last_warning = -math.inf
        self.started_at = time.time()  # real time; device time is self.clock
        self.clock = SimClock(config.clock_speed, config.clock_start_ago_s)
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
            walk=WalkConfig(utc_offset_h=config.utc_offset_h, radius_m=config.walk_radius()),
        )
        homes: Callable[[str], tuple[float, float]] | None = None
        if config.demo_homes:
            from geofences.demo import demo_home

            homes = demo_home
        self.scenarios: dict[str, dict[str, Any]] = {}
        self.links: list[Link] = []
        for i, did in enumerate(config.device_ids()):
            rng = random.Random(f"{self.seed}/{did}")  # a device's day does not depend on N
            home = None
            if homes is not None:  # the demo wearers are "wearer-" + device id
                home = LatLon(*homes(f"wearer-{did}"))
            walker, self.scenarios[did] = self._scenario(config.first_index + i, did)
            watch = Watch(
                did,
                now=self.clock.start,
                rng=rng,
                config=wcfg,
                home=home,
                first_seq=self.seq_base,
                walker=walker,
            )
            self.links.append(
                Link(
                    i,
                    watch,
                    config.broker_for(did),
                    self.topics,
                    self._events,
                    keepalive_s=config.keepalive_s,
                    session_expiry_s=config.session_expiry_s,
                )
            )

    # --- public -------------------------------------------------------------------------

    def request_stop(self) -> None:
        self._stop.set()

    def run(self) -> int:
        self.log(
            f"[watchsim] {len(self.links)} watches -> {self.cfg.broker.redacted()} "
            f"prefix={self.cfg.topic_prefix} rate={self.cfg.rate}/s seed={self.seed}"
            + (" (each logs in as its device id)" if self.cfg.credentials is not None else "")
        )
        c = self.clock
        if not c.is_real_time:
            catch_up = c.catch_up_after_s()
            self.log(
                f"[watchsim] device clock starts {c.start_ago_s:g}s ago at {c.speed:g}x, "
                + ("never catches up" if catch_up is None else f"catches up after {catch_up:.0f}s")
            )
        for link in self.links:
            link.connect()
        try:
            code = self._loop()
        finally:
            self._shutdown()
        self.exit_code, self.ended_at = code, time.time()
        return code

    def summary(self) -> dict[str, Any]:
        return summary(self)

    def _scenario(self, index: int, did: str) -> tuple[WalkerFactory, dict[str, Any]]:
        """The wearer model of device number ``index`` and how the summary describes it."""
        cfg = self.cfg
        for w in cfg.wanders:
            if w.device_index == index:
                bearing = w.bearing_deg
                if bearing is None:
                    bearing = random.Random(f"{self.seed}/{did}/wander").uniform(0.0, 360.0)
                factory = functools.partial(
                    WanderingWalker, wander_t=self.clock.start + w.at_s, bearing_deg=bearing
                )
                return factory, {
                    "kind": "wander",
                    "at_s": w.at_s,
                    "bearing_deg": round(bearing, 1),
                    "bearing_random": w.bearing_deg is None,
                    "speed_mps": WANDER_SPEED_MPS,
                    "acc_m": list(WANDER_ACC_M),
                }
        for s in cfg.stays:
            if s.device_index == index:
                point = LatLon(s.lat, s.lon)
                factory = functools.partial(StayingWalker, point=point, acc_m=s.acc_m)
                return factory, {
                    "kind": "stay",
                    "lat": s.lat,
                    "lon": s.lon,
                    "acc_m": s.acc_m,
                    "src": "wifi",
                }
        return Walker, {"kind": "day", "walk_radius_m": cfg.walk_radius()}

    # --- the scheduler ------------------------------------------------------------------

    def _loop(self) -> int:
        cfg = self.cfg
        t0 = time.monotonic()
        next_tick, next_progress = t0, t0 + cfg.progress_every_s
        presses = sorted(cfg.presses, key=lambda p: p.at_s)
        last_now = self.clock.now()
        drain_deadline: float | None = None
        while True:
            self._pump(max(0.0, next_tick - time.monotonic()))
            mono, now = time.monotonic(), self.clock.now()
            if self._stop.is_set() or (cfg.duration_s is not None and mono - t0 >= cfg.duration_s):
                self.log(progress_line(self, mono - t0) + " -- stopping")
                if cfg.fixes is None or all(link.drained for link in self.links):
                    return 0
                self._report_undrained()
                return 1
            if mono < next_tick:
                continue
            # About a fix per tick, in device time: a fast clock ticks more often.
            next_tick = mono + min(0.25, max(0.02, 0.25 / (cfg.rate * self.clock.rate())))
            while presses and presses[0].at_s <= now - self.clock.start:  # device seconds
                self._press(presses.pop(0), now)
            self._random_sos(now - last_now, now)
            last_now = now
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
        link, now = self.links[idx], self.clock.now()
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
            self._warn(
                f"[watchsim] {w.device_id} cannot connect to {link.broker.redacted()}: {data}"
            )
        elif kind == "cmd":
            w.on_command(data, now)
        elif kind == "puback":
            link.puback(*data)
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
            link.client.disconnect(reasoncode=WITH_WILL)
            link.connected = False
            link.watch.set_link(False, now)
        else:
            link.connect()

    def _publish(self, link: Link) -> None:
        for up in link.watch.take_uplinks():
            self._send(link, up)

    def _send(self, link: Link, up: Uplink) -> None:
        rc = link.publish(up)
        if rc != mqtt.MQTT_ERR_SUCCESS:
            self._warn(f"[watchsim] {link.device_id}: publish failed: {mqtt.error_string(rc)}")

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
        self._stop.set()  # late "connected" events must not start anything now
        now = self.clock.now()
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
