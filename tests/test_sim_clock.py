"""The simulator's clock: device time that starts in the past, runs fast, and never gets ahead
of the real clock (the backend refuses device times more than 5 minutes ahead of its own)."""

from __future__ import annotations

import itertools
import random
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.mqtt_url import MqttTarget
from services.protocol import Fix, Status, UplinkKind
from watchsim.clock import SimClock
from watchsim.fleet import Fleet
from watchsim.plan import FleetConfig
from watchsim.watch import Watch, WatchConfig

REAL0 = datetime(2025, 6, 2, 1, 0, tzinfo=UTC).timestamp()


class FakeTime:
    """A real clock and a monotonic clock that tests move by hand."""

    def __init__(self) -> None:
        self.real = REAL0
        self.mono = 5000.0

    def sleep(self, dt: float) -> None:
        self.real += dt
        self.mono += dt

    def clock(self, speed: float = 1.0, start_ago_s: float = 0.0) -> SimClock:
        return SimClock(speed, start_ago_s, wall=lambda: self.real, mono=lambda: self.mono)


def test_the_default_clock_is_the_real_clock() -> None:
    ft = FakeTime()
    c = ft.clock()
    assert c.is_real_time and c.start == REAL0
    for _ in range(100):
        ft.sleep(0.37)
        assert c.now() == pytest.approx(ft.real, abs=1e-6)
    assert c.rate() == 1.0 and c.behind_s() == pytest.approx(0.0, abs=1e-6)


def test_ten_minutes_in_about_32_seconds_then_real_speed() -> None:
    ft = FakeTime()
    c = ft.clock(speed=20.0, start_ago_s=600.0)
    assert c.now() == REAL0 - 600 and c.elapsed() == 0.0
    assert c.catch_up_after_s() == pytest.approx(600 / 19)
    ft.sleep(10.0)
    assert c.elapsed() == pytest.approx(200.0)  # 20 device seconds per real second
    assert c.behind_s() == pytest.approx(410.0) and c.rate() == 20.0
    ft.sleep(21.0)  # 31 s: 620 device seconds, still behind
    assert c.elapsed() == pytest.approx(620.0) and c.now() < ft.real
    ft.sleep(1.0)  # 32 s: it would overtake, so it is the real clock now
    assert c.now() == ft.real and c.rate() == 1.0
    for _ in range(50):  # and stays at real speed
        ft.sleep(1.0)
        assert c.now() == ft.real
    assert c.elapsed() == pytest.approx(600.0 + 82.0)


def test_a_slow_clock_falls_behind() -> None:
    ft = FakeTime()
    c = ft.clock(speed=0.5)
    ft.sleep(100.0)
    assert c.elapsed() == pytest.approx(50.0) and c.behind_s() == pytest.approx(50.0)
    assert c.catch_up_after_s() == 0.0  # it never was ahead to begin with


def test_device_time_stands_still_while_the_real_clock_is_stepped_back() -> None:
    ft = FakeTime()
    c = ft.clock()
    ft.sleep(10.0)
    t = c.now()
    ft.real -= 5.0  # NTP steps the clock back; monotonic time goes on
    ft.mono += 2.0
    assert c.now() == t  # never backwards (seqs and fix times stay in order)
    ft.sleep(4.0)
    assert c.now() == t
    ft.sleep(2.0)
    assert c.now() == ft.real


@settings(max_examples=200, deadline=None)
@given(
    speed=st.floats(0.05, 1000.0),
    start_ago=st.floats(0.0, 86_400.0),
    steps=st.lists(st.floats(0.0, 120.0), min_size=1, max_size=80),
)
def test_never_ahead_of_the_real_clock_and_never_backwards(
    speed: float, start_ago: float, steps: list[float]
) -> None:
    ft = FakeTime()
    c = ft.clock(speed, start_ago)
    prev, real_elapsed = c.now(), 0.0
    for dt in steps:
        ft.sleep(dt)
        real_elapsed += dt
        now = c.now()
        assert now <= ft.real
        assert now >= prev
        expected = min(c.start + speed * real_elapsed, ft.real)  # fast, capped at real time
        assert now == pytest.approx(expected, rel=0, abs=1e-6)
        prev = now


def test_the_fleet_validates_the_clock() -> None:
    base = FleetConfig(broker=MqttTarget("h", 1), devices=1)
    for bad in (
        dict(clock_speed=0.0),
        dict(clock_speed=5000.0, clock_start_ago_s=60.0),
        dict(clock_start_ago_s=-1.0),
        dict(clock_speed=10.0),  # faster, but no head start: it could only run ahead
    ):
        with pytest.raises(ValueError, match="clock"):
            Fleet(FleetConfig(**(base.__dict__ | bad)), log=lambda s: None)


def test_fleet_watches_start_in_device_time() -> None:
    cfg = FleetConfig(
        broker=MqttTarget("h", 1), devices=2, seed=1, clock_speed=20.0, clock_start_ago_s=600.0
    )
    fleet = Fleet(cfg, log=lambda s: None)
    assert fleet.clock.start == pytest.approx(fleet.started_at - 600.0, abs=1.0)
    for link in fleet.links:
        assert link.watch.next_heartbeat == fleet.clock.start  # the watch was born then
    s = fleet.summary()
    assert s["clock"]["speed"] == 20.0 and s["clock"]["start_ago_s"] == 600.0
    assert s["clock"]["catch_up_after_s"] == pytest.approx(600 / 19)


def test_a_watch_on_a_fast_clock_lives_ten_minutes_in_half_a_minute_all_in_the_past() -> None:
    """The fleet's loop in miniature: tick every 0.1 real seconds with the clock's time."""
    ft = FakeTime()
    c = ft.clock(speed=20.0, start_ago_s=600.0)
    w = Watch(
        "w00001",
        now=c.start,
        rng=random.Random(3),
        config=WatchConfig(fix_interval_s=5.0, heartbeat_s=60.0),
    )
    w.set_link(True, c.now())
    fixes: list[Fix] = []
    beats: list[Status] = []
    while ft.real < REAL0 + 40.0:
        ft.sleep(0.1)
        now = c.now()
        w.tick(now)
        for up in w.take_uplinks():
            if up.kind is UplinkKind.LOC:
                fixes.append(Fix.model_validate_json(up.payload))
            elif up.kind is UplinkKind.STATUS:
                beats.append(Status.model_validate_json(up.payload))
            sent = [m.t.timestamp() for m in fixes[-1:] + beats[-1:]]
            assert all(t <= ft.real for t in sent)  # the backend would refuse "ahead"
    times = [f.t.timestamp() for f in fixes]
    assert times == sorted(times)
    # 631.6 device seconds in the 31.6 real s of catching up, then 8.4 s at real speed: 640.
    assert min(times) - c.start < 5.0
    assert max(times) == pytest.approx(REAL0 + 40.0, abs=5.0)
    assert len(fixes) == pytest.approx(640 / 5, abs=1)  # the device rate, not the real one
    assert len(beats) == 11  # every 60 device seconds from the start: 0, 60, …, 600
    gaps = {round(b - a, 3) for a, b in itertools.pairwise(times)}
    assert gaps == {5.0}
