"""The simulated watch without a broker: walk, seq, offline buffer, alarm delivery, silence."""

from __future__ import annotations

import functools
import itertools
import json
import math
import random
import sys
import types
from datetime import UTC, datetime

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.mqtt_url import MqttTarget
from services.protocol import (
    UPLINK_MODELS,
    Alarm,
    AlarmMode,
    AlarmReceipt,
    AlarmType,
    Batch,
    Fix,
    Position,
    Source,
    State,
    Status,
    UplinkKind,
)
from watchsim.batches import pack_batches
from watchsim.fleet import Fleet
from watchsim.plan import FleetConfig, PlannedStay, PlannedWander
from watchsim.scenarios import StayingWalker, WanderingWalker
from watchsim.walk import (
    SHANGHAI,
    Activity,
    LatLon,
    WalkConfig,
    Walker,
    bearing_deg,
    delta_m,
    distance_m,
    offset_m,
    random_home,
)
from watchsim.watch import BEEP, SCREEN_HELP, SIREN, Uplink, Watch, WatchConfig

# 09:00 in Shanghai: people go out.
T0 = datetime(2025, 6, 2, 1, 0, tzinfo=UTC).timestamp()


def make_watch(seed: int = 1, online: bool = True, **cfg: object) -> Watch:
    w = Watch("w00001", now=T0, rng=random.Random(seed), config=WatchConfig(**cfg))  # type: ignore[arg-type]
    if online:
        w.set_link(True, T0)
    return w


def run(w: Watch, until: float, step: float = 0.5, start: float | None = None) -> list[Uplink]:
    t = T0 if start is None else start
    out: list[Uplink] = []
    while t <= until:
        w.tick(t)
        out += w.take_uplinks()
        t += step
    return out


def receipt(*seqs: int) -> bytes:
    return AlarmReceipt(id="r1", seqs=list(seqs)).model_dump_json().encode()


def parse(up: Uplink) -> object:
    """Decode with the protocol's own models, as the ingestor does, items and positions too."""
    model = UPLINK_MODELS[up.kind].model_validate_json(up.payload)
    if isinstance(model, Batch):
        for f in model.fixes:
            Fix.model_validate(f)
        for a in model.alarms:
            Position.model_validate(Alarm.model_validate(a).fix)
    if isinstance(model, Alarm):
        Position.model_validate(model.fix)
    return model


def seqs_in(up: Uplink) -> list[int]:
    m = parse(up)
    if isinstance(m, Batch):
        return [f["seq"] for f in m.alarms] + [f["seq"] for f in m.fixes]
    return [m.seq] if isinstance(m, Fix | Alarm | Status) else []


def alarm_seqs_sent(ups: list[Uplink]) -> list[int]:
    return [s for up in ups for s in up.alarm_seqs]


# --- walk --------------------------------------------------------------------------------


def day_of_readings(seed: int = 3, step: float = 10.0) -> tuple[Walker, list]:
    home = random_home(random.Random(seed))
    walker = Walker(home, random.Random(seed), start_t=T0)
    return walker, [walker.advance(T0 + i * step) for i in range(int(86400 / step))]


def test_homes_are_spread_within_about_4_km_of_shanghai() -> None:
    rng = random.Random(0)
    homes = [random_home(rng) for _ in range(500)]
    assert max(distance_m(SHANGHAI, h) for h in homes) <= 4000.5
    assert sum(distance_m(SHANGHAI, h) > 2000 for h in homes) > 500 * 0.6  # uniform in area


def test_walk_stays_within_a_few_km_of_home_over_a_day() -> None:
    walker, rs = day_of_readings()
    assert max(distance_m(walker.home, r.true) for r in rs) <= 1600
    assert max(distance_m(walker.home, LatLon(r.lat, r.lon)) for r in rs) <= 3000
    assert {r.activity for r in rs} == set(Activity)  # home, walks and places in one day


def test_nights_are_spent_at_home() -> None:
    walker, rs = day_of_readings(seed=5)
    night = [r for r in rs if walker.is_night(r.t + 3600)]  # an hour into the night
    assert night and all(r.activity is Activity.HOME for r in night)


def test_accuracy_within_stated_ranges_and_noise_matches_it() -> None:
    _, rs = day_of_readings(seed=7, step=5.0)
    for r in rs:
        if r.indoors:
            assert 30 <= r.acc <= 150
        else:
            assert 5 <= r.acc <= 25 and r.src is Source.GPS
    assert {Source.WIFI, Source.CELL} <= {r.src for r in rs if r.indoors}
    inside = sum(distance_m(r.true, LatLon(r.lat, r.lon)) <= r.acc for r in rs) / len(rs)
    assert 0.6 < inside < 0.76  # acc is the 68 % radius


def test_walking_speed_and_heading_are_consistent_with_the_movement() -> None:
    walker = Walker(SHANGHAI, random.Random(11), start_t=T0)
    prev = None
    checked = 0
    for i in range(8640):
        r = walker.advance(T0 + i * 10.0)
        if prev and r.activity is prev.activity is Activity.WALKING and r.src is Source.GPS:
            assert 0.5 <= r.spd <= 1.6  # type: ignore[operator]
            moved = distance_m(prev.true, r.true)
            if moved > 8:  # not turned round at a destination in between
                assert moved / 10.0 == pytest.approx(r.spd, abs=0.45)
                dn = (r.true.lat - prev.true.lat) * 111_320
                de = (r.true.lon - prev.true.lon) * 111_320 * math.cos(math.radians(r.true.lat))
                true_hdg = math.degrees(math.atan2(de, dn)) % 360
                diff = abs((r.hdg - true_hdg + 180) % 360 - 180)  # type: ignore[operator]
                assert diff < 20
                checked += 1
        prev = r
    assert checked > 50


def test_a_walk_radius_bounds_the_ordinary_day() -> None:
    for seed in range(6):
        walker = Walker(SHANGHAI, random.Random(seed), WalkConfig(radius_m=500.0), start_t=T0)
        rs = [walker.advance(T0 + i * 5.0) for i in range(int(86400 / 5.0))]
        assert {r.activity for r in rs} == set(Activity)  # still a day with outings
        assert max(distance_m(SHANGHAI, r.true) for r in rs) <= 520  # 500 m + fidgeting
        seen = [distance_m(SHANGHAI, LatLon(r.lat, r.lon)) for r in rs]
        assert max(d for d, r in zip(seen, rs, strict=True) if not r.indoors) <= 600
        assert sum(d > 600 for d in seen) <= 0.002 * len(rs)  # a rare indoor 150 m fix


# --- scenarios: wander off, stay put -------------------------------------------------------


def loc_fixes(w: Watch, until: float, step: float = 1.0) -> list[Fix]:
    return [
        Fix.model_validate_json(u.payload)
        for u in run(w, until, step=step)
        if u.kind is UplinkKind.LOC
    ]


def at(f: Fix) -> LatLon:
    return LatLon(f.lat, f.lon)


def test_a_wandering_watch_walks_straight_away_from_home_after_s() -> None:
    home = random_home(random.Random(4))
    walker = functools.partial(WanderingWalker, wander_t=T0 + 120.0, bearing_deg=45.0)
    w = Watch(
        "w00001",
        now=T0,
        rng=random.Random(4),
        config=WatchConfig(fix_interval_s=5.0),
        home=home,
        walker=walker,
    )
    w.set_link(True, T0)
    fixes = loc_fixes(w, T0 + 3600.0)
    before = [f for f in fixes if f.t.timestamp() < T0 + 120.0]
    after = [f for f in fixes if f.t.timestamp() >= T0 + 120.0]
    assert len(before) >= 20 and len(after) >= 680
    # Before S: at home, the ordinary home fixes (indoors).
    assert all(distance_m(home, at(f)) <= 2.5 * f.acc + 10 for f in before)
    assert all(f.acc >= 30 for f in before)
    # After S: outdoors, gps 5-15 m, 1.2 m/s, heading 45°, along the 45° ray from home.
    for f in after:
        assert f.src is Source.GPS and 5.0 <= f.acc <= 15.0
        assert f.spd == pytest.approx(1.2, abs=0.5)
        assert abs((f.hdg - 45.0 + 180) % 360 - 180) < 20  # type: ignore[operator]
        d = distance_m(home, at(f))
        assert d == pytest.approx(1.2 * (f.t.timestamp() - T0 - 120.0), abs=3 * f.acc)
        if d > 100:
            assert abs((bearing_deg(home, at(f)) - 45.0 + 180) % 360 - 180) < 10
    dist = [distance_m(home, at(f)) for f in after]
    assert dist[-1] > 4000  # it does not come back
    # Monotonic away from home: each fix is farther than the one a minute earlier (the
    # receiver error of 5-15 m can reverse neighbours 5 s apart, never 72 m of walking).
    assert all(b > a for a, b in zip(dist, dist[12:], strict=False))


def test_the_true_position_of_a_wanderer_moves_strictly_away() -> None:
    home = SHANGHAI
    wk = WanderingWalker(
        home, random.Random(1), WalkConfig(), T0, wander_t=T0 + 60.0, bearing_deg=200.0
    )
    rs = [wk.advance(T0 + i * 2.0) for i in range(2000)]
    assert all(r.activity is Activity.HOME for r in rs if r.t < T0 + 60.0)
    walking = [r for r in rs if r.t > T0 + 60.0]
    assert all(r.activity is Activity.WALKING and not r.indoors for r in walking)
    d = [distance_m(home, r.true) for r in walking]
    assert all(b > a for a, b in itertools.pairwise(d))
    assert d[-1] == pytest.approx(1.2 * (rs[-1].t - T0 - 60.0), rel=1e-3)
    assert not wk.at_home


def test_a_staying_watch_jitters_around_its_point_as_its_accuracy_says() -> None:
    point = offset_m(SHANGHAI, 700.0, -300.0)
    walker = functools.partial(StayingWalker, point=point, acc_m=150.0)
    w = Watch(
        "w00001",
        now=T0,
        rng=random.Random(8),
        config=WatchConfig(fix_interval_s=5.0),
        walker=walker,
    )
    w.set_link(True, T0)
    fixes = loc_fixes(w, T0 + 6 * 3600.0, step=5.0)  # day and evening: it stays all the same
    assert len(fixes) >= 4000
    assert all(f.acc == 150.0 and f.src is Source.WIFI for f in fixes)
    assert all(f.spd is None and f.hdg is None for f in fixes)
    offsets = [delta_m(point, at(f)) for f in fixes]
    n = len(offsets)
    mean_n, mean_e = sum(o[0] for o in offsets) / n, sum(o[1] for o in offsets) / n
    assert math.hypot(mean_n, mean_e) < 6.0  # centred on the point (sigma of the mean ~1.6 m)
    err = [math.hypot(*o) for o in offsets]
    assert max(err) <= 300.5  # none beyond 2 x acc
    assert 0.64 < sum(e <= 150.0 for e in err) / n < 0.74  # acc is the 68 % radius
    assert 60 < math.sqrt(sum(o[0] ** 2 for o in offsets) / n) < 110  # real jitter, per axis
    assert not w.walker.at_home


def test_scenarios_are_chosen_per_device_and_shown_in_the_summary() -> None:
    cfg = FleetConfig(
        broker=MqttTarget("h", 1),
        devices=3,
        seed=7,
        wanders=[PlannedWander(1, 30.0)],
        stays=[PlannedStay(3, 31.2, 121.5, 150.0)],
    )
    fleet = Fleet(cfg, log=lambda s: None)
    w1, w2, w3 = (lk.watch for lk in fleet.links)
    assert isinstance(w1.walker, WanderingWalker) and isinstance(w3.walker, StayingWalker)
    assert type(w2.walker) is Walker
    assert w1.walker.wander_t == fleet.clock.start + 30.0
    devices = fleet.summary()["devices"]
    sc = devices["w00001"]["scenario"]
    assert sc["kind"] == "wander" and sc["at_s"] == 30.0 and sc["bearing_random"]
    assert sc["bearing_deg"] == round(w1.walker.bearing_deg, 1) and sc["speed_mps"] == 1.2
    assert devices["w00002"]["scenario"] == {"kind": "day", "walk_radius_m": 1500.0}
    assert devices["w00003"]["scenario"] == {
        "kind": "stay",
        "lat": 31.2,
        "lon": 121.5,
        "acc_m": 150.0,
        "src": "wifi",
    }
    assert "home" in devices["w00003"]
    # The random bearing is seeded: the same seed, the same bearing; another seed, another.
    again = Fleet(cfg, log=lambda s: None).links[0].watch.walker
    other = Fleet(FleetConfig(**(cfg.__dict__ | {"seed": 8})), log=lambda s: None)
    assert again.bearing_deg == w1.walker.bearing_deg  # type: ignore[attr-defined]
    assert other.links[0].watch.walker.bearing_deg != w1.walker.bearing_deg  # type: ignore[attr-defined]


# --- demo homes --------------------------------------------------------------------------


def test_demo_homes_come_from_geofences_demo() -> None:
    """Against the real ``geofences.demo.demo_home(wearer_id) -> (lat, lon)``."""
    from geofences.demo import demo_home

    cfg = FleetConfig(broker=MqttTarget("h", 1), devices=3, seed=1, demo_homes=True)
    fleet = Fleet(cfg, log=lambda s: None)
    for link in fleet.links:
        lat, lon = demo_home(f"wearer-{link.device_id}")
        assert link.watch.home == LatLon(lat, lon)
        assert link.watch.walker.home == LatLon(lat, lon)
        assert link.watch.cfg.walk.radius_m == 500.0
    s = fleet.summary()
    assert s["homes"] == "demo"
    assert s["devices"]["w00002"]["scenario"] == {"kind": "day", "walk_radius_m": 500.0}


def test_demo_homes_plumbing(monkeypatch: pytest.MonkeyPatch) -> None:
    """What the fleet asks ``demo_home`` for, and what it does with the answer."""
    asked: list[str] = []

    def demo_home(wearer_id: str) -> tuple[float, float]:
        asked.append(wearer_id)
        return (31.0 + len(asked) / 100, 121.0)

    stub = types.ModuleType("geofences.demo")
    stub.demo_home = demo_home  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "geofences.demo", stub)
    cfg = FleetConfig(
        broker=MqttTarget("h", 1), devices=2, first_index=7, demo_homes=True, walk_radius_m=300
    )
    fleet = Fleet(cfg, log=lambda s: None)
    assert asked == ["wearer-w00007", "wearer-w00008"]
    assert [lk.watch.home for lk in fleet.links] == [LatLon(31.01, 121.0), LatLon(31.02, 121.0)]
    assert all(lk.watch.cfg.walk.radius_m == 300.0 for lk in fleet.links)
    asked.clear()
    plain = Fleet(FleetConfig(broker=MqttTarget("h", 1), devices=2), log=lambda s: None)
    assert asked == []  # without --demo-homes: random homes, the usual 1500 m day
    assert all(lk.watch.cfg.walk.radius_m == 1500.0 for lk in plain.links)


# --- seq, heartbeats, battery --------------------------------------------------------------


def test_seq_strictly_increasing_across_kinds() -> None:
    w = make_watch(fix_interval_s=5.0, heartbeat_s=30.0)
    ups = run(w, T0 + 100)
    w.press_sos(T0 + 100.2)
    w.fall(T0 + 100.3)
    ups += w.take_uplinks()
    ups += run(w, T0 + 200, start=T0 + 100.5)
    w.removed(T0 + 200.6)
    ups += w.take_uplinks() + run(w, T0 + 300, start=T0 + 201)
    first_seen: list[int] = []
    for up in ups:
        first_seen += [s for s in seqs_in(up) if s not in first_seen]
    assert first_seen == sorted(first_seen) and len(set(first_seen)) == len(first_seen)
    assert {up.kind for up in ups} == {UplinkKind.LOC, UplinkKind.STATUS, UplinkKind.ALARM}


def test_heartbeats_every_n_seconds_with_battery() -> None:
    w = make_watch(heartbeat_s=60.0)
    ups = [u for u in run(w, T0 + 600, step=1.0) if u.kind is UplinkKind.STATUS]
    assert len(ups) == 11
    assert all(0 <= Status.model_validate_json(u.payload).bat <= 100 for u in ups)


def test_battery_drains_by_day_and_recharges_at_night() -> None:
    w = make_watch(online=False)
    start = w.battery
    w.tick(T0 + 6 * 3600)  # 15:00 local, out and about or home by day
    assert w.battery < start
    low = w.battery
    for h in range(7, 21):  # through the evening to 05:00 local
        w.tick(T0 + h * 3600)
    assert w.charging and w.battery > low


def test_state_payloads_parse() -> None:
    w = make_watch()
    assert State.model_validate_json(w.state_payload(False, None)).online is False
    assert State.model_validate_json(w.state_payload(True, T0)).t is not None


# --- offline buffer ------------------------------------------------------------------------


def test_offline_buffer_becomes_batches_of_at_most_500_including_pending_alarms() -> None:
    w = make_watch(fix_interval_s=1.0)
    early = w.press_sos(T0)  # sent once, not receipted
    w.take_uplinks()
    w.go_offline(T0 + 0.1)
    run(w, T0 + 1200, step=1.0, start=T0 + 0.1)
    silent = w.press_sos(T0 + 1200.5, AlarmMode.SILENT)
    fall = w.fall(T0 + 1200.6)
    assert w.take_uplinks() == []  # nothing leaves a watch without network
    buffered = len(w.buffer)
    assert buffered >= 1199
    w.go_online(T0 + 1201)
    batches = w.take_uplinks()
    assert batches and all(b.kind is UplinkKind.BATCH for b in batches)
    parsed = [Batch.model_validate_json(b.payload) for b in batches]
    for b, p in zip(batches, parsed, strict=True):
        assert len(p.fixes) + len(p.alarms) <= 500
        assert len(b.payload) <= 60_000
        parse(b)
    assert [a["seq"] for a in parsed[0].alarms] == [early, silent, fall]
    fix_seqs = [f["seq"] for p in parsed for f in p.fixes]
    assert len(fix_seqs) == buffered and fix_seqs == sorted(fix_seqs)
    assert sum(len(b.fix_seqs) for b in batches) == buffered


def test_full_buffer_drops_oldest_fixes_never_alarms() -> None:
    w = make_watch(fix_interval_s=1.0, buffer_max_fixes=100)
    w.go_offline(T0)
    run(w, T0 + 50, step=1.0)
    seqs = [w.press_sos(T0 + 50.5), w.removed(T0 + 50.6)]
    run(w, T0 + 250, step=1.0, start=T0 + 51)
    assert len(w.buffer) == 100 and w.fixes_dropped == w.fixes_made - 100
    newest = [f.seq for f in w.buffer]
    assert newest[-1] > seqs[-1]  # the newest fixes are kept
    w.go_online(T0 + 251)
    batch = Batch.model_validate_json(w.take_uplinks()[0].payload)
    assert [a["seq"] for a in batch.alarms] == seqs
    assert [f["seq"] for f in batch.fixes] == newest


def test_batches_respect_the_byte_limit() -> None:
    w = make_watch(fix_interval_s=1.0)
    w.go_offline(T0)
    run(w, T0 + 2000, step=5.0)
    packed = pack_batches([], list(w.buffer), max_items=500, max_bytes=20_000)
    assert all(len(b.payload) <= 20_000 for b in packed)
    assert sum(len(b.fix_seqs) for b in packed) == len(w.buffer)


def test_random_offline_periods_come_and_go() -> None:
    w = make_watch(offline_every_s=600.0, offline_for_s=(60.0, 120.0), fix_interval_s=10.0)
    down: list[float] = []
    t, was_up = T0, True
    while t < T0 + 6 * 3600:
        w.tick(t)
        w.take_uplinks()
        if w.radio_up != was_up:
            down.append(t)
            was_up = w.radio_up
        t += 1.0
    periods = [b - a for a, b in zip(down[::2], down[1::2], strict=False)]
    assert len(periods) >= 10
    assert all(60 <= p <= 121 for p in periods)


# --- alarms ------------------------------------------------------------------------------


def test_alarm_is_resent_with_backoff_until_a_receipt_names_it_and_never_after() -> None:
    w = make_watch(fix_interval_s=1000.0)
    seq = w.press_sos(T0)
    first = w.take_uplinks()
    times, payloads = [T0], {first[0].payload}
    t = T0
    while t < T0 + 120:
        t += 0.25
        w.tick(t)
        for up in w.take_uplinks():
            if up.kind is UplinkKind.ALARM:
                times.append(t)
                payloads.add(up.payload)
    gaps = [round(b - a) for a, b in itertools.pairwise(times)]
    assert gaps[:6] == [2, 4, 8, 16, 30, 30]
    assert len(payloads) == 1  # the same bytes, the same seq
    w.on_command(receipt(seq), t)
    assert seq not in w.pending_alarms
    later = run(w, t + 600, start=t + 0.25)
    assert seq not in alarm_seqs_sent(later)


def test_pending_alarm_survives_a_broker_restart() -> None:
    w = make_watch(fix_interval_s=1000.0)
    seq = w.press_sos(T0)
    w.take_uplinks()
    w.set_link(False, T0 + 1)
    assert alarm_seqs_sent(run(w, T0 + 60, start=T0 + 1)) == []  # nothing into the void
    w.set_link(True, T0 + 61)
    ups = w.take_uplinks()
    assert [u.kind for u in ups] == [UplinkKind.BATCH] and seq in ups[0].alarm_seqs
    # The batch was the second send: the next one follows 4 s later.
    assert alarm_seqs_sent(run(w, T0 + 66, start=T0 + 61.5)) == [seq]
    w.on_command(receipt(seq), T0 + 66.1)
    assert alarm_seqs_sent(run(w, T0 + 300, start=T0 + 66.5)) == []


def test_a_receipt_for_an_unknown_seq_is_harmless() -> None:
    w = make_watch()
    seq = w.press_sos(T0)
    w.on_command(receipt(seq + 1000, 0), T0 + 1)
    w.on_command(b"not json", T0 + 1)
    w.on_command(b'{"type": "locate_now", "id": "c1"}', T0 + 1)
    w.on_command(b'{"type": "alarm_receipt", "seqs": ["x"]}', T0 + 1)
    w.on_command(b"[1, 2]", T0 + 1)
    assert list(w.pending_alarms) == [seq]
    assert w.unknown_receipts == [seq + 1000, 0]
    assert w.ignored_commands == ["invalid-json", "locate_now", "invalid-alarm_receipt", "None"]
    w.on_command(receipt(seq), T0 + 2)
    w.on_command(receipt(seq), T0 + 3)  # a duplicate receipt
    assert not w.pending_alarms and w.alarms[seq].receipted_t == T0 + 2


def test_silent_sos_never_rings_the_watch() -> None:
    w = make_watch()
    seq = w.press_sos(T0, AlarmMode.SILENT)
    fall = w.fall(T0 + 1, AlarmMode.SILENT)
    ups = w.take_uplinks() + run(w, T0 + 30, start=T0 + 1)
    assert Alarm.model_validate_json(ups[0].payload).mode is AlarmMode.SILENT
    w.on_command(receipt(seq, fall), T0 + 31)
    run(w, T0 + 90, start=T0 + 31)
    assert w.ui_events == []


def test_audible_sos_sounds_a_siren_and_shows_that_help_is_coming() -> None:
    w = make_watch()
    seq = w.press_sos(T0)
    assert w.ui_events == [SIREN]
    w.on_command(receipt(seq), T0 + 1)
    w.on_command(receipt(seq), T0 + 2)
    assert w.ui_events == [SIREN, SCREEN_HELP, BEEP]


def test_every_payload_of_an_eventful_hour_parses() -> None:
    w = make_watch(seed=9, fix_interval_s=2.0, heartbeat_s=60.0, offline_every_s=300.0)
    rng = random.Random(9)
    t = T0
    kinds: set[UplinkKind] = set()
    while t < T0 + 3600:
        t += 1.0
        if rng.random() < 0.005:
            rng.choice([w.press_sos, w.fall])(t, rng.choice(list(AlarmMode)))
        if rng.random() < 0.01 and w.pending_alarms:
            w.on_command(receipt(*w.pending_alarms), t)
        w.tick(t)
        for up in w.take_uplinks():
            parse(up)
            kinds.add(up.kind)
    assert {UplinkKind.LOC, UplinkKind.STATUS, UplinkKind.ALARM, UplinkKind.BATCH} <= kinds


# --- property ------------------------------------------------------------------------------

ops = st.lists(
    st.one_of(
        st.tuples(st.just("tick"), st.floats(0.1, 40.0)),
        st.tuples(st.just("press"), st.sampled_from(list(AlarmType)), st.sampled_from(AlarmMode)),
        st.tuples(st.just("receipt"), st.integers(0, 10)),  # index into pending, or unknown
        st.tuples(st.just("radio"), st.booleans()),
        st.tuples(st.just("link"), st.booleans()),
    ),
    max_size=60,
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=ops, seed=st.integers(0, 1000))
def test_seqs_grow_and_receipted_alarms_are_never_resent(ops: list, seed: int) -> None:
    w = make_watch(seed=seed, fix_interval_s=3.0, heartbeat_s=20.0, buffer_max_fixes=50)
    t = T0
    highest = -1
    receipted: set[int] = set()
    content: dict[int, str] = {}
    silent_only = True
    for op in ops:
        t += 0.01
        if op[0] == "tick":
            t += op[1]
            w.tick(t)
        elif op[0] == "press":
            kind, mode = op[1], op[2]
            if kind is AlarmType.REMOVED:
                w.removed(t)
            else:
                (w.press_sos if kind is AlarmType.SOS else w.fall)(t, mode)
            silent_only &= mode is AlarmMode.SILENT and kind is not AlarmType.REMOVED
        elif op[0] == "receipt":
            pending = sorted(w.pending_alarms)
            seq = pending[op[1]] if op[1] < len(pending) else 10**12 + op[1]
            w.on_command(receipt(seq), t)
            receipted.add(seq)
        elif op[0] == "radio":
            w.go_online(t) if op[1] else w.go_offline(t)
        else:
            w.set_link(op[1], t)
        for up in w.take_uplinks():
            assert w.online  # nothing leaves a watch without network
            model = parse(up)
            new = [s for s in seqs_in(up) if s not in content]
            assert all(s > highest for s in new)
            highest = max([highest, *new])
            assert not receipted & set(up.alarm_seqs)
            if isinstance(model, Batch):
                assert len(model.fixes) + len(model.alarms) <= 500
                items = model.alarms + model.fixes
            else:
                items = [json.loads(up.payload)]
            for item in items:  # one seq, one content (re-sends are identical alarms)
                if "seq" in item:
                    body = json.dumps(item, sort_keys=True)
                    assert content.setdefault(item["seq"], body) == body
    if silent_only:
        assert w.ui_events == []
