"""Where an elderly wearer is, and what a watch's receiver would report about it.

Pure and seeded: the same ``random.Random`` gives the same day, so a failing test or an odd
demo track can be replayed. The person's *true* position follows a simple day (home, a walk
to a nearby place, a stay there, the walk back; home at night); the *reported* position adds
receiver error whose size matches the accuracy the fix claims, because the backend's geofence
decisions trust that claim (design principle 4) and a simulator that lies about it would hide
bugs there.

Distances use a local equirectangular approximation: good to well under 1 % within the few
kilometres a walker covers, and far simpler than geodesics.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from enum import StrEnum

from services.protocol import Source

M_PER_DEG_LAT = 111_320.0
# "acc" is the 68 % radius. For an isotropic 2-D Gaussian with per-axis sigma s the radius r
# has P(r < R) = 1 - exp(-R² / 2s²); solving for 0.68 gives s = R / 1.5096.
SIGMA_PER_ACC = 1.0 / math.sqrt(2.0 * math.log(1.0 / 0.32))


@dataclass(frozen=True)
class LatLon:
    lat: float
    lon: float


SHANGHAI = LatLon(31.2304, 121.4737)


def offset_m(p: LatLon, north_m: float, east_m: float) -> LatLon:
    """``p`` moved by metres north and east (local flat-earth approximation)."""
    lat = p.lat + north_m / M_PER_DEG_LAT
    lon = p.lon + east_m / (M_PER_DEG_LAT * math.cos(math.radians(p.lat)))
    return LatLon(lat, lon)


def delta_m(a: LatLon, b: LatLon) -> tuple[float, float]:
    """(north, east) metres from ``a`` to ``b``."""
    north = (b.lat - a.lat) * M_PER_DEG_LAT
    east = (b.lon - a.lon) * M_PER_DEG_LAT * math.cos(math.radians((a.lat + b.lat) / 2))
    return north, east


def distance_m(a: LatLon, b: LatLon) -> float:
    return math.hypot(*delta_m(a, b))


def wrap_deg(x: float) -> float:
    """``x`` in [0, 360). ``-1e-15 % 360`` is 360.0 in floating point, hence the guard."""
    r = x % 360.0
    return 0.0 if r >= 360.0 else r


def bearing_deg(a: LatLon, b: LatLon) -> float:
    """Compass bearing from ``a`` to ``b``: 0 = north, 90 = east."""
    north, east = delta_m(a, b)
    return wrap_deg(math.degrees(math.atan2(east, north)))


def random_home(rng: random.Random, centre: LatLon = SHANGHAI, radius_m: float = 4000.0) -> LatLon:
    """A point uniformly distributed over a disc (sqrt for uniform area, not uniform radius)."""
    r = radius_m * math.sqrt(rng.random())
    a = rng.uniform(0.0, 2.0 * math.pi)
    return offset_m(centre, r * math.cos(a), r * math.sin(a))


class Activity(StrEnum):
    HOME = "home"
    WALKING = "walking"
    PLACE = "place"  # a park, a market, a friend's flat


@dataclass(frozen=True)
class WalkConfig:
    speed_mps: tuple[float, float] = (0.8, 1.3)
    # How far the places are from home: uniform in [min(trip_min_m, radius_m), radius_m]. The
    # true position never strays further than ``radius_m`` (plus a few metres of fidgeting).
    radius_m: float = 1500.0
    trip_min_m: float = 150.0
    home_stay_s: tuple[float, float] = (1200.0, 3 * 3600.0)
    place_stay_s: tuple[float, float] = (300.0, 2700.0)
    place_indoors_share: float = 0.4
    outdoor_acc_m: tuple[float, float] = (5.0, 25.0)
    indoor_acc_m: tuple[float, float] = (30.0, 150.0)
    utc_offset_h: float = 8.0  # the homes' local time: outings happen by day
    night: tuple[int, int] = (21, 7)  # local hours at home: from, until
    noise_tau_s: float = 20.0  # receiver error drifts rather than jumping fix to fix


# Indoors the watch falls back to wifi or cell positioning part of the time; each method has
# its own typical accuracy inside the indoor range.
_INDOOR_SOURCES: tuple[tuple[Source, float, float, float], ...] = (
    (Source.GPS, 0.5, 40.0, 150.0),
    (Source.WIFI, 0.35, 30.0, 80.0),
    (Source.CELL, 0.15, 100.0, 150.0),
)


@dataclass(frozen=True)
class Reading:
    """One receiver output. ``true``, ``indoors`` and ``activity`` are for tests, not the wire."""

    t: float
    lat: float
    lon: float
    acc: float
    src: Source
    spd: float | None
    hdg: float | None
    true: LatLon
    indoors: bool
    activity: Activity


class Walker:
    """The wearer's day, advanced by ``advance(t)`` with any time step (even hours).

    ``config.radius_m`` bounds the day: 1500 m by default, a few hundred metres for the demo
    homes so that an ordinary day stays inside the demo neighbourhood fence. Subclasses in
    ``scenarios.py`` replace the day by a scripted one (wander off, stay put)."""

    def __init__(
        self,
        home: LatLon,
        rng: random.Random,
        config: WalkConfig | None = None,
        start_t: float = 0.0,
    ) -> None:
        self.home = home
        self.cfg = config or WalkConfig()
        self._rng = rng
        self._t = start_t
        self._pos = home
        self._activity = Activity.HOME
        self._until = start_t + rng.uniform(0.0, 1800.0)  # stagger the first outings
        self._target = home
        self._speed = rng.uniform(*self.cfg.speed_mps)
        self._heading = 0.0
        self._place_indoors = False
        self._last_reading_t: float | None = None
        self._src = Source.GPS
        self._acc = 0.0
        self._zn = rng.gauss(0.0, 1.0)
        self._ze = rng.gauss(0.0, 1.0)
        self._env: tuple[bool, Source] | None = None

    @property
    def activity(self) -> Activity:
        return self._activity

    @property
    def at_home(self) -> bool:
        return self._activity is Activity.HOME

    def is_night(self, t: float) -> bool:
        hour = ((t / 3600.0) + self.cfg.utc_offset_h) % 24.0
        start, end = self.cfg.night
        return hour >= start or hour < end

    def advance(self, t: float) -> Reading:
        """Move the person to time ``t`` (never backwards) and return what the watch reports."""
        self._simulate(max(t, self._t))
        return self._read(self._t)

    # --- the true position -------------------------------------------------------------

    def _simulate(self, t: float) -> None:
        while self._t < t:
            if self._activity is Activity.WALKING:
                left = distance_m(self._pos, self._target)
                arrive_in = left / self._speed
                step = min(t - self._t, arrive_in)
                if step >= arrive_in:
                    self._pos = self._target
                    self._t += arrive_in
                    self._arrive()
                else:
                    north, east = delta_m(self._pos, self._target)
                    f = step * self._speed / left
                    self._pos = offset_m(self._pos, north * f, east * f)
                    self._t += step
            else:
                step = min(t - self._t, self._until - self._t)
                self._t += step
                if self._t >= self._until:
                    self._depart()

    def _arrive(self) -> None:
        if self._target == self.home:
            self._activity = Activity.HOME
            self._until = self._t + self._rng.uniform(*self.cfg.home_stay_s)
        else:
            self._activity = Activity.PLACE
            self._place_indoors = self._rng.random() < self.cfg.place_indoors_share
            self._until = self._t + self._rng.uniform(*self.cfg.place_stay_s)

    def _depart(self) -> None:
        if self._activity is Activity.PLACE:
            self._walk_to(self.home)
            return
        if self.is_night(self._t):  # stay home until a little after the night ends
            night_end = self.cfg.night[1]
            local_h = ((self._t / 3600.0) + self.cfg.utc_offset_h) % 24.0
            wait_h = (night_end - local_h) % 24.0
            self._until = self._t + wait_h * 3600.0 + self._rng.uniform(0.0, 5400.0)
            return
        d = self._rng.uniform(min(self.cfg.trip_min_m, self.cfg.radius_m), self.cfg.radius_m)
        a = self._rng.uniform(0.0, 2.0 * math.pi)
        self._walk_to(offset_m(self.home, d * math.cos(a), d * math.sin(a)))

    def _walk_to(self, target: LatLon) -> None:
        self._activity = Activity.WALKING
        self._target = target
        self._speed = self._rng.uniform(*self.cfg.speed_mps)
        self._heading = bearing_deg(self._pos, target)

    # --- what the receiver reports -----------------------------------------------------

    def _indoors(self) -> bool:
        return self._activity is Activity.HOME or (
            self._activity is Activity.PLACE and self._place_indoors
        )

    def _read(self, t: float) -> Reading:
        rng = self._rng
        indoors = self._indoors()
        # Stationary people still move about a flat or a park bench: a few metres of wander.
        true = self._pos
        if self._activity is not Activity.WALKING:
            true = offset_m(self._pos, rng.gauss(0.0, 4.0), rng.gauss(0.0, 4.0))

        if indoors:
            src = self._src if self._env and self._env[0] and rng.random() > 0.1 else None
            if src is None:
                r, acc_sum = rng.random(), 0.0
                src = _INDOOR_SOURCES[-1][0]
                for s, share, _, _ in _INDOOR_SOURCES:
                    acc_sum += share
                    if r < acc_sum:
                        src = s
                        break
            lo, hi = next((lo, hi) for s, _, lo, hi in _INDOOR_SOURCES if s is src)
        else:
            src = Source.GPS
            lo, hi = self.cfg.outdoor_acc_m

        dt = t - self._last_reading_t if self._last_reading_t is not None else math.inf
        if self._env != (indoors, src):  # a new positioning method: fresh error and accuracy
            self._env = (indoors, src)
            self._src = src
            self._acc = rng.uniform(lo, hi)
            dt = math.inf
        else:  # accuracy wanders inside its range
            self._acc = min(hi, max(lo, self._acc + rng.gauss(0.0, 0.08 * (hi - lo))))
        a = math.exp(-dt / self.cfg.noise_tau_s) if math.isfinite(dt) else 0.0
        k = math.sqrt(1.0 - a * a)
        self._zn = a * self._zn + k * rng.gauss(0.0, 1.0)
        self._ze = a * self._ze + k * rng.gauss(0.0, 1.0)
        self._last_reading_t = t
        sigma = self._acc * SIGMA_PER_ACC
        seen = offset_m(true, self._zn * sigma, self._ze * sigma)

        spd: float | None = None
        hdg: float | None = None
        if src is Source.GPS:
            if self._activity is Activity.WALKING:
                spd = max(0.0, self._speed + rng.gauss(0.0, 0.1))
                hdg = wrap_deg(self._heading + rng.gauss(0.0, 4.0))
            else:  # a still receiver reports a little speed and no meaningful heading
                spd = abs(rng.gauss(0.0, 0.05))
        return Reading(
            t=t,
            lat=seen.lat,
            lon=seen.lon,
            acc=self._acc,
            src=src,
            spd=spd,
            hdg=hdg,
            true=true,
            indoors=indoors,
            activity=self._activity,
        )
