"""What a fence is, and what the decision engine remembers per (device, fence).

Plain frozen dataclasses with no I/O: the API, the CLI, the ingestor and the tests all build
and read these, and only these. What the ingestor makes once a fix or a stored state (a fix's
sample, a device's fix, a state) are named tuples instead: made in about a third of the time,
and as immutable. ``slots=True``: the ingestor's fence cache holds one ``Fence``
per fence (300,000 for a fleet of 100,000), and a slotted instance is about half the size of
one with a ``__dict__``; nothing here relies on ``__dict__``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, time
from enum import StrEnum
from typing import Any, NamedTuple


class FenceKind(StrEnum):
    SAFE = "safe"  # alert when the wearer leaves it (home, the park)
    NOGO = "nogo"  # alert when the wearer enters it (the river bank, the highway)


class Observation(StrEnum):
    """What one fix says about one fence, given its accuracy and the fence's margin."""

    INSIDE = "inside"  # the accuracy circle widened by the margin lies wholly inside
    OUTSIDE = "outside"  # ... wholly outside
    UNCERTAIN = "uncertain"  # it straddles the boundary: the prior state stands


class Transition(StrEnum):
    ENTER = "enter"
    EXIT = "exit"


@dataclass(frozen=True, slots=True)
class TimeWindow:
    """Local wall-clock window; ``end <= start`` means it runs past midnight (21:00–07:00)."""

    start: time
    end: time


@dataclass(frozen=True, slots=True)
class Schedule:
    """When a fence is active, in the wearer's IANA time zone. A window that runs past
    midnight belongs to the weekday on which it starts."""

    tz: str
    weekdays: frozenset[int] = frozenset(range(7))  # 0 = Monday
    windows: tuple[TimeWindow, ...] = ()


@dataclass(frozen=True, slots=True)
class Fence:
    """One fence as the family defined it. Geometry is GeoJSON (lon/lat, WGS 84): a Polygon
    (holes allowed), a MultiPolygon, or a Point with ``radius_m`` (a circle).

    ``geometry`` is None only in the fences ``FenceIndex`` hands out: the cache keeps the
    compiled shape, not the GeoJSON (most of a fence's memory), and its callers want only the
    rest (ids, kind, name, margin, dwell, schedule)."""

    fence_id: str
    wearer_id: str
    name: str
    kind: FenceKind
    geometry: dict[str, Any] | None
    radius_m: float | None = None
    schedule: Schedule | None = None
    margin_m: float = 25.0
    dwell_s: float = 60.0  # how long a wearer must be seen outside before an exit counts
    version: int = 0


class FenceState(NamedTuple):
    """What the engine remembers per (device, fence) between fixes.

    ``inside`` is the last definite membership, or the good state assumed when the fence's
    schedule switched on (None: never decided). ``pending_exit_since`` is the device time of
    the first OUTSIDE observation of a dwell that has not yet counted. ``active`` is whether
    the fence's schedule was on at the last decision, so that switching on while the wearer
    is already out raises the exit."""

    inside: bool | None = None
    since: datetime | None = None
    pending_exit_since: datetime | None = None
    active: bool = True
    version: int = 0  # compare-and-set token for the store; the engine never changes it


class FixSample(NamedTuple):
    """The part of a fix the fence engine needs."""

    t: datetime
    lat: float
    lon: float
    acc: float  # metres


@dataclass(frozen=True, slots=True)
class Decision:
    """The outcome of one fix against one fence."""

    fence_id: str
    observation: Observation
    distance_m: float  # signed distance from the fix to the boundary: > 0 inside, < 0 outside
    state: FenceState  # the state after this fix (may equal the prior)
    transition: Transition | None = None
    ignored: str | None = None  # why the fix drove nothing (late, too inaccurate), if it did not


class DeviceFix(NamedTuple):
    """A fix of one device, for a batch decision."""

    device_id: str
    wearer_id: str
    fix: FixSample


@dataclass(slots=True)
class BatchDecisions:
    """Per (device_id, fence_id): the new state if it changed, and the transitions fired,
    each with the fix that fired it and its distance to the boundary."""

    changed: dict[tuple[str, str], FenceState] = field(default_factory=dict)
    transitions: list[tuple[DeviceFix, Decision]] = field(default_factory=list)
    decisions: int = 0
