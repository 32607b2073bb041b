"""The issue's four properties of the fence decision, with Hypothesis.

Each is written so that a plausible bug breaks it: an engine that ignores the accuracy (or the
margin's side) flaps under jitter; one that keeps firing while outside, or does not drop late
fixes, counts too many transitions. Fixes are *honest*: the true position lies within the
reported accuracy, which is what the accuracy circle promises.
"""

from __future__ import annotations

import dataclasses
import math
from datetime import datetime, time, timedelta

from hypothesis import assume, given, settings
from hypothesis import strategies as st

from geofences.batch import decide_batch
from geofences.decision import fence_decision, observe
from geofences.engine import FenceIndex
from geofences.metric import CompiledFence, compile_fence, scalar_signed_distance
from geofences.model import (
    DeviceFix,
    Fence,
    FenceKind,
    FenceState,
    FixSample,
    Observation,
    Schedule,
    TimeWindow,
    Transition,
)
from geofences.schedule import is_active
from tests.test_geofence_strategies import ORIGIN, T0, at, fences, points_near, square_fence

SETTINGS = settings(max_examples=120, deadline=None)


def centre_xy(cf: CompiledFence) -> tuple[float, float]:
    """The generated fences' centre (ORIGIN) in the fence's own frame."""
    x, y = cf.frame.project(ORIGIN.lat0, ORIGIN.lon0)
    return float(x), float(y)


def size_of(cf: CompiledFence) -> float:
    if cf.shape is None:
        return float(cf.radius_m or 0.0)
    minx, miny, maxx, maxy = cf.shape.bounds
    return max(abs(minx), abs(miny), abs(maxx), abs(maxy)) * 2


def sample(
    cf: CompiledFence, x: float, y: float, t: datetime, acc: float
) -> tuple[FixSample, float]:
    lat, lon = cf.frame.unproject(x, y)
    fix = FixSample(t, float(lat), float(lon), acc)
    return fix, scalar_signed_distance(cf, fix.lat, fix.lon)


def replay(
    fence: Fence, cf: CompiledFence, fixes: list[FixSample], prior: FenceState | None = None
) -> tuple[FenceState, list[tuple[Transition, datetime]]]:
    """Deliver fixes one at a time, as the ingestor would, with its newest-seen time."""
    state, newest, fired = prior or FenceState(), None, []
    for fix in fixes:
        d = fence_decision(
            fence, state, fix, scalar_signed_distance(cf, fix.lat, fix.lon), newest_decided=newest
        )
        state = d.state
        newest = fix.t if newest is None else max(newest, fix.t)
        if d.transition is not None:
            fired.append((d.transition, fix.t))
    return state, fired


def anchors_of(cf: CompiledFence) -> list[tuple[float, float]]:
    """Points on the outer boundary of the fence's first part: the segment from the centre to
    any of them lies inside (the generated shapes are star-shaped around the centre)."""
    cx, cy = centre_xy(cf)
    if cf.shape is None:
        r = float(cf.radius_m or 0.0)
        return [(cx + r * math.cos(a / 8), cy + r * math.sin(a / 8)) for a in range(50)]
    first = cf.shape.geoms[0] if hasattr(cf.shape, "geoms") else cf.shape
    return list(first.exterior.coords)


def honest(draw: st.DrawFn, x: float, y: float, acc: float) -> tuple[float, float]:
    """A reported position within ``acc`` of the true one (strictly, with a little slack)."""
    r = draw(st.floats(0.0, 1.0)) * acc * (1 - 1e-6)
    a = draw(st.floats(0.0, 2 * math.pi))
    return x + r * math.cos(a), y + r * math.sin(a)


# -- 1. a walk whose accuracy circle stays at least margin inside never yields an exit --------
@SETTINGS
@given(fences(), st.data())
def test_a_walk_whose_accuracy_circle_stays_margin_inside_never_exits(
    fence: Fence, data: st.DataObject
) -> None:
    cf = compile_fence(fence)
    cx, cy = centre_xy(cf)
    anchors = anchors_of(cf)
    walk, t = [], 0.0
    for _ in range(data.draw(st.integers(1, 25))):
        ax, ay = data.draw(st.sampled_from(anchors))
        s = data.draw(st.floats(0.0, 1.0))  # the segment from the centre to a vertex is inside
        t += data.draw(st.floats(1.0, 600.0))
        fix, d = sample(cf, cx + s * (ax - cx), cy + s * (ay - cy), at(t), 0.0)
        if d <= fence.margin_m:
            continue  # too close to the edge (or in a hole) for any accuracy circle to fit
        acc = min(data.draw(st.floats(0.0, 300.0)), d - fence.margin_m)
        walk.append(fix._replace(acc=acc))
    prior = data.draw(st.sampled_from([FenceState(), FenceState(inside=True, since=T0)]))
    _, fired = replay(fence, cf, walk, prior)
    assert Transition.EXIT not in [tr for tr, _ in fired]


# -- 2. jitter of any amplitude around a boundary, without a real crossing: no transition -----
@SETTINGS
@given(fences(), st.data())
def test_jitter_of_any_amplitude_without_a_crossing_fires_nothing(
    fence: Fence, data: st.DataObject
) -> None:
    fence = dataclasses.replace(fence, dwell_s=data.draw(st.sampled_from([0.0, 30.0, 60.0])))
    cf = compile_fence(fence)
    if cf.shape is None:
        a = data.draw(st.floats(0, 2 * math.pi))
        cx, cy = centre_xy(cf)
        bx, by = cx + cf.radius_m * math.cos(a), cy + cf.radius_m * math.sin(a)
    else:
        b = cf.shape.boundary.interpolate(data.draw(st.floats(0.0, 1.0)), normalized=True)
        bx, by = b.x, b.y
    off, a = data.draw(st.floats(0.0, 80.0)), data.draw(st.floats(0, 2 * math.pi))
    px, py = bx + off * math.cos(a), by + off * math.sin(a)  # the wearer, who stays put
    _, d_true = sample(cf, px, py, T0, 0.0)
    assume(abs(d_true) >= 0.01)
    truly_inside = d_true > 0
    # Unknown is a fair start unless she is truly in a no-go fence (first sight fires ENTER).
    first_sight_is_quiet = fence.kind == FenceKind.SAFE or not truly_inside
    priors = [FenceState(inside=truly_inside, since=T0)] + (
        [FenceState()] if first_sight_is_quiet else []
    )
    prior = data.draw(st.sampled_from(priors))
    fixes, t = [], 0.0
    for _ in range(data.draw(st.integers(1, 40))):
        acc = data.draw(st.floats(1.0, 400.0))  # above 300 the fix is dropped anyway
        t += data.draw(st.floats(1.0, 120.0))
        fixes.append(sample(cf, *honest(data.draw, px, py, acc), at(t), acc)[0])
    _, fired = replay(fence, cf, fixes, prior)
    assert fired == []


# -- 3. a real crossing followed by a stay yields exactly one transition ---------------------
@SETTINGS
@given(fences(holes=False, multi=False), st.data())
def test_a_real_crossing_and_a_stay_fire_exactly_one_transition(
    fence: Fence, data: st.DataObject
) -> None:
    fence = dataclasses.replace(fence, dwell_s=data.draw(st.sampled_from([0.0, 45.0, 120.0])))
    cf = compile_fence(fence)
    cx, cy = centre_xy(cf)  # the star's centre: a ray from it crosses the boundary once
    _, d_centre = sample(cf, cx, cy, T0, 0.0)
    fence = dataclasses.replace(fence, margin_m=min(fence.margin_m, d_centre / 4))
    a = data.draw(st.floats(0, 2 * math.pi))
    reach = 2 * size_of(cf) + 2 * 150.0 + fence.margin_m + 10.0  # far from every edge
    far = (cx + reach * math.cos(a), cy + reach * math.sin(a))
    leaving = fence.kind == FenceKind.SAFE  # safe: walk out and stay; nogo: walk in and stay
    start, end = ((cx, cy), far) if leaving else (far, (cx, cy))
    stay_acc = 150.0 if leaving else min(150.0, (d_centre - fence.margin_m) / 2)

    fixes, t = [], 0.0
    if leaving:  # a real exit needs her seen inside first: one good fix at the centre
        fixes.append(sample(cf, cx, cy, T0, min(50.0, (d_centre - fence.margin_m) / 2))[0])
    for s in sorted(data.draw(st.lists(st.floats(0.0, 1.0), max_size=25))):  # monotone path
        x, y = start[0] + s * (end[0] - start[0]), start[1] + s * (end[1] - start[1])
        acc = data.draw(st.floats(1.0, 150.0))
        t += data.draw(st.floats(1.0, 60.0))
        fixes.append(sample(cf, *honest(data.draw, x, y, acc), at(t), acc)[0])
    first_stay = len(fixes)
    for _ in range(data.draw(st.integers(2, 10))):
        acc = data.draw(st.floats(1.0, max(1.0, stay_acc)))
        t += data.draw(st.floats(1.0, 60.0))
        fixes.append(sample(cf, *honest(data.draw, *end, acc), at(t), acc)[0])
    long_enough = fixes[first_stay].t + timedelta(seconds=fence.dwell_s)
    if fixes[-1].t < long_enough:  # the stay lasts at least the dwell
        fixes[-1] = fixes[-1]._replace(t=long_enough)
    _, fired = replay(fence, cf, fixes)
    assert [tr for tr, _ in fired] == [Transition.EXIT if leaving else Transition.ENTER]


# -- 4. the same fixes in any order yield no more transitions than in order -------------------
@st.composite
def scattered_fixes(draw: st.DrawFn, fence: Fence) -> list[FixSample]:
    """Fixes in and around the fence (about half inside), with distinct times, in order."""
    cf = compile_fence(fence)
    cx, cy = centre_xy(cf)
    anchors = anchors_of(cf)
    times = sorted(draw(st.lists(st.integers(0, 10_000), min_size=1, max_size=30, unique=True)))
    out = []
    for t in times:
        ax, ay = draw(st.sampled_from(anchors))
        s = draw(st.floats(0.0, 2.0))
        acc = draw(st.one_of(st.floats(1.0, 30.0), st.floats(1.0, 400.0)))
        out.append(sample(cf, cx + s * (ax - cx), cy + s * (ay - cy), at(t), acc)[0])
    return out


@SETTINGS
@given(fences(), st.data())
def test_fixes_delivered_in_any_order_fire_no_more_than_in_order(
    fence: Fence, data: st.DataObject
) -> None:
    fence = dataclasses.replace(fence, dwell_s=0.0)  # with a dwell it can be more: see below
    cf = compile_fence(fence)
    fixes = data.draw(scattered_fixes(fence))
    _, in_order = replay(fence, cf, fixes)
    shuffled = data.draw(st.permutations(fixes))
    _, one_by_one = replay(fence, cf, shuffled)
    assert len(one_by_one) <= len(in_order)

    # The same delivery through the batch engine, cut into batches anywhere.
    index = FenceIndex([fence], threads=1)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(shuffled)), max_size=4)))
    states: dict[tuple[str, str], FenceState] = {}
    newest: dict[str, datetime | None] = {}
    fired = 0
    for a, b in zip([0, *cuts], [*cuts, len(shuffled)], strict=True):
        batch = [DeviceFix("dev", fence.wearer_id, f) for f in shuffled[a:b]]
        out = decide_batch(index, batch, states, newest)
        states.update(out.changed)
        if batch:
            newest["dev"] = max(
                [*(df.fix.t for df in batch), *([newest["dev"]] if newest.get("dev") else [])]
            )
        fired += len(out.transitions)
    assert fired <= len(in_order)


@SETTINGS
@given(fences(), st.sampled_from([0.0, 30.0, 60.0]), st.data())
def test_one_batch_in_any_order_decides_exactly_as_in_order(
    fence: Fence, dwell: float, data: st.DataObject
) -> None:
    fence = dataclasses.replace(fence, dwell_s=dwell)
    cf = compile_fence(fence)
    fixes = data.draw(scattered_fixes(fence))
    _, in_order = replay(fence, cf, fixes)
    batch = [DeviceFix("dev", fence.wearer_id, f) for f in data.draw(st.permutations(fixes))]
    out = decide_batch(FenceIndex([fence], threads=1), batch, {}, {})
    assert [(d.transition, df.fix.t) for df, d in out.transitions] == in_order


def test_with_a_dwell_a_late_inside_fix_cannot_cancel_an_exit_already_counted():
    """Why property 4 holds only without a dwell: in order, the INSIDE fix at 30 s cancels
    the pending exit; delivered last, it is late and the exit has already fired. The engine
    cannot take back an alert; docs/geofences.md says so."""
    fence = square_fence(dwell_s=60.0)
    cf = compile_fence(fence)
    out_ = [sample(cf, 600.0, 0.0, at(t), 10.0)[0] for t in (0, 40, 70)]
    back_in = sample(cf, 0.0, 0.0, at(30), 10.0)[0]
    in_order = [out_[0], back_in, out_[1], out_[2]]
    assert replay(fence, cf, in_order, FenceState(inside=True))[1] == []
    late = [out_[0], out_[1], out_[2], back_in]
    assert replay(fence, cf, late, FenceState(inside=True))[1] == [(Transition.EXIT, at(70))]


# -- 5. a wearer never seen inside a safe fence is never reported leaving it -----------------
NIGHT = Schedule(tz="Asia/Shanghai", windows=(TimeWindow(time(21, 0), time(7, 0)),))


@SETTINGS
@given(fences(), st.sampled_from([None, NIGHT]), st.sampled_from([0.0, 60.0, 600.0]), st.data())
def test_a_wearer_definitely_outside_a_safe_fence_from_the_first_fix_never_exits(
    fence: Fence, schedule: Schedule | None, dwell: float, data: st.DataObject
) -> None:
    """Every fix definitely OUTSIDE (and some UNCERTAIN ones between them): nobody saw her in
    it, so nobody may be told she left, except when a schedule switches the fence on while she
    is out (the issue's rule: that raises the exit)."""
    fence = dataclasses.replace(fence, kind=FenceKind.SAFE, dwell_s=dwell, schedule=schedule)
    cf = compile_fence(fence)
    fixes, t = [], 0.0
    for seed in data.draw(st.lists(st.integers(0, 10_000), min_size=1, max_size=30)):
        t += data.draw(st.floats(1.0, 3 * 3600.0))  # over a day or two: windows open and close
        lat, lon = points_near(fence, 1, seed)
        acc = data.draw(st.floats(0.0, 300.0))
        fix = FixSample(at(t), float(lat[0]), float(lon[0]), acc)
        obs = observe(scalar_signed_distance(cf, fix.lat, fix.lon), acc, fence.margin_m)
        if obs is Observation.OUTSIDE or (obs is Observation.UNCERTAIN and fixes):
            fixes.append(fix)
    assume(fixes)
    _, fired = replay(fence, cf, fixes)
    batch = [DeviceFix("dev", fence.wearer_id, f) for f in data.draw(st.permutations(fixes))]
    out = decide_batch(FenceIndex([fence], threads=1), batch, {}, {})
    assert [(d.transition, df.fix.t) for df, d in out.transitions] == fired
    assert Transition.ENTER not in [tr for tr, _ in fired]
    for _, when in fired:  # an exit only after the schedule was seen off, then on
        assert any(not is_active(schedule, f.t) for f in fixes if f.t < when)
    if schedule is None:
        assert fired == []
