"""Privacy rules: coarse locations for caregivers, and how often the wearer is told who looked.
Pure."""

from __future__ import annotations

import math
from datetime import datetime, timedelta

COARSE_M = 500.0
NOTICE_EVERY = timedelta(minutes=10)
_M_PER_DEG_LAT = 111_320.0


def coarse(lat: float, lon: float, cell_m: float = COARSE_M) -> tuple[float, float, float]:
    """The centre of the ~``cell_m`` grid cell holding the point, and the accuracy to report
    (half the cell's diagonal: the true point is somewhere in the cell). Snapping to a fixed
    grid, rather than adding noise, means repeated looks cannot be averaged back to the truth."""
    dlat = cell_m / _M_PER_DEG_LAT
    dlon = cell_m / (_M_PER_DEG_LAT * max(math.cos(math.radians(lat)), 0.01))
    clat = (math.floor(lat / dlat) + 0.5) * dlat
    clon = (math.floor(lon / dlon) + 0.5) * dlon
    return max(-90.0, min(90.0, clat)), ((clon + 180.0) % 360.0) - 180.0, cell_m * math.sqrt(2) / 2


def notice_due(last_notice: datetime | None, now: datetime) -> bool:
    """The watch is told "your location was viewed by <name>" at most once per viewer per
    10 minutes: often enough to know, not so often that the watch nags."""
    return last_notice is None or now - last_notice >= NOTICE_EVERY
