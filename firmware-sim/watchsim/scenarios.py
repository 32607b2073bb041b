"""Scripted wearers for geofence tests: the ordinary day replaced by one thing that happens.

``--wander IDX@S[:BEARING]`` (``WanderingWalker``): at home until simulated second S, then a
straight walk away from home at 1.2 m/s, outdoors, that never ends: a wearer leaving the home
fence. ``--stay IDX:LAT,LON:ACC`` (``StayingWalker``): indoors at one point for the whole run,
with wifi fixes that claim ACC metres and scatter as far as that claim allows: a wearer who
must not trigger a fence event however much the fixes jitter.

Both are ``Walker`` subclasses (same ``advance(t) -> Reading``, same seeded ``random.Random``),
so the watch firmware around them does not know it is running a script.
"""

from __future__ import annotations

import math
import random
from dataclasses import replace

from services.protocol import Source
from watchsim.walk import (
    SIGMA_PER_ACC,
    Activity,
    LatLon,
    Reading,
    WalkConfig,
    Walker,
    offset_m,
    wrap_deg,
)

WANDER_SPEED_MPS = 1.2
WANDER_ACC_M = (5.0, 15.0)
# A stay's fixes are redrawn beyond this many times their accuracy (about 1 % of draws).
STAY_CLIP_ACC = 2.0


class WanderingWalker(Walker):
    """At home (indoors, the usual home fixes) until ``wander_t``; from then on walking in a
    straight line from home along ``bearing_deg``: gps, accuracy 5–15 m, no destination, no
    return. The true distance from home grows by ``speed_mps`` every second."""

    def __init__(
        self,
        home: LatLon,
        rng: random.Random,
        config: WalkConfig | None = None,
        start_t: float = 0.0,
        *,
        wander_t: float,
        bearing_deg: float,
        speed_mps: float = WANDER_SPEED_MPS,
        acc_m: tuple[float, float] = WANDER_ACC_M,
    ) -> None:
        super().__init__(home, rng, replace(config or WalkConfig(), outdoor_acc_m=acc_m), start_t)
        self.wander_t = wander_t
        self.bearing_deg = wrap_deg(bearing_deg)
        self.wander_speed_mps = speed_mps
        self._until = math.inf  # no outing of the ordinary day before the wander

    def _simulate(self, t: float) -> None:
        if t < self.wander_t:
            self._t = t
            return
        if self._activity is not Activity.WALKING:
            self._activity = Activity.WALKING
            self._speed = self.wander_speed_mps
            self._heading = self.bearing_deg
        d = self.wander_speed_mps * (t - self.wander_t)
        b = math.radians(self.bearing_deg)
        self._pos = offset_m(self.home, d * math.cos(b), d * math.sin(b))
        self._t = t


class StayingWalker(Walker):
    """Indoors at ``point`` for the whole run. Every fix is wifi, claims exactly ``acc_m`` and
    is drawn independently around the point: a 2-D normal whose 68 % radius is ``acc_m`` (the
    protocol's meaning of ``acc``; per-axis sigma ≈ 0.66 × acc), redrawn beyond 2 × acc."""

    def __init__(
        self,
        home: LatLon,
        rng: random.Random,
        config: WalkConfig | None = None,
        start_t: float = 0.0,
        *,
        point: LatLon,
        acc_m: float,
    ) -> None:
        super().__init__(home, rng, config, start_t)
        if not acc_m > 0:
            raise ValueError("a stay's accuracy must be > 0 m")
        self.point = point
        self.acc_m = acc_m
        self._pos = point
        self._activity = Activity.PLACE
        self._place_indoors = True
        self._until = math.inf

    def _simulate(self, t: float) -> None:
        self._t = t

    def _read(self, t: float) -> Reading:
        sigma = self.acc_m * SIGMA_PER_ACC
        limit = STAY_CLIP_ACC * self.acc_m
        while True:
            north, east = self._rng.gauss(0.0, sigma), self._rng.gauss(0.0, sigma)
            if math.hypot(north, east) <= limit:
                break
        seen = offset_m(self.point, north, east)
        return Reading(
            t=t,
            lat=seen.lat,
            lon=seen.lon,
            acc=self.acc_m,
            src=Source.WIFI,
            spd=None,
            hdg=None,
            true=self.point,
            indoors=True,
            activity=Activity.PLACE,
        )
