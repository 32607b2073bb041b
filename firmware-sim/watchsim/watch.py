"""One watch's firmware as a pure state machine: no sockets, no clock, no threads.

Time comes in as epoch seconds and messages go out through ``take_uplinks()``, so every rule
that matters for safety (one strictly increasing seq, the offline buffer, alarms re-sent until
the backend receipts them, a silent SOS that never makes a sound) is tested without a broker;
``fleet.py`` only moves bytes. Every payload is built with the models of
``services.protocol``, the same ones the ingestor decodes with.
"""

from __future__ import annotations

import math
import random
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from services.protocol import (
    Ack,
    Alarm,
    AlarmMode,
    AlarmReceipt,
    AlarmType,
    Fix,
    Position,
    State,
    Status,
    UplinkKind,
)
from watchsim.alarms import AlarmKeeper, AlarmRecord, PendingAlarm
from watchsim.batches import pack_batches
from watchsim.commands import Answer, CommandDesk
from watchsim.walk import LatLon, Reading, WalkConfig, Walker, random_home, wrap_deg

# What a person next to the watch could notice. A silent SOS must add none of these.
SIREN, VIBRATE, SCREEN_HELP, BEEP = "siren", "vibrate", "screen:help-is-coming", "beep"


# Builds the wearer model from (home, its own rng, walk config, start time): ``Walker`` for an
# ordinary day, a ``functools.partial`` of a ``scenarios.py`` walker for a scripted one.
WalkerFactory = Callable[[LatLon, random.Random, WalkConfig, float], Walker]


def utc(t: float) -> datetime:
    return datetime.fromtimestamp(t, UTC)


@dataclass(frozen=True)
class Uplink:
    """A message for the watch's ``kind`` topic, plus what it carries (for the counters)."""

    kind: UplinkKind
    payload: bytes
    retain: bool = False
    fix_seqs: tuple[int, ...] = ()
    alarm_seqs: tuple[int, ...] = ()


@dataclass(frozen=True)
class WatchConfig:
    fix_interval_s: float = 5.0
    heartbeat_s: float = 60.0
    max_fixes: int | None = None  # produce exactly this many fixes, then only finish alarms
    buffer_max_fixes: int = 5000  # offline buffer; the oldest fixes are dropped first
    batch_max_items: int = 500
    # Below the ingestor's max_payload_bytes (64 KiB): 500 fixes are ~65 KB of JSON.
    batch_max_bytes: int = 60_000
    resend_first_s: float = 2.0
    resend_max_s: float = 30.0
    offline_every_s: float | None = None  # mean time between offline periods; None = never
    offline_for_s: tuple[float, float] = (30.0, 300.0)
    battery_start: tuple[float, float] = (55.0, 100.0)
    drain_per_hour: float = 3.0
    charge_per_hour: float = 30.0
    recharge_at_night: bool = True
    walk: WalkConfig = field(default_factory=WalkConfig)


class Watch:
    def __init__(
        self,
        device_id: str,
        *,
        now: float,
        rng: random.Random,
        config: WatchConfig | None = None,
        home: LatLon | None = None,
        first_seq: int = 0,
        walker: WalkerFactory = Walker,
    ) -> None:
        self.device_id = device_id
        self.cfg = config or WatchConfig()
        self._rng = rng
        self.home = home or random_home(rng)
        self.walker = walker(self.home, random.Random(rng.random()), self.cfg.walk, now)
        self._seq = first_seq
        self._t = now
        self.battery = rng.uniform(*self.cfg.battery_start)
        self.charging = False
        self.worn = True
        self.radio_up = True  # simulated network coverage
        self.link_up = False  # MQTT session, told by the fleet
        self.offline_until: float | None = None
        self.next_fix = now + rng.uniform(0.0, self.cfg.fix_interval_s)  # spread the fleet
        self.next_heartbeat = now
        self.fixes_made = 0
        self.fixes_dropped = 0
        self.buffer: deque[Fix] = deque()
        self.keeper = AlarmKeeper(self.cfg.resend_first_s, self.cfg.resend_max_s)
        self.ui_events: list[str] = []
        self.desk = CommandDesk()  # commands received, answered, and what they changed
        self._outbox: list[Uplink] = []
        self._last: Reading | None = None

    # --- state seen from outside -------------------------------------------------------

    @property
    def pending_alarms(self) -> dict[int, PendingAlarm]:
        """seq -> alarm not yet receipted by the backend."""
        return self.keeper.pending

    @property
    def alarms(self) -> dict[int, AlarmRecord]:
        """seq -> every alarm this watch raised."""
        return self.keeper.records

    @property
    def unknown_receipts(self) -> list[int]:
        return self.keeper.unknown_receipts

    @property
    def ignored_commands(self) -> list[str]:
        return self.desk.ignored

    @property
    def online(self) -> bool:
        return self.radio_up and self.link_up

    @property
    def producing(self) -> bool:
        """False once a ``max_fixes`` budget is spent: the watch then only finishes alarms."""
        return self.cfg.max_fixes is None or self.fixes_made < self.cfg.max_fixes

    @property
    def settled(self) -> bool:
        """Nothing left to deliver: no buffered fix, no unreceipted alarm."""
        return not self.buffer and not self.pending_alarms and not self._outbox

    def take_uplinks(self) -> list[Uplink]:
        out, self._outbox = self._outbox, []
        return out

    def state_payload(self, online: bool, now: float | None) -> bytes:
        """Retained online flag; with ``now=None`` for the will, which has no send time."""
        return (
            State(online=online, t=None if now is None else utc(now))
            .model_dump_json(exclude_none=True)
            .encode()
        )

    # --- time ---------------------------------------------------------------------------

    def tick(self, now: float) -> None:
        dt = max(0.0, now - self._t)
        self._t = max(self._t, now)
        self._battery(dt, now)
        self._toggle_radio(dt, now)
        # Catch up on due fixes (a late tick must not change the rate), but not for ages.
        if now - self.next_fix > 60.0:
            self.next_fix = now
        while self.producing and self.next_fix <= now:
            self._make_fix(self.next_fix)
            self.next_fix += self.cfg.fix_interval_s
        if self.online and self.producing and now >= self.next_heartbeat:
            self._heartbeat(now)
        if self.online:
            for p in self.keeper.due(now):
                self._send_alarm(p, now)

    def go_offline(self, now: float, until: float | None = None) -> None:
        """Lose the network (a lift, a basement, a dead cell) until ``until`` or ``go_online``."""
        self.radio_up = False
        self.offline_until = until

    def go_online(self, now: float) -> None:
        was = self.online
        self.radio_up, self.offline_until = True, None
        if self.online and not was:
            self._flush(now)

    def set_link(self, up: bool, now: float) -> None:
        """The MQTT session came up or went down (broker restart, network, our own disconnect)."""
        was = self.online
        self.link_up = up
        if self.online and not was:
            self._flush(now)

    # --- alarms -------------------------------------------------------------------------

    def press_sos(self, now: float, mode: AlarmMode = AlarmMode.AUDIBLE) -> int:
        return self._alarm(now, AlarmType.SOS, mode)

    def fall(self, now: float, mode: AlarmMode = AlarmMode.AUDIBLE) -> int:
        return self._alarm(now, AlarmType.FALL, mode)

    def removed(self, now: float) -> int:
        self.worn = False
        return self._alarm(now, AlarmType.REMOVED, AlarmMode.AUDIBLE)

    def put_on(self) -> None:
        self.worn = True

    def on_command(self, payload: bytes, now: float) -> None:
        """A message on the cmd topic: an alarm receipt, or a command to carry out and
        acknowledge (``commands.py`` decides; unknown and broken ones are refused)."""
        got = self.desk.receive(payload, now)
        if isinstance(got, AlarmReceipt):
            for alarm in self.keeper.receipt(got.seqs, now):
                if alarm.mode is AlarmMode.AUDIBLE and alarm.type is not AlarmType.REMOVED:
                    self.ui_events += [SCREEN_HELP, BEEP]
        elif got is not None:
            self._answer(got, now)

    # --- internals ----------------------------------------------------------------------

    def _next_seq(self) -> int:
        self._seq += 1
        return self._seq

    def _battery(self, dt: float, now: float) -> None:
        self.charging = (
            self.cfg.recharge_at_night and self.walker.at_home and self.walker.is_night(now)
        )
        rate = self.cfg.charge_per_hour if self.charging else -self.cfg.drain_per_hour
        self.battery = min(100.0, max(0.0, self.battery + rate * dt / 3600.0))

    def _battery_pct(self) -> int:
        return max(0, min(100, round(self.battery)))

    def _toggle_radio(self, dt: float, now: float) -> None:
        if not self.radio_up:
            if self.offline_until is not None and now >= self.offline_until:
                self.go_online(now)
            return
        mean = self.cfg.offline_every_s
        if mean and self.producing and dt > 0 and self._rng.random() < -math.expm1(-dt / mean):
            self.go_offline(now, now + self._rng.uniform(*self.cfg.offline_for_s))

    def _position(self, now: float) -> Reading:
        if self._last is None or self._last.t < now:
            self._last = self.walker.advance(now)
        return self._last

    def _make_fix(self, t: float) -> None:
        self.fixes_made += 1
        self._emit_fix(self._fix_at(t))

    def _fix_at(self, t: float) -> Fix:
        r = self._position(t)
        hdg = None if r.hdg is None else wrap_deg(round(r.hdg, 1))
        return Fix(
            seq=self._next_seq(),
            t=utc(t),
            lat=round(r.lat, 7),
            lon=round(r.lon, 7),
            acc=round(r.acc, 1),
            src=r.src,
            spd=None if r.spd is None else round(r.spd, 2),
            hdg=hdg,
            bat=self._battery_pct(),
        )

    def _emit_fix(self, fix: Fix) -> None:
        if self.online:
            self._outbox.append(Uplink(UplinkKind.LOC, _json(fix), fix_seqs=(fix.seq,)))
            return
        if len(self.buffer) >= self.cfg.buffer_max_fixes:
            self.buffer.popleft()
            self.fixes_dropped += 1
        self.buffer.append(fix)

    def _answer(self, a: Answer, now: float) -> None:
        """Carry out a command (the first time it arrives) and acknowledge it. A locate's
        fresh fix is not one of the ``max_fixes`` budget: it is asked for, not scheduled."""
        if not a.repeat:
            if a.send_fix:
                self._emit_fix(self._fix_at(now))
            self.ui_events += a.ui
        ack = Ack(seq=self._next_seq(), t=utc(now), cmd=a.command_id, ok=a.ok, detail=a.detail)
        self._outbox.append(Uplink(UplinkKind.ACK, _json(ack)))

    def _heartbeat(self, now: float) -> None:
        status = Status(
            seq=self._next_seq(),
            t=utc(now),
            bat=self._battery_pct(),
            charging=self.charging,
            worn=self.worn,
        )
        self._outbox.append(Uplink(UplinkKind.STATUS, _json(status)))
        self.next_heartbeat = now + self.cfg.heartbeat_s

    def _alarm(self, now: float, kind: AlarmType, mode: AlarmMode) -> int:
        r = self._position(now)
        where = Position(
            t=utc(r.t), lat=round(r.lat, 7), lon=round(r.lon, 7), acc=round(r.acc, 1), src=r.src
        )
        alarm = Alarm(
            seq=self._next_seq(),
            t=utc(now),
            type=kind,
            mode=mode,
            fix=where.model_dump(mode="json", exclude_none=True),
        )
        pending = self.keeper.add(alarm, now)
        if mode is AlarmMode.AUDIBLE:
            if kind is AlarmType.SOS:
                self.ui_events.append(SIREN)
            elif kind is AlarmType.FALL:
                self.ui_events.append(VIBRATE)
        if self.online:
            self._send_alarm(pending, now)
        return alarm.seq

    def _send_alarm(self, p: PendingAlarm, now: float) -> None:
        self._outbox.append(Uplink(UplinkKind.ALARM, p.payload, alarm_seqs=(p.seq,)))
        self.keeper.mark_sent(p, now)

    def _flush(self, now: float) -> None:
        """Back online: every pending alarm, then the buffered fixes, as bounded batches."""
        pending = self.keeper.in_order()
        by_seq = {p.seq: p for p in pending}
        packed = pack_batches(
            [p.alarm for p in pending],
            list(self.buffer),
            self.cfg.batch_max_items,
            self.cfg.batch_max_bytes,
        )
        self.buffer.clear()
        for b in packed:
            self._outbox.append(
                Uplink(UplinkKind.BATCH, b.payload, False, b.fix_seqs, b.alarm_seqs)
            )
            for seq in b.alarm_seqs:
                self.keeper.mark_sent(by_seq[seq], now)


def _json(model: Fix | Status | Ack) -> bytes:
    return model.model_dump_json(exclude_none=True).encode()
