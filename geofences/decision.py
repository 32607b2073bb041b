"""The fence decision: one fix, one fence, the prior state → the next state and maybe a transition.

Pure (no I/O, no clock): the ingestor, the batch engine and the tests call the same function.
It only *decides*; which transitions alert a family is the alert rules' business (Traccar keeps
GeofenceHandler and GeofenceEventHandler apart for the same reason).

    signed distance d (> 0 inside)      observation               state step
    ──────────────────────────────      ───────────               ──────────
    d ≥ acc + margin                →   INSIDE     →  inside; ENTER if it was outside;
                                                     cancels a pending exit
    d ≤ -(acc + margin)             →   OUTSIDE    →  was inside: start / continue the dwell,
                                                     EXIT once it has lasted dwell_s
    anything in between             →   UNCERTAIN  →  membership stands; a pending exit
                                                     restarts (the dwell must be unbroken)

First sight: a (device, fence) never decided (``inside`` None) is decided by what its fixes
say, with no assumption about before; the only event it can fire is entering a no-go fence:

    unknown + INSIDE    safe: inside, nothing fires        no-go: inside, ENTER (in danger)
    unknown + OUTSIDE   outside once OUTSIDE has lasted dwell_s (as for an exit, so that one
                        stray fix does not count), nothing fires: nobody "left the clinic" who
                        was never seen in it
    unknown + UNCERTAIN stays unknown (a pending run of OUTSIDE restarts)

A fence its schedule switches on is different: the wearer is taken to be in the good state
(inside a safe fence, outside a no-go fence) from that fix on, so a wearer already out of a
safe fence when it switches on raises the exit after the dwell. That assumption is recorded as
an ordinary state (``inside`` True or False, ``since`` the fix), so it survives UNCERTAIN
fixes and the store needs nothing new.
"""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any

import numpy as np

from geofences.metric import compile_fence, scalar_signed_distance
from geofences.model import (
    Decision,
    Fence,
    FenceKind,
    FenceState,
    FixSample,
    Observation,
    Transition,
)
from geofences.schedule import is_active

LATE = "late"
INACCURATE = "inaccurate"
INACTIVE = "inactive"


def observe(signed_distance_m: float, acc: float, margin_m: float) -> Observation:
    """What a fix says: definite only when its accuracy circle widened by the margin lies
    wholly on one side of the boundary. A fix exactly on the boundary is UNCERTAIN."""
    need = acc + margin_m
    if signed_distance_m > 0.0 and signed_distance_m >= need:
        return Observation.INSIDE
    if signed_distance_m < 0.0 and -signed_distance_m >= need:
        return Observation.OUTSIDE
    return Observation.UNCERTAIN


def observe_codes(
    signed_distance_m: np.ndarray, acc: np.ndarray, margin_m: np.ndarray
) -> np.ndarray:
    """``observe`` over arrays: 1 INSIDE, -1 OUTSIDE, 0 UNCERTAIN (int8), the same rule."""
    need = acc + margin_m
    d = signed_distance_m
    inside = (d > 0.0) & (d >= need)
    outside = (d < 0.0) & (-d >= need)
    return inside.astype(np.int8) - outside.astype(np.int8)


def fence_decision(
    fence: Fence,
    prior: FenceState,
    fix: FixSample,
    signed_distance_m: float,
    *,
    newest_decided: datetime | None = None,
    max_accuracy_m: float = 300.0,
) -> Decision:
    """One state step. ``newest_decided`` is the device's newest fix already seen: a fix not
    newer than it drives nothing ("late"); nor does one whose accuracy is worse than
    ``max_accuracy_m`` (or not a number) ("inaccurate"); nor one while the fence's schedule
    is off ("inactive": the state only records ``active=False``). ``prior.version`` is copied
    through untouched: it is the store's compare-and-set token."""
    obs = observe(signed_distance_m, fix.acc, fence.margin_m)

    def outcome(
        state: FenceState, transition: Transition | None = None, ignored: str | None = None
    ) -> Decision:
        return Decision(fence.fence_id, obs, signed_distance_m, state, transition, ignored)

    if newest_decided is not None and fix.t <= newest_decided:
        return outcome(prior, ignored=LATE)
    if not (0.0 <= fix.acc <= max_accuracy_m) or math.isnan(signed_distance_m):
        return outcome(prior, ignored=INACCURATE)
    if not is_active(fence.schedule, fix.t):
        state = _state(prior, prior.inside, prior.since, prior.pending_exit_since, active=False)
        return outcome(state if prior.active else prior, ignored=INACTIVE)

    # Switching on: the wearer is taken to be in the good state from now (see module doc).
    base = prior if prior.active else _switched_on(fence, prior, fix.t)
    state, transition = step(fence, base, obs, fix.t)
    return outcome(state, transition)


def _state(
    base: FenceState,
    inside: bool | None,
    since: datetime | None,
    pending: datetime | None,
    *,
    active: bool = True,
) -> FenceState:
    """A new state keeping ``base.version`` (a direct constructor: ``dataclasses.replace``
    was a fifth of the batch engine's time)."""
    return FenceState(inside, since, pending, active, base.version)


def _switched_on(fence: Fence, prior: FenceState, t: datetime) -> FenceState:
    """The state a fence starts from when its schedule switches on: the good state."""
    return FenceState(fence.kind == FenceKind.SAFE, t, None, True, prior.version)


def step(
    fence: Fence, base: FenceState, obs: Observation, t: datetime
) -> tuple[FenceState, Transition | None]:
    """The membership automaton for an active fence (``base`` already active)."""
    if obs is Observation.UNCERTAIN:
        # Membership (or its absence) stands, but a pending exit restarts. An exit counts only
        # after dwell_s of *uninterrupted* definite OUTSIDE fixes, so a watch indoors whose
        # jitter now and then lands a fix far outside never adds up two stray fixes into an exit.
        if base.pending_exit_since is not None:
            return _state(base, base.inside, base.since, None), None
        return base, None
    if obs is Observation.INSIDE:
        if base.inside is True:
            if base.pending_exit_since is not None:  # back in: the pending exit is cancelled
                return _state(base, True, base.since, None), None
            return base, None
        # From outside: ENTER. At first sight only into a no-go fence (see module doc).
        fires = base.inside is False or fence.kind == FenceKind.NOGO
        return _state(base, True, t, None), (Transition.ENTER if fires else None)
    # OUTSIDE, from inside or at first sight: it counts after dwell_s of unbroken OUTSIDE.
    if base.inside is False:
        return base, None
    start = base.pending_exit_since or t
    if (t - start).total_seconds() >= fence.dwell_s:
        # Outside since the first OUTSIDE fix of the run, not since the fix that counted; an
        # exit only if she was (or, at a switch-on, is taken to have been) inside.
        return _state(base, False, start, None), (Transition.EXIT if base.inside else None)
    if base.pending_exit_since is None:
        return _state(base, base.inside, base.since, start), None
    return base, None


def decide_one(fence: Fence, prior: FenceState, fix: FixSample, **kw: Any) -> Decision:
    """``fence_decision`` with the distance computed by the scalar reference path (for tests
    and one-off checks; the ingestor uses the vectorised engine in batches)."""
    d = scalar_signed_distance(compile_fence(fence), fix.lat, fix.lon)
    return fence_decision(fence, prior, fix, d, **kw)
