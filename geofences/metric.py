"""Metres, not degrees: the local frame each fence is compared in, and the scalar reference path.

Accuracy circles and margins are metres, so fences and fixes must be compared in metres. Each
fence gets its own equirectangular frame around the centre of its bounding box, with the WGS 84
radii of curvature at that latitude:

    x = (lon - lon0) * kx,   y = (lat - lat0) * ky      (metres east / north of the centre)

This map is *affine* in (lon, lat). So membership (inside / outside, holes included) is exactly
the membership of the GeoJSON polygon, whose edges RFC 7946 defines as straight lines in lon/lat;
only lengths are approximate. The east scale drifts with latitude by ``tan(lat0) * dlat``: a
distance measured ``R`` metres north or south of the centre is off by a relative
``tan(lat0) * R / 6.37e6`` (at Shanghai, 31°: 0.01 % at 1 km, 0.1 % at 10 km, i.e. 0.3 m on a
300 m accuracy radius at the edge of the largest allowed fence). See docs/geofences.md.

Circles need no polygon: the distance from the centre uses the scales at the *mid* latitude of
centre and fix: against Vincenty, under 1 mm for a 1 km radius, 0.6 m for the largest allowed
(50 km) at Shanghai's latitude, 3.4 m at 60°.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import shapely

from geofences.model import Fence

WGS84_A = 6_378_137.0
WGS84_E2 = 6.694_379_990_14e-3
DEG = math.pi / 180.0


def metres_per_degree(lat: float) -> tuple[float, float]:
    """(east, north) metres per degree of longitude / latitude at ``lat`` (WGS 84)."""
    s = math.sin(lat * DEG)
    w = 1.0 - WGS84_E2 * s * s
    n = WGS84_A / math.sqrt(w)  # prime vertical radius of curvature
    m = WGS84_A * (1.0 - WGS84_E2) / (w * math.sqrt(w))  # meridional radius of curvature
    return n * math.cos(lat * DEG) * DEG, m * DEG


def wrap_lon(dlon: Any) -> Any:
    """A longitude difference folded into [-180, 180), so a fence at the antimeridian works."""
    return (dlon + 180.0) % 360.0 - 180.0


@dataclass(frozen=True, slots=True)
class LocalFrame:
    """An equirectangular frame: metres east (x) and north (y) of (lat0, lon0)."""

    lat0: float
    lon0: float
    kx: float
    ky: float

    @classmethod
    def at(cls, lat0: float, lon0: float) -> LocalFrame:
        kx, ky = metres_per_degree(lat0)
        return cls(lat0, lon0, kx, ky)

    def project(self, lat: Any, lon: Any) -> tuple[Any, Any]:
        """(x, y) in metres; works on floats and on numpy arrays alike."""
        return wrap_lon(lon - self.lon0) * self.kx, (lat - self.lat0) * self.ky

    def unproject(self, x: Any, y: Any) -> tuple[Any, Any]:
        """(lat, lon) of a point given in this frame's metres."""
        return self.lat0 + y / self.ky, wrap_lon(self.lon0 + x / self.kx)


def geometry_positions(geometry: dict[str, Any]) -> list[list[float]]:
    """Every [lon, lat] position of a Point, Polygon or MultiPolygon (rings flattened)."""
    kind, coords = geometry["type"], geometry["coordinates"]
    if kind == "Point":
        return [coords]
    polygons = [coords] if kind == "Polygon" else coords
    return [p for poly in polygons for ring in poly for p in ring]


def frame_for(geometry: dict[str, Any]) -> LocalFrame:
    """The frame centred on the geometry's bounding box (in longitudes unwrapped around the
    first vertex, so a fence across the antimeridian gets a sensible centre)."""
    pos = np.asarray(geometry_positions(geometry), dtype=float)[:, :2]
    lon_ref = pos[0, 0]
    lons = lon_ref + wrap_lon(pos[:, 0] - lon_ref)
    lat0 = (pos[:, 1].min() + pos[:, 1].max()) / 2.0
    lon0 = float(wrap_lon((lons.min() + lons.max()) / 2.0))
    return LocalFrame.at(float(lat0), lon0)


def project_geometry(geometry: dict[str, Any], frame: LocalFrame) -> shapely.Geometry:
    """A GeoJSON Polygon / MultiPolygon as a Shapely geometry in ``frame`` metres."""

    def ring(r: list[list[float]]) -> np.ndarray:
        a = np.asarray(r, dtype=float)[:, :2]
        x, y = frame.project(a[:, 1], a[:, 0])
        return np.column_stack((x, y))

    def polygon(rings: list[list[list[float]]]) -> shapely.Polygon:
        return shapely.Polygon(ring(rings[0]), [ring(h) for h in rings[1:]])

    if geometry["type"] == "Polygon":
        return polygon(geometry["coordinates"])
    if geometry["type"] == "MultiPolygon":
        return shapely.MultiPolygon([polygon(p) for p in geometry["coordinates"]])
    raise ValueError(f"not an areal geometry: {geometry['type']}")


def circle_signed_distance(lat0: Any, lon0: Any, radius_m: Any, lat: Any, lon: Any) -> Any:
    """Signed distance (> 0 inside) from a fix to a circle's edge, scalar or numpy alike.

    Uses the radii of curvature at the mid latitude of centre and fix (second-order accurate)."""
    mid = (lat0 + lat) * (0.5 * DEG)
    s = np.sin(mid)
    w = 1.0 - WGS84_E2 * s * s
    n = WGS84_A / np.sqrt(w)
    m = WGS84_A * (1.0 - WGS84_E2) / (w * np.sqrt(w))
    dx = wrap_lon(lon - lon0) * (DEG * n * np.cos(mid))
    dy = (lat - lat0) * (DEG * m)
    return radius_m - np.hypot(dx, dy)


def _circle_scalar(lat0: float, lon0: float, radius_m: float, lat: float, lon: float) -> float:
    """``circle_signed_distance`` in plain floats (numpy ufuncs on scalars are 10x slower)."""
    mid = (lat0 + lat) * (0.5 * DEG)
    s = math.sin(mid)
    w = 1.0 - WGS84_E2 * s * s
    n = WGS84_A / math.sqrt(w)
    m = WGS84_A * (1.0 - WGS84_E2) / (w * math.sqrt(w))
    dx = wrap_lon(lon - lon0) * (DEG * n * math.cos(mid))
    dy = (lat - lat0) * (DEG * m)
    return radius_m - math.hypot(dx, dy)


@dataclass(frozen=True)
class CompiledFence:
    """A fence ready for metric tests: its frame and either a projected shape or a radius."""

    fence: Fence
    frame: LocalFrame
    shape: shapely.Geometry | None  # Polygon / MultiPolygon in frame metres; None for a circle
    radius_m: float | None

    @property
    def is_circle(self) -> bool:
        return self.shape is None


def compile_fence(fence: Fence) -> CompiledFence:
    """Project a fence into its own frame (not prepared: callers decide about preparing)."""
    frame = frame_for(fence.geometry)
    if fence.geometry["type"] == "Point":
        if fence.radius_m is None:
            raise ValueError(f"fence {fence.fence_id}: a Point needs radius_m")
        return CompiledFence(fence, frame, None, float(fence.radius_m))
    return CompiledFence(fence, frame, project_geometry(fence.geometry, frame), None)


def scalar_signed_distance(cf: CompiledFence, lat: float, lon: float) -> float:
    """The reference path, one pair at a time with scalar Shapely calls: what the vectorised
    engine must agree with, and the "naive loop" the benchmark compares against."""
    if cf.shape is None:
        lon_c, lat_c = cf.fence.geometry["coordinates"][:2]
        return _circle_scalar(lat_c, lon_c, cf.radius_m or 0.0, lat, lon)
    x, y = cf.frame.project(lat, lon)
    pt = shapely.Point(x, y)
    d = cf.shape.boundary.distance(pt)
    return d if pt.within(cf.shape) else -d
