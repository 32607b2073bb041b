"""The vectorised engine agrees with the scalar Shapely path, its cache changes incrementally,
the batch engine decides exactly like the pure step, and the metric frame is as accurate as
docs/geofences.md says (against Vincenty's ellipsoidal distance, written out independently)."""

from __future__ import annotations

import dataclasses
import itertools
import math
from datetime import datetime, time, timedelta

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import geofences.engine as engine_mod
from geofences.batch import decide_batch
from geofences.decision import fence_decision
from geofences.engine import FenceIndex
from geofences.metric import (
    LocalFrame,
    circle_signed_distance,
    compile_fence,
    scalar_signed_distance,
)
from geofences.model import DeviceFix, Fence, FenceState, FixSample, Schedule, TimeWindow
from tests.test_geofence_strategies import at, circle_fence, fences, points_near, square_fence


def scalar(fence: Fence, lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
    cf = compile_fence(fence)
    return np.array(
        [scalar_signed_distance(cf, a, o) for a, o in zip(lat.tolist(), lon.tolist(), strict=True)]
    )


def assert_close(got: np.ndarray, want: np.ndarray) -> None:
    tol = np.maximum(1e-3, 1e-6 * np.abs(want))  # 1 mm, or 1e-6 relative far away
    assert np.all(np.abs(got - want) <= tol), np.max(np.abs(got - want))


# -- vectorised == scalar ---------------------------------------------------------------------
@settings(max_examples=80, deadline=None)
@given(st.lists(fences(), min_size=1, max_size=4), st.integers(0, 2**32 - 1))
def test_signed_distances_equal_the_scalar_shapely_path(fence_list: list[Fence], seed: int) -> None:
    fence_list = [dataclasses.replace(f, fence_id=f"f{i}") for i, f in enumerate(fence_list)]
    index = FenceIndex(fence_list, threads=1)
    ids, lats, lons, want = [], [], [], []
    for i, f in enumerate(fence_list):
        lat, lon = points_near(f, 40, seed + i)
        ids += [f.fence_id] * 40
        lats.append(lat)
        lons.append(lon)
        want.append(scalar(f, lat, lon))
    order = np.random.default_rng(seed).permutation(len(ids))  # pairs interleaved, any order
    got = index.signed_distances(
        [ids[i] for i in order], np.concatenate(lats)[order], np.concatenate(lons)[order]
    )
    assert_close(got, np.concatenate(want)[order])


def test_threads_split_the_batch_without_changing_the_answer(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fence_list = [
        dataclasses.replace(square_fence(100.0 + 10 * i), fence_id=f"f{i}") for i in range(5)
    ]
    lat, lon = points_near(fence_list[0], 500, 1)
    ids = [f"f{i % 5}" for i in range(500)]
    one = FenceIndex(fence_list, threads=1).signed_distances(ids, lat, lon)
    monkeypatch.setattr(engine_mod, "PARALLEL_MIN_PAIRS", 10)
    many = FenceIndex(fence_list, threads=3).signed_distances(ids, lat, lon)
    assert np.array_equal(one, many)


def test_empty_batch_and_circles_only() -> None:
    index = FenceIndex([circle_fence(100.0)])
    assert index.signed_distances([], np.array([]), np.array([])).shape == (0,)
    lat, lon = points_near(circle_fence(100.0), 10, 2)
    assert_close(
        index.signed_distances(["fence-1"] * 10, lat, lon), scalar(circle_fence(100.0), lat, lon)
    )


def test_a_fix_without_coordinates_has_no_distance_and_drives_nothing() -> None:
    f = square_fence(200.0, wearer_id="w")
    index = FenceIndex([f, dataclasses.replace(circle_fence(), fence_id="c", wearer_id="w")])
    lat, lon = points_near(f, 3, 4)
    lat[1] = np.nan
    got = index.signed_distances(["fence-1"] * 3 + ["c"], np.r_[lat, np.nan], np.r_[lon, 0.0])
    assert np.isnan(got[1]) and np.isnan(got[3]) and np.isfinite(got[[0, 2]]).all()
    bad = DeviceFix("d", "w", FixSample(at(0), math.nan, 121.47, 10.0))
    out = decide_batch(index, [bad], {("d", "fence-1"): FenceState(inside=True)}, {})
    assert out.changed == {} and out.transitions == []


# -- the cache ------------------------------------------------------------------------------------
def test_upsert_replace_and_remove_change_the_answer_incrementally() -> None:
    index = FenceIndex(threads=1)
    small, big = square_fence(100.0), square_fence(300.0)
    index.upsert(small)
    lat, lon = points_near(big, 50, 3)
    assert_close(index.signed_distances(["fence-1"] * 50, lat, lon), scalar(small, lat, lon))
    index.upsert(big)  # same id: replaced in place
    assert len(index) == 1
    assert_close(index.signed_distances(["fence-1"] * 50, lat, lon), scalar(big, lat, lon))
    index.upsert(circle_fence(80.0))  # a polygon slot becomes a circle
    assert_close(
        index.signed_distances(["fence-1"] * 50, lat, lon), scalar(circle_fence(80.0), lat, lon)
    )
    index.remove("fence-1")
    index.remove("fence-1")  # removing twice is harmless
    assert len(index) == 0 and "fence-1" not in index
    with pytest.raises(KeyError):
        index.signed_distances(["fence-1"], lat[:1], lon[:1])


def cached(fence: Fence) -> Fence:
    """What the cache promises to give back: the fence without its GeoJSON."""
    return dataclasses.replace(fence, geometry=None)


def test_fences_are_listed_per_wearer_and_follow_a_change_of_wearer() -> None:
    a = dataclasses.replace(square_fence(), fence_id="a", wearer_id="w1")
    b = dataclasses.replace(circle_fence(), fence_id="b", wearer_id="w1")
    index = FenceIndex([a, b])
    assert index.fences_of("w1") == [cached(a), cached(b)] and index.fences_of("w2") == []
    moved = dataclasses.replace(b, wearer_id="w2")
    index.upsert(moved)
    assert index.fences_of("w1") == [cached(a)] and index.fences_of("w2") == [cached(moved)]
    index.remove("a")
    assert index.fences_of("w1") == [] and index.get("b") == cached(moved)


def test_many_changes_reuse_slots_and_compact_the_boundary_pool() -> None:
    rng = np.random.default_rng(5)
    index = FenceIndex(threads=1)
    live: dict[str, Fence] = {}
    for step in range(1500):
        fid = f"f{rng.integers(0, 120)}"
        if fid in live and rng.random() < 0.4:
            index.remove(fid)
            del live[fid]
        else:
            f = dataclasses.replace(square_fence(float(rng.uniform(50, 400))), fence_id=fid)
            if step % 7 == 0:
                f = dataclasses.replace(circle_fence(float(rng.uniform(20, 300))), fence_id=fid)
            index.upsert(f)
            live[fid] = f
    assert len(index) == len(live)
    assert index.segments.used <= 2 * index.segments.live + 4096  # garbage stays bounded
    assert len(index.lat0) <= 256  # slots were reused, not appended forever
    for fid, f in live.items():
        lat, lon = points_near(f, 20, 9)
        assert_close(index.signed_distances([fid] * 20, lat, lon), scalar(f, lat, lon))


# -- the batch engine decides exactly as the pure step, in device-time order ------------------
NIGHT = Schedule(tz="Asia/Shanghai", windows=(TimeWindow(time(21, 0), time(7, 0)),))
PRIORS = [
    None,  # never stored: unknown
    FenceState(inside=True, since=at(0), version=3),
    FenceState(inside=False, since=at(0)),
    FenceState(inside=True, since=at(0), pending_exit_since=at(600)),
    FenceState(active=False),
    FenceState(inside=False, since=at(0), active=False),
    FenceState(pending_exit_since=at(0)),  # unknown with an exit pending (stored by old rules)
]


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_decide_batch_equals_fence_decision_step_by_step(data: st.DataObject) -> None:
    fence_list = []
    for i in range(data.draw(st.integers(1, 3))):
        f = data.draw(fences())
        f = dataclasses.replace(
            f,
            fence_id=f"f{i}",
            wearer_id=data.draw(st.sampled_from(["w1", "w2"])),
            dwell_s=data.draw(st.sampled_from([0.0, 60.0])),
            schedule=data.draw(st.sampled_from([None, NIGHT])),
        )
        fence_list.append(f)
    index = FenceIndex(fence_list, threads=1)
    fixes = []
    for _ in range(data.draw(st.integers(0, 25))):
        dev = data.draw(st.sampled_from(["d1", "d2"]))
        target = data.draw(st.sampled_from(fence_list))
        lat, lon = points_near(target, 1, data.draw(st.integers(0, 1000)))
        t = at(data.draw(st.integers(0, 48)) * 1800)  # every half hour over two days
        acc = data.draw(st.floats(1.0, 400.0))
        fixes.append(
            DeviceFix(
                dev, {"d1": "w1", "d2": "w2"}[dev], FixSample(t, float(lat[0]), float(lon[0]), acc)
            )
        )
    states = {}
    for dev, f in itertools.product(("d1", "d2"), fence_list):
        prior = data.draw(st.sampled_from(PRIORS))
        if prior is not None:
            states[(dev, f.fence_id)] = prior
    newest = {"d1": at(1800), "d2": None}
    out = decide_batch(index, fixes, states, newest)

    # The reference: per device in time order, late/duplicate fixes skipped, fence_decision.
    by_id = {f.fence_id: f for f in fence_list}  # the cache keeps no geometry
    want_states, want_transitions = dict(states), []
    for dev in ("d1", "d2"):
        seen = newest[dev]
        for df in sorted((df for df in fixes if df.device_id == dev), key=lambda df: df.fix.t):
            if seen is not None and df.fix.t <= seen:
                continue
            seen = df.fix.t
            for f in (by_id[c.fence_id] for c in index.fences_of(df.wearer_id)):
                prior = want_states.get((dev, f.fence_id), FenceState())
                d = fence_decision(
                    f, prior, df.fix, scalar(f, np.array([df.fix.lat]), np.array([df.fix.lon]))[0]
                )
                want_states[(dev, f.fence_id)] = d.state
                if d.transition is not None:
                    want_transitions.append((df, d.transition))
    changed = {k: v for k, v in want_states.items() if v != states.get(k, FenceState())}
    assert out.changed == changed
    got = [(df, d.transition) for df, d in out.transitions]
    for dev in ("d1", "d2"):  # per device in time order (devices may interleave any way)
        assert [g for g in got if g[0].device_id == dev] == [
            w for w in want_transitions if w[0].device_id == dev
        ]
    assert len(got) == len(want_transitions)


def test_a_batch_orders_each_device_and_drops_late_and_duplicate_fixes() -> None:
    f = square_fence(200.0, dwell_s=0.0, wearer_id="w")
    index = FenceIndex([f])
    cf = compile_fence(f)

    def fix(t: float, x: float) -> DeviceFix:
        lat, lon = cf.frame.unproject(x, 0.0)
        return DeviceFix("d", "w", FixSample(at(t), float(lat), float(lon), 10.0))

    batch = [fix(30, 0.0), fix(10, 600.0), fix(20, 0.0), fix(20, 600.0), fix(5, 0.0)]
    home = {("d", "fence-1"): FenceState(inside=True, since=at(0))}
    out = decide_batch(index, batch, home, {"d": at(5)})
    # In time order: 10 out (exit), 20 in (enter), 20 again (duplicate: dropped), 30 in.
    assert [(d.transition, df.fix.t) for df, d in out.transitions] == [
        ("exit", at(10)),
        ("enter", at(20)),
    ]
    _, d = out.transitions[0]
    assert d.distance_m == pytest.approx(-400.0, abs=0.01) and d.fence_id == "fence-1"
    assert out.changed == {("d", "fence-1"): FenceState(inside=True, since=at(20))}
    assert out.decisions == 5


def test_a_batch_returns_only_states_that_changed() -> None:
    f = square_fence(200.0, wearer_id="w")
    index = FenceIndex([f])
    lat, lon = compile_fence(f).frame.unproject(0.0, 0.0)
    inside = FenceState(inside=True, since=at(-60))
    fx = DeviceFix("d", "w", FixSample(at(0), float(lat), float(lon), 10.0))
    out = decide_batch(
        index, [fx, DeviceFix("other", "nobody", fx.fix)], {("d", "fence-1"): inside}, {}
    )
    assert out.changed == {} and out.transitions == [] and out.decisions == 1


# -- the metric frame against an independent geodesic ------------------------------------------
def vincenty_m(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Vincenty's inverse formula on WGS 84 (sub-millimetre for these distances)."""
    a, f = 6378137.0, 1 / 298.257223563
    b = (1 - f) * a
    u1, u2 = (
        math.atan((1 - f) * math.tan(math.radians(lat1))),
        math.atan((1 - f) * math.tan(math.radians(lat2))),
    )
    s1, c1, s2, c2 = math.sin(u1), math.cos(u1), math.sin(u2), math.cos(u2)
    big_l = math.radians(lon2 - lon1)
    lam = big_l
    for _ in range(200):
        sl, cl = math.sin(lam), math.cos(lam)
        ss = math.hypot(c2 * sl, c1 * s2 - s1 * c2 * cl)
        if ss == 0:
            return 0.0
        cs = s1 * s2 + c1 * c2 * cl
        sig = math.atan2(ss, cs)
        sa = c1 * c2 * sl / ss
        c2a = 1 - sa * sa
        c2m = cs - 2 * s1 * s2 / c2a if c2a else 0.0
        cc = f / 16 * c2a * (4 + f * (4 - 3 * c2a))
        prev, lam = (
            lam,
            big_l + (1 - cc) * f * sa * (sig + cc * ss * (c2m + cc * cs * (-1 + 2 * c2m * c2m))),
        )
        if abs(lam - prev) < 1e-13:
            break
    u_sq = c2a * (a * a - b * b) / (b * b)
    big_a = 1 + u_sq / 16384 * (4096 + u_sq * (-768 + u_sq * (320 - 175 * u_sq)))
    big_b = u_sq / 1024 * (256 + u_sq * (-128 + u_sq * (74 - 47 * u_sq)))
    ds = (
        big_b
        * ss
        * (
            c2m
            + big_b
            / 4
            * (
                cs * (-1 + 2 * c2m * c2m)
                - big_b / 6 * c2m * (-3 + 4 * ss * ss) * (-3 + 4 * c2m * c2m)
            )
        )
    )
    return b * big_a * (sig - ds)


@settings(max_examples=200, deadline=None)
@given(
    st.floats(-70.0, 70.0),
    st.floats(-10_000.0, 10_000.0),
    st.floats(-10_000.0, 10_000.0),
    st.floats(1.0, 300.0),
    st.floats(0.0, 2 * math.pi),
)
def test_frame_distances_are_within_the_documented_bound(
    lat0: float, x: float, y: float, d: float, a: float
) -> None:
    """Relative error <= tan|lat0| * (north-south offset) / 6.37e6, plus a hair."""
    frame = LocalFrame.at(lat0, 121.47)
    lat1, lon1 = frame.unproject(x, y)
    lat2, lon2 = frame.unproject(x + d * math.cos(a), y + d * math.sin(a))
    true = vincenty_m(lat1, lon1, lat2, lon2)
    bound = math.tan(math.radians(abs(lat0))) * (abs(y) + d) / 6.37e6 + 2e-6
    assert abs(d - true) <= bound * true


@pytest.mark.parametrize(
    ("lat0", "radius", "tolerance"),
    [(31.23, 1000.0, 0.001), (31.23, 50_000.0, 1.0), (60.0, 50_000.0, 5.0)],
)
def test_circle_distance_against_the_geodesic(lat0: float, radius: float, tolerance: float) -> None:
    frame = LocalFrame.at(lat0, 121.47)
    for a in np.linspace(0, 2 * math.pi, 24, endpoint=False):
        for s in (0.0, 0.5, 0.99, 1.01, 2.0):
            lat, lon = frame.unproject(s * radius * math.cos(a), s * radius * math.sin(a))
            want = radius - vincenty_m(lat0, 121.47, lat, lon)
            assert abs(circle_signed_distance(lat0, 121.47, radius, lat, lon) - want) <= tolerance


def test_fence_across_the_antimeridian_works() -> None:
    frame = LocalFrame.at(-16.5, 179.999)
    corners = [(-500.0, -500.0), (500.0, -500.0), (500.0, 500.0), (-500.0, 500.0)]
    ring = []
    for x, y in [*corners, corners[0]]:
        lat, lon = frame.unproject(x, y)
        ring.append([float(lon), float(lat)])
    assert any(p[0] < 0 for p in ring) and any(p[0] > 0 for p in ring)  # it really crosses
    f = dataclasses.replace(square_fence(), geometry={"type": "Polygon", "coordinates": [ring]})
    lat, lon = frame.unproject(np.array([0.0, 700.0]), np.array([0.0, 0.0]))
    got = FenceIndex([f]).signed_distances(["fence-1"] * 2, lat, lon)
    assert got == pytest.approx([500.0, -200.0], abs=0.01)


def test_times_are_plain_datetimes() -> None:
    assert isinstance(at(0), datetime) and at(60) - at(0) == timedelta(seconds=60)
