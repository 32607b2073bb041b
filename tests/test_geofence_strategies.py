"""Builders and Hypothesis strategies shared by the geofence tests (and a check that what they
build is what the validator accepts, so the other tests exercise realistic fences).

Fences are drawn in metres around a Shanghai origin and turned into GeoJSON; fixes are placed
in the *fence's own* frame (``compile_fence(f).frame``), so a test knows exactly where a fix
lies relative to the boundary and tests the decision rules, not the map projection (which
tests/test_geofence_engine.py checks against an independent geodesic formula).
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from geofences.geojson import fence_to_feature, fences_from_geojson
from geofences.metric import LocalFrame, compile_fence
from geofences.model import Fence, FenceKind, FixSample, Schedule

ORIGIN = LocalFrame.at(31.2304, 121.4737)
T0 = datetime(2025, 6, 2, 4, 0, tzinfo=UTC)  # Monday 12:00 in Shanghai


def ring(xy: list[tuple[float, float]], frame: LocalFrame = ORIGIN) -> list[list[float]]:
    """A closed GeoJSON ring from points in ``frame`` metres."""
    out = []
    for x, y in xy:
        lat, lon = frame.unproject(x, y)
        out.append([float(lon), float(lat)])
    return [*out, out[0]]


def square(half: float, cx: float = 0.0, cy: float = 0.0) -> list[tuple[float, float]]:
    return [
        (cx - half, cy - half),
        (cx + half, cy - half),
        (cx + half, cy + half),
        (cx - half, cy + half),
    ]


def make_fence(
    geometry: dict[str, Any],
    *,
    kind: str = "safe",
    radius_m: float | None = None,
    margin_m: float = 25.0,
    dwell_s: float | None = None,
    schedule: Schedule | None = None,
    fence_id: str = "fence-1",
    wearer_id: str = "wearer-1",
    version: int = 0,
) -> Fence:
    k = FenceKind(kind)
    dwell = dwell_s if dwell_s is not None else (60.0 if k is FenceKind.SAFE else 0.0)
    return Fence(
        fence_id, wearer_id, "test fence", k, geometry, radius_m, schedule, margin_m, dwell, version
    )


def square_fence(half: float = 200.0, **kw: Any) -> Fence:
    return make_fence({"type": "Polygon", "coordinates": [ring(square(half))]}, **kw)


def circle_fence(radius: float = 200.0, **kw: Any) -> Fence:
    lat, lon = ORIGIN.lat0, ORIGIN.lon0
    return make_fence({"type": "Point", "coordinates": [lon, lat]}, radius_m=radius, **kw)


def fix_xy(fence: Fence, x: float, y: float, t: datetime, acc: float) -> FixSample:
    """A fix at (x, y) metres in the fence's own frame."""
    lat, lon = compile_fence(fence).frame.unproject(x, y)
    return FixSample(t, float(lat), float(lon), acc)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


# -- strategies --------------------------------------------------------------------------------
@st.composite
def star_polygons(
    draw: st.DrawFn, min_radius: float = 60.0, max_radius: float = 1500.0
) -> tuple[float, list[tuple[float, float]]]:
    """(radius, vertices) of a simple polygon that is star-shaped around the origin: one
    vertex per equal sector, at 0.6–1.0 of the radius (so the origin is deep inside)."""
    n = draw(st.integers(5, 40))
    radius = draw(st.floats(min_radius, max_radius))
    offsets = draw(st.lists(st.floats(0.1, 0.9), min_size=n, max_size=n))
    radii = draw(st.lists(st.floats(0.6, 1.0), min_size=n, max_size=n))
    pts = []
    for i in range(n):
        a = (i + offsets[i]) * 2 * math.pi / n
        pts.append((radius * radii[i] * math.cos(a), radius * radii[i] * math.sin(a)))
    return radius, pts


@st.composite
def fences(
    draw: st.DrawFn, *, holes: bool = True, multi: bool = True, circles: bool = True
) -> Fence:
    """Random fences of every shape the engine supports, centred near ORIGIN."""
    shapes = (
        ["polygon"]
        + (["hole"] if holes else [])
        + (["multi"] if multi else [])
        + (["circle"] if circles else [])
    )
    shape = draw(st.sampled_from(shapes))
    kind = draw(st.sampled_from(["safe", "nogo"]))
    margin = draw(st.floats(0.0, 60.0))
    if shape == "circle":
        return circle_fence(draw(st.floats(10.0, 5000.0)), kind=kind, margin_m=margin)
    radius, shell = draw(star_polygons())
    rings = [ring(shell)]
    if shape == "hole":  # every edge is over 0.25 r from the centre: a square inside 0.2 r fits
        rings.append(ring(square(0.2 * radius / math.sqrt(2))[::-1]))
    if shape == "multi":
        _, other = draw(star_polygons(max_radius=radius))
        other = [(x + 2.2 * radius, y) for x, y in other]
        geometry = {"type": "MultiPolygon", "coordinates": [rings, [ring(other)]]}
    else:
        geometry = {"type": "Polygon", "coordinates": rings}
    return make_fence(geometry, kind=kind, margin_m=margin)


def points_near(fence: Fence, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """n random (lat, lon) within about three fence sizes of the fence (seeded numpy)."""
    cf = compile_fence(fence)
    size = (
        cf.radius_m
        if cf.shape is None
        else max(np.ptp(np.asarray(cf.shape.bounds).reshape(2, 2), axis=0))
    )
    rng = np.random.default_rng(seed)
    x, y = rng.uniform(-3, 3, n) * size, rng.uniform(-3, 3, n) * size
    lat, lon = cf.frame.unproject(x, y)
    return np.asarray(lat, dtype=float), np.asarray(lon, dtype=float)


@settings(max_examples=60, deadline=None)
@given(fences())
def test_generated_fences_pass_validation_and_round_trip(fence: Fence) -> None:
    feature = fence_to_feature(fence)
    (parsed,) = fences_from_geojson(feature)
    assert parsed == fence
