"""Every rule of the fence decision, one test each (fence_decision / decide_one, no I/O).

The fence is a 400 m square (safe unless said otherwise) around a Shanghai origin; fixes are
placed in metres in the fence's own frame, so "30 m inside" means exactly that.
"""

from __future__ import annotations

import math
from datetime import time

import pytest

from geofences.decision import decide_one, fence_decision, observe
from geofences.model import (
    FenceState,
    FixSample,
    Observation,
    Schedule,
    TimeWindow,
    Transition,
)
from tests.test_geofence_strategies import at, circle_fence, fix_xy, make_fence, ring, square
from tests.test_geofence_strategies import square_fence as fence_

UNKNOWN = FenceState()
INSIDE = FenceState(inside=True, since=at(-600))
OUTSIDE = FenceState(inside=False, since=at(-600))
NIGHT = Schedule(tz="Asia/Shanghai", windows=(TimeWindow(time(21, 0), time(7, 0)),))
# at(0) is Monday 12:00 in Shanghai; at(9 * 3600) is Monday 21:00.
EVENING = 9 * 3600


def deep_in(f, t=0.0, acc=10.0) -> FixSample:
    return fix_xy(f, 0.0, 0.0, at(t), acc)  # 200 m from every edge


def far_out(f, t=0.0, acc=10.0) -> FixSample:
    return fix_xy(f, 600.0, 0.0, at(t), acc)  # 400 m east of the east edge


def run(f, fixes, prior=UNKNOWN, **kw):
    """Feed fixes one by one; return (final state, transitions with their fix time)."""
    state, fired = prior, []
    for fix in fixes:
        d = decide_one(f, state, fix, **kw)
        state = d.state
        if d.transition is not None:
            fired.append((d.transition, fix.t))
    return state, fired


# -- the observation ------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("d", "acc", "margin", "expected"),
    [
        (60.0, 10.0, 25.0, Observation.INSIDE),
        (35.0, 10.0, 25.0, Observation.INSIDE),  # exactly acc + margin: the circle fits
        (34.9, 10.0, 25.0, Observation.UNCERTAIN),
        (-35.0, 10.0, 25.0, Observation.OUTSIDE),
        (-34.9, 10.0, 25.0, Observation.UNCERTAIN),
        (0.0, 0.0, 0.0, Observation.UNCERTAIN),  # on the boundary: never definite
        (1e-9, 0.0, 0.0, Observation.INSIDE),
        (-300.0, 250.0, 25.0, Observation.OUTSIDE),
        (200.0, 250.0, 25.0, Observation.UNCERTAIN),  # inside, but the circle straddles
    ],
)
def test_observation_uses_the_accuracy_circle_widened_by_the_margin(d, acc, margin, expected):
    assert observe(d, acc, margin) is expected


def test_a_fix_30_m_inside_is_inside_only_if_its_circle_plus_margin_fits():
    f = fence_(margin_m=10.0)
    assert decide_one(f, UNKNOWN, fix_xy(f, 170.0, 0.0, at(0), 15.0)).observation == "inside"
    assert decide_one(f, UNKNOWN, fix_xy(f, 170.0, 0.0, at(0), 25.0)).observation == "uncertain"


def test_distance_is_signed_metres_to_the_nearest_edge():
    f = fence_()
    assert decide_one(f, UNKNOWN, fix_xy(f, 170.0, 0.0, at(0), 5.0)).distance_m == pytest.approx(
        30.0, abs=1e-6
    )
    assert decide_one(f, UNKNOWN, fix_xy(f, 0.0, -260.0, at(0), 5.0)).distance_m == pytest.approx(
        -60.0, abs=1e-6
    )


def test_a_point_in_a_hole_is_outside():
    geometry = {"type": "Polygon", "coordinates": [ring(square(200.0)), ring(square(50.0)[::-1])]}
    f = make_fence(geometry, margin_m=5.0)
    d = decide_one(f, INSIDE, fix_xy(f, 0.0, 0.0, at(0), 5.0))
    assert d.distance_m == pytest.approx(-50.0, abs=1e-6)
    assert d.observation is Observation.OUTSIDE


def test_circle_distance_is_radius_minus_distance_from_centre():
    f = circle_fence(100.0)
    assert decide_one(f, UNKNOWN, fix_xy(f, 30.0, 40.0, at(0), 5.0)).distance_m == pytest.approx(
        50.0, abs=1e-3
    )


# -- first sight: a never-decided state takes the first definite fix as it is ---------------
def test_first_inside_of_a_safe_fence_fires_nothing():
    d = decide_one(fence_(), UNKNOWN, deep_in(fence_()))
    assert d.transition is None
    assert d.state.inside is True and d.state.since == at(0)


def test_first_sight_outside_a_safe_fence_records_outside_and_fires_nothing():
    f = fence_(dwell_s=0.0)
    d = decide_one(f, UNKNOWN, far_out(f))
    assert d.transition is None
    assert d.state == FenceState(inside=False, since=at(0))


def test_first_sight_outside_counts_after_the_dwell_like_an_exit_but_fires_nothing():
    f = fence_(dwell_s=60.0)
    state, fired = run(f, [far_out(f, 0), far_out(f, 30)])
    assert fired == [] and state == FenceState(pending_exit_since=at(0))  # not yet decided
    state, fired = run(f, [far_out(f, 60)], state)
    assert fired == [] and state == FenceState(inside=False, since=at(0))


def test_one_stray_outside_fix_before_the_first_inside_fires_no_enter():
    """At home indoors, a cell fix that lands 300 m away, then a good wifi fix at home: she
    was home all along, and a family must not read "arrived home"."""
    f = fence_(dwell_s=60.0)
    stray, home = far_out(f, 0, acc=150.0), deep_in(f, 20, acc=30.0)
    state, fired = run(f, [stray, home])
    assert fired == [] and state == FenceState(inside=True, since=at(20))


def test_a_wearer_never_seen_in_a_safe_fence_never_gets_an_exit_however_long_she_is_out():
    """The demo's false alarm: the first fix far from the clinic, then an hour away from it."""
    for dwell in (0.0, 60.0):
        f = fence_(dwell_s=dwell)
        state, fired = run(f, [far_out(f, t) for t in range(0, 3600, 30)])
        assert fired == []
        assert state == FenceState(inside=False, since=at(0))


def test_uncertain_fixes_before_the_first_outside_do_not_make_it_an_exit():
    f = fence_(dwell_s=0.0)
    straddling = [fix_xy(f, 200.0, 0.0, at(t), 50.0) for t in (0, 30)]
    _, fired = run(f, [*straddling, far_out(f, 60), far_out(f, 120)])
    assert fired == []


def test_first_seen_outside_a_safe_fence_then_a_real_entry_and_exit_both_fire():
    f = fence_(dwell_s=0.0)
    _, fired = run(f, [far_out(f, 0), deep_in(f, 60), far_out(f, 120)])
    assert fired == [(Transition.ENTER, at(60)), (Transition.EXIT, at(120))]


def test_first_inside_of_a_nogo_fence_fires_enter_at_once():
    f = fence_(kind="nogo")
    d = decide_one(f, UNKNOWN, deep_in(f))
    assert d.transition is Transition.ENTER
    assert d.state == FenceState(inside=True, since=at(0))


def test_first_outside_of_a_nogo_fence_fires_nothing():
    f = fence_(kind="nogo")
    d = decide_one(f, UNKNOWN, far_out(f))
    assert d.transition is None and d.state == FenceState(inside=False, since=at(0))


@pytest.mark.parametrize("kind", ["safe", "nogo"])
def test_uncertain_on_an_unknown_state_leaves_it_unknown(kind):
    f = fence_(kind=kind)
    d = decide_one(f, UNKNOWN, fix_xy(f, 195.0, 0.0, at(0), 40.0))
    assert d.observation is Observation.UNCERTAIN
    assert d.transition is None and d.state == UNKNOWN


def test_an_unknown_state_with_an_exit_pending_from_before_the_rule_fires_nothing():
    """Stored by the old rules (unknown counted as inside): the pending run now counts as a
    first sight outside."""
    f = fence_(dwell_s=60.0)
    legacy = FenceState(pending_exit_since=at(-600), version=5)
    d = decide_one(f, legacy, far_out(f, 0))
    assert d.transition is None
    assert d.state == FenceState(inside=False, since=at(-600), version=5)
    d = decide_one(f, legacy, fix_xy(f, 200.0, 0.0, at(0), 50.0))  # UNCERTAIN: restarts
    assert d.state == FenceState(version=5)


# -- dwell -----------------------------------------------------------------------------------
def test_exit_fires_once_outside_observations_have_lasted_the_dwell():
    f = fence_(dwell_s=60.0)
    state, fired = run(f, [far_out(f, 0), far_out(f, 30), far_out(f, 59.9)], INSIDE)
    assert fired == [] and state.pending_exit_since == at(0)
    state, fired = run(f, [far_out(f, 60)], state)
    assert fired == [(Transition.EXIT, at(60))]
    assert state.inside is False and state.pending_exit_since is None
    assert state.since == at(0)  # outside since the first OUTSIDE fix of the run


def test_exit_with_zero_dwell_fires_on_the_first_outside():
    f = fence_(dwell_s=0.0)
    _, fired = run(f, [far_out(f, 0)], INSIDE)
    assert fired == [(Transition.EXIT, at(0))]


def test_an_inside_observation_cancels_a_pending_exit():
    f = fence_(dwell_s=60.0)
    state, fired = run(f, [far_out(f, 0), deep_in(f, 30), far_out(f, 70)], INSIDE)
    assert fired == []
    assert state.pending_exit_since == at(70)  # a new run started at 70
    _, fired = run(f, [far_out(f, 129)], state)
    assert fired == []


def test_uncertain_keeps_membership_but_restarts_a_pending_exit():
    f = fence_(dwell_s=60.0)
    straddling = fix_xy(f, 200.0, 0.0, at(30), 50.0)
    state, fired = run(f, [far_out(f, 0), straddling], INSIDE)
    assert fired == [] and state.inside is True and state.pending_exit_since is None
    state, fired = run(f, [far_out(f, 60)], state)
    assert fired == [] and state.pending_exit_since == at(60)  # the dwell starts again
    _, fired = run(f, [far_out(f, 120)], state)
    assert fired == [(Transition.EXIT, at(120))]


def test_uncertain_never_fires_even_after_the_dwell():
    f = fence_(dwell_s=60.0)
    straddling = [fix_xy(f, 200.0, 0.0, at(t), 50.0) for t in (60, 120, 600)]
    _, fired = run(f, [far_out(f, 0), *straddling], INSIDE)
    assert fired == []


def test_reentering_a_safe_fence_fires_enter():
    f = fence_()
    _, fired = run(f, [deep_in(f, 10)], OUTSIDE)
    assert fired == [(Transition.ENTER, at(10))]


def test_leaving_a_nogo_fence_fires_exit_too():
    f = fence_(kind="nogo")
    _, fired = run(f, [deep_in(f, 0), far_out(f, 10)])
    assert fired == [(Transition.ENTER, at(0)), (Transition.EXIT, at(10))]


def test_staying_outside_fires_one_exit_only():
    f = fence_(dwell_s=0.0)
    _, fired = run(f, [far_out(f, t) for t in range(0, 600, 30)], INSIDE)
    assert len(fired) == 1


# -- late and inaccurate fixes ------------------------------------------------------------------
@pytest.mark.parametrize("t", [-10.0, 0.0])
def test_a_fix_not_newer_than_the_newest_decided_drives_nothing(t):
    f = fence_(dwell_s=0.0)
    d = decide_one(f, INSIDE, far_out(f, t), newest_decided=at(0))
    assert d.ignored == "late"
    assert d.state is INSIDE and d.transition is None


def test_a_newer_fix_is_decided():
    f = fence_(dwell_s=0.0)
    d = decide_one(f, INSIDE, far_out(f, 1), newest_decided=at(0))
    assert d.ignored is None and d.transition is Transition.EXIT


@pytest.mark.parametrize("acc", [300.1, 5000.0, math.nan, -1.0])
def test_a_fix_with_accuracy_worse_than_the_maximum_drives_nothing(acc):
    f = fence_(dwell_s=0.0)
    d = decide_one(f, INSIDE, far_out(f, 0, acc=acc))
    assert d.ignored == "inaccurate"
    assert d.state is INSIDE and d.transition is None


def test_accuracy_exactly_at_the_maximum_is_used_and_the_maximum_is_configurable():
    f = circle_fence(50.0, dwell_s=0.0)
    far = fix_xy(f, 2000.0, 0.0, at(0), 300.0)
    assert decide_one(f, INSIDE, far).transition is Transition.EXIT
    assert decide_one(f, INSIDE, far, max_accuracy_m=100.0).ignored == "inaccurate"


# -- schedules ----------------------------------------------------------------------------------
def test_an_inactive_fence_drives_nothing_but_records_that_it_is_inactive():
    f = fence_(schedule=NIGHT, dwell_s=0.0)
    d = decide_one(f, INSIDE, far_out(f, 0))  # Monday 12:00 local
    assert d.ignored == "inactive" and d.transition is None
    assert d.state == FenceState(inside=True, since=INSIDE.since, active=False)
    again = decide_one(f, d.state, far_out(f, 60))
    assert again.state is d.state  # already recorded: no change


def test_activation_while_outside_a_safe_fence_raises_the_exit_after_the_dwell():
    f = fence_(schedule=NIGHT, dwell_s=60.0)
    inactive = FenceState(inside=False, since=at(-3600), active=False)  # left earlier today
    state, fired = run(f, [far_out(f, EVENING + 5)], inactive)  # 21:00:05, still out
    assert fired == [] and state.active and state.pending_exit_since == at(EVENING + 5)
    _, fired = run(f, [far_out(f, EVENING + 65)], state)
    assert fired == [(Transition.EXIT, at(EVENING + 65))]


def test_activation_with_zero_dwell_raises_the_exit_at_once():
    f = fence_(schedule=NIGHT, dwell_s=0.0)
    _, fired = run(f, [far_out(f, 0), far_out(f, EVENING + 1)], INSIDE)
    assert fired == [(Transition.EXIT, at(EVENING + 1))]


def test_activation_while_inside_fires_nothing():
    f = fence_(schedule=NIGHT)
    _, fired = run(f, [deep_in(f, 0), deep_in(f, EVENING + 1)], OUTSIDE)
    assert fired == []


def test_activation_of_a_never_decided_safe_fence_while_outside_raises_the_exit():
    """The issue's rule: a scheduled fence that becomes active while the wearer is already
    outside raises the exit, even if she was never seen in it (first fix by day, out)."""
    f = fence_(schedule=NIGHT, dwell_s=60.0)
    state, fired = run(f, [far_out(f, 0)])  # Monday 12:00: inactive, never decided
    assert fired == [] and state == FenceState(active=False)
    state, fired = run(f, [far_out(f, EVENING + 5), far_out(f, EVENING + 30)], state)
    assert fired == [] and state.pending_exit_since == at(EVENING + 5)
    state, fired = run(f, [far_out(f, EVENING + 65)], state)
    assert fired == [(Transition.EXIT, at(EVENING + 65))]
    assert state == FenceState(inside=False, since=at(EVENING + 5))


def test_a_scheduled_fence_first_seen_in_its_window_follows_the_first_sight_rule():
    """Not a switch-on: the first fix ever already falls in the window (a new fence, a new
    watch), so a wearer out of it was never seen in it and nothing fires."""
    f = fence_(schedule=NIGHT, dwell_s=0.0)
    state, fired = run(f, [far_out(f, EVENING + t) for t in (5, 60, 600)])
    assert fired == [] and state == FenceState(inside=False, since=at(EVENING + 5))


def test_activation_with_an_uncertain_fix_assumes_the_good_state():
    f = fence_(schedule=NIGHT)
    prior = FenceState(inside=False, since=at(-60), active=False, version=7)
    d = decide_one(f, prior, fix_xy(f, 200.0, 0.0, at(EVENING + 1), 50.0))
    assert d.transition is None
    assert d.state == FenceState(inside=True, since=at(EVENING + 1), version=7)


def test_the_good_state_assumed_at_activation_survives_uncertain_fixes():
    f = fence_(schedule=NIGHT, dwell_s=60.0)
    straddling = [fix_xy(f, 200.0, 0.0, at(EVENING + t), 50.0) for t in (1, 30)]
    out_ = [far_out(f, EVENING + t) for t in (60, 120)]
    _, fired = run(f, [*straddling, *out_], FenceState(active=False))
    assert fired == [(Transition.EXIT, at(EVENING + 120))]


def test_a_nogo_fence_switching_on_while_the_wearer_is_out_of_it_fires_nothing():
    f = fence_(kind="nogo", schedule=NIGHT)
    state, fired = run(f, [far_out(f, 0), far_out(f, EVENING + 1)])
    assert fired == [] and state == FenceState(inside=False, since=at(EVENING + 1))


def test_a_nogo_fence_switching_on_while_the_wearer_is_in_it_fires_enter():
    f = fence_(kind="nogo", schedule=NIGHT)
    _, fired = run(f, [deep_in(f, 0), deep_in(f, EVENING + 1)])
    assert fired == [(Transition.ENTER, at(EVENING + 1))]


# -- bookkeeping --------------------------------------------------------------------------------
def test_version_is_copied_through_every_path():
    f = fence_(schedule=NIGHT, dwell_s=0.0)
    prior = FenceState(inside=True, version=41)
    outcomes = [
        fence_decision(f, prior, far_out(f, EVENING + 1), -400.0),  # exit
        fence_decision(f, prior, far_out(f, 0), -400.0),  # inactive
        fence_decision(f, prior, far_out(f, EVENING + 1, acc=900), -400.0),  # inaccurate
        fence_decision(f, prior, far_out(f, EVENING + 1), -400.0, newest_decided=at(EVENING + 2)),
        fence_decision(f, FenceState(active=False, version=41), deep_in(f, EVENING + 1), 200.0),
    ]
    assert all(d.state.version == 41 for d in outcomes)


def test_the_decision_names_its_fence_and_carries_the_distance():
    f = fence_(fence_id="fence-xyz")
    d = fence_decision(f, UNKNOWN, deep_in(f), 123.5)
    assert d.fence_id == "fence-xyz" and d.distance_m == 123.5
