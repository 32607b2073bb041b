"""Geometry checks for fence definitions, each problem a sentence a family's helper can act on.

A fence that is subtly wrong (swapped coordinates, a bow-tie polygon) does not fail loudly: it
silently never fires, or fires all day. So every check names what is wrong and where, and all
problems of a file are reported at once (the CLI prints them, the API answers 422 with them).
The property checks live in ``geojson.py``; this module knows only geometry.
"""

from __future__ import annotations

import math
import re
from typing import Any

import shapely

from geofences.metric import frame_for, project_geometry

MAX_VERTICES = 10_000
MIN_RADIUS_M, MAX_RADIUS_M = 10.0, 50_000.0
MIN_AREA_M2, MAX_AREA_M2 = 100.0, 100e6  # a small garden … a whole district (100 km²)
AREA_KINDS = ("Polygon", "MultiPolygon")
_REASON_AT = re.compile(r"^(?P<what>.*?)\s*\[(?P<x>\S+)\s+(?P<y>\S+)\]\s*$")


class FenceValidationError(ValueError):
    """Every problem found in a fence document, one human-readable line each."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = list(problems)


def fmt_coord(v: float) -> str:
    """121.48010000000001 → '121.4801': short enough to read, precise to about 1 cm."""
    text = f"{v:.7f}".rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def fmt_num(v: float) -> str:
    """1000000.0 → '1,000,000'; 2.5 → '2.5'."""
    return f"{v:,.0f}" if abs(v) >= 1000 else f"{v:g}"


def fmt_pos(lon: float, lat: float) -> str:
    return f"({fmt_coord(lon)}, {fmt_coord(lat)})"


def is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


def _is_position(p: Any) -> bool:
    return isinstance(p, list | tuple) and len(p) in (2, 3) and all(is_number(c) for c in p)


def _in_range(lon: float, lat: float) -> bool:
    return -180.0 <= lon <= 180.0 and -90.0 <= lat <= 90.0


def _check_ranges(positions: list[list[float]]) -> list[str]:
    """Out-of-range positions, or one 'looks swapped' line when swapping fixes them all."""
    bad = list(dict.fromkeys((p[0], p[1]) for p in positions if not _in_range(p[0], p[1])))
    if not bad:
        return []
    if all(_in_range(p[1], p[0]) for p in positions):
        lat, lon = bad[0][0], bad[0][1]
        return [f"coordinates look swapped: ({fmt_coord(lat)}, {fmt_coord(lon)}) is (lat, lon)"]
    more = f" (and {len(bad) - 1} more)" if len(bad) > 1 else ""
    return [
        f"position {fmt_pos(bad[0][0], bad[0][1])} is out of range (lon -180…180, lat -90…90){more}"
    ]


def _rings(kind: str, coords: Any) -> list[tuple[str, Any]] | str:
    """(label, ring) pairs of a Polygon / MultiPolygon, or why the nesting is wrong."""
    polygons = [coords] if kind == "Polygon" else coords
    if not isinstance(polygons, list) or not polygons:
        return f"{kind} coordinates must be a non-empty list"
    out: list[tuple[str, Any]] = []
    for j, poly in enumerate(polygons):
        prefix = "" if kind == "Polygon" else f"polygon {j} "
        if not isinstance(poly, list) or not poly:
            return f"{prefix or 'the polygon '}has no rings"
        out += [(f"{prefix}ring {i}", ring) for i, ring in enumerate(poly)]
    return out


def _check_rings(rings: list[tuple[str, Any]]) -> tuple[list[str], bool]:
    """Closure and distinct points per ring; the flag says whether every ring was at least a
    list of numeric positions (otherwise nothing further can be checked)."""
    problems: list[str] = []
    well_formed = True
    for label, ring in rings:
        if not isinstance(ring, list) or not ring:
            problems.append(f"{label} is not a list of [lon, lat] positions")
            well_formed = False
            continue
        bad = next((k for k, p in enumerate(ring) if not _is_position(p)), None)
        if bad is not None:
            problems.append(f"{label} position {bad} is not a [lon, lat] pair of numbers")
            well_formed = False
            continue
        first, last = ring[0], ring[-1]
        closed = len(ring) > 1 and tuple(first[:2]) == tuple(last[:2])
        if not closed:
            problems.append(
                f"{label} is not closed (first point {fmt_pos(*first[:2])} "
                f"!= last point {fmt_pos(*last[:2])})"
            )
        distinct = len({(p[0], p[1]) for p in ring})
        if distinct < 3:
            problems.append(f"{label} has {distinct} distinct points (a ring needs at least 3)")
    return problems, well_formed


def _topology_reason(reason: str, frame: Any) -> str:
    """Shapely's ``Self-intersection[x y]`` (frame metres) → a sentence in lon/lat."""
    m = _REASON_AT.match(reason)
    if not m:
        return f"invalid geometry: {reason}"
    lat, lon = frame.unproject(float(m["x"]), float(m["y"]))
    where = fmt_pos(lon, lat)
    what = m["what"].lower()
    if "self-intersection" in what:
        return f"self-intersection at {where}"
    if "outside shell" in what:
        return f"a hole lies outside its shell near {where}"
    if "nested" in what:
        return f"{what} near {where}"
    return f"invalid geometry: {what} at {where}"


def check_geometry(
    geometry: Any, radius_m: Any
) -> tuple[list[str], dict[str, Any] | None, float | None]:
    """Check a feature's geometry (and its ``radius_m``). Returns (problems, the geometry
    normalised to 2-D float lists, the radius); the geometry is None when problems exist."""
    if not isinstance(geometry, dict):
        return ["geometry is missing or not an object"], None, None
    kind = geometry.get("type")
    coords = geometry.get("coordinates")
    if kind == "Point":
        return _check_circle(coords, radius_m)
    if kind not in AREA_KINDS:
        return (
            [f"geometry type {kind!r} is not supported (Polygon, MultiPolygon, Point + radius_m)"],
            None,
            None,
        )
    problems: list[str] = []
    if radius_m is not None:
        problems.append("radius_m applies only to a Point (a circle); remove it")
    rings = _rings(kind, coords)
    if isinstance(rings, str):
        return [*problems, rings], None, None
    ring_problems, well_formed = _check_rings(rings)
    problems += ring_problems
    if not well_formed:
        return problems, None, None
    positions = [p for _, ring in rings for p in ring]
    problems += _check_ranges(positions)
    # Vertices, not positions: a closed ring repeats its first point.
    vertices = sum(len(r) - (len(r) > 1 and tuple(r[0][:2]) == tuple(r[-1][:2])) for _, r in rings)
    if vertices > MAX_VERTICES:
        problems.append(f"{vertices:,} vertices (at most {MAX_VERTICES:,})")
    if problems:
        return problems, None, None
    norm = _normalise(kind, coords)
    frame = frame_for(norm)
    shape = project_geometry(norm, frame)
    reason = shapely.is_valid_reason(shape)
    if reason != "Valid Geometry":
        return [_topology_reason(reason, frame)], None, None
    area = shape.area
    if area < MIN_AREA_M2:
        problems.append(f"area {area:,.0f} m² is below the minimum of {MIN_AREA_M2:,.0f} m²")
    elif area > MAX_AREA_M2:
        problems.append(
            f"area {area / 1e6:,.1f} km² is above the maximum of {MAX_AREA_M2 / 1e6:,.0f} km²"
        )
    return problems, (None if problems else norm), None


def _check_circle(
    coords: Any, radius_m: Any
) -> tuple[list[str], dict[str, Any] | None, float | None]:
    problems: list[str] = []
    if not _is_position(coords):
        problems.append("Point coordinates are not a [lon, lat] pair of numbers")
    else:
        problems += _check_ranges([coords])
    if radius_m is None:
        problems.append("a Point needs radius_m (the circle's radius in metres)")
    elif not is_number(radius_m):
        problems.append(f"radius_m {radius_m!r} is not a number")
    elif not MIN_RADIUS_M <= radius_m <= MAX_RADIUS_M:
        problems.append(
            f"radius_m {fmt_num(radius_m)} m is outside "
            f"{MIN_RADIUS_M:g} m … {MAX_RADIUS_M / 1000:g} km"
        )
    if problems:
        return problems, None, None
    norm = {"type": "Point", "coordinates": [float(coords[0]), float(coords[1])]}
    return [], norm, float(radius_m)


def _normalise(kind: str, coords: Any) -> dict[str, Any]:
    """2-D float lists, so a parsed fence compares equal to its round-trip."""

    def poly(p: list[Any]) -> list[list[list[float]]]:
        return [[[float(c[0]), float(c[1])] for c in ring] for ring in p]

    if kind == "Polygon":
        return {"type": "Polygon", "coordinates": poly(coords)}
    return {"type": "MultiPolygon", "coordinates": [poly(p) for p in coords]}
