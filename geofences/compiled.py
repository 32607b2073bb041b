"""Many fences compiled in one vectorised pass: frames, radii and boundary chunks as arrays.

What ``FenceIndex`` stores per fence is what ``metric.compile_fence`` computes one fence at a
time (the frame centred on the bounding box, the geometry projected into it), minus the Shapely
polygon: the boundary goes straight into chunks (``segments.ring_chunks``). Per fence only the
GeoJSON is walked in Python (a list comprehension per ring); everything numeric — frames,
projection, chunks, their boxes — is one numpy call per batch. Compiling fence by fence was
~210 µs a fence, half of it numpy's per-call overhead on arrays of a dozen vertices.

A fence that cannot be compiled (malformed GeoJSON, a Point without a radius, non-finite
numbers, a ring of fewer than four positions) is left out and reported, so that one bad stored
row cannot take the whole cache down with it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np

from geofences.metric import metres_per_degree, wrap_lon
from geofences.model import Fence
from geofences.segments import grid_scale, ring_chunks

MALFORMED = (KeyError, IndexError, TypeError, ValueError, AttributeError)


class SkippedFence(NamedTuple):
    """A fence left out of the cache, and why (for the caller's log)."""

    fence_id: str
    reason: str


@dataclass(slots=True)
class CompiledFences:
    """Fences ready for the cache, in input order; per fence its frame, its radius (NaN for a
    polygon) and how many boundary chunks it has (0 for a circle); the chunks of every polygon,
    fence after fence."""

    fences: list[Fence]
    lat0: np.ndarray
    lon0: np.ndarray
    kx: np.ndarray
    ky: np.ndarray
    radius: np.ndarray
    scale: np.ndarray  # metres per step of the fence's int32 grid (segments.py)
    chunks: np.ndarray
    box: np.ndarray  # (4, chunks) int32 grid steps
    pts: np.ndarray  # (2, chunks, CHUNK + 1) int32 grid steps
    skipped: list[SkippedFence]

    def subset(self, keep: np.ndarray) -> CompiledFences:
        """Only the fences where ``keep`` (a bool mask) is set, with their chunks."""
        chunk_keep = np.repeat(keep, self.chunks)
        return CompiledFences(
            [f for f, k in zip(self.fences, keep.tolist(), strict=True) if k],
            self.lat0[keep], self.lon0[keep], self.kx[keep], self.ky[keep],
            self.radius[keep], self.scale[keep], self.chunks[keep],
            self.box[:, chunk_keep], self.pts[:, chunk_keep], self.skipped,
        )  # fmt: skip


def _rings(geometry: dict[str, Any]) -> list[Any]:
    """The rings of a Polygon or MultiPolygon, every part's one after another."""
    kind = geometry["type"]
    if kind == "Polygon":
        parts = [geometry["coordinates"]]
    elif kind == "MultiPolygon":
        parts = geometry["coordinates"]
    else:
        raise ValueError(f"geometry type {kind!r} is not a Point, Polygon or MultiPolygon")
    rings = [ring for part in parts for ring in part]
    if not rings:
        raise ValueError("the polygon has no rings")
    return rings


def compile_fences(fences: Sequence[Fence]) -> CompiledFences:
    """Compile ``fences`` together (see the module doc); broken ones go to ``skipped``."""
    ok: list[Fence] = []
    skipped: list[SkippedFence] = []
    centre: list[tuple[float, float, float]] = []  # (lat, lon, radius); NaN for a polygon
    n_coords: list[int] = []  # per fence (0 for a circle)
    ring_len: list[int] = []  # per ring of every polygon
    ring_fence: list[int] = []  # the index in ``ok`` of each ring's fence
    lon: list[float] = []
    lat: list[float] = []
    nan = float("nan")
    for f in fences:
        try:
            g = f.geometry
            if g["type"] == "Point":
                if f.radius_m is None:
                    raise ValueError("a Point needs radius_m")
                c = g["coordinates"]
                fence_centre = (float(c[1]), float(c[0]), float(f.radius_m))
                lons, lats, lens = [], [], []
            else:
                fence_centre, lons, lats, lens = (nan, nan, nan), [], [], []
                for ring in _rings(g):
                    if len(ring) < 4:
                        raise ValueError(f"a ring of {len(ring)} positions (at least 4)")
                    lons += [float(p[0]) for p in ring]
                    lats += [float(p[1]) for p in ring]
                    lens.append(len(ring))
        except MALFORMED as e:
            skipped.append(SkippedFence(getattr(f, "fence_id", "?"), f"{type(e).__name__}: {e}"))
            continue
        ring_fence += [len(ok)] * len(lens)
        ok.append(f)
        centre.append(fence_centre)
        n_coords.append(len(lons))
        ring_len += lens
        lon += lons
        lat += lats

    nf = len(ok)
    cen = np.array(centre, dtype=float).reshape(nf, 3)
    lat0, lon0, radius = cen[:, 0], wrap_lon(cen[:, 1]), cen[:, 2]
    counts = np.array(n_coords, dtype=np.intp)
    lon_a, lat_a = np.array(lon, dtype=float), np.array(lat, dtype=float)
    fence_of = np.repeat(np.arange(nf), counts)
    poly = np.flatnonzero(counts)
    if len(poly):
        # The frame of ``metric.frame_for``: the centre of the bounding box, longitudes
        # unwrapped around each fence's first vertex (a fence across the antimeridian).
        first = (np.cumsum(counts) - counts)[poly]
        ref = np.repeat(lon_a[first], counts[poly])
        lons = ref + wrap_lon(lon_a - ref)
        lat0[poly] = (np.minimum.reduceat(lat_a, first) + np.maximum.reduceat(lat_a, first)) / 2
        mid = (np.minimum.reduceat(lons, first) + np.maximum.reduceat(lons, first)) / 2
        lon0[poly] = wrap_lon(mid)
    # The scales per fence in scalar math, as ``metric.compile_fence`` computes them (numpy's
    # sin may differ in the last bit): the cache holds exactly the reference's coordinates.
    scales = np.array([metres_per_degree(v) for v in lat0.tolist()], dtype=float).reshape(nf, 2)
    kx, ky = scales[:, 0], scales[:, 1]
    x = wrap_lon(lon_a - lon0[fence_of]) * kx[fence_of]
    y = (lat_a - lat0[fence_of]) * ky[fence_of]
    broken = ~(np.isfinite(x) & np.isfinite(y))
    bad_coords = np.bincount(fence_of, broken.astype(float), minlength=nf) > 0
    x[broken], y[broken] = 0.0, 0.0  # such a fence is dropped below
    # Each fence's int32 grid (segments.py): its farthest vertex at ±QMAX steps.
    half = np.zeros(nf)
    if len(poly):
        half[poly] = np.maximum.reduceat(np.maximum(np.abs(x), np.abs(y)), first)
    scale = grid_scale(half)
    qx = np.rint(x / scale[fence_of]).astype(np.int32)
    qy = np.rint(y / scale[fence_of]).astype(np.int32)
    box, pts, per_ring = ring_chunks(qx, qy, np.array(ring_len, dtype=np.intp))
    chunks = np.bincount(np.array(ring_fence, dtype=np.intp), per_ring, minlength=nf)
    out = CompiledFences(
        ok, lat0, lon0, kx, ky, radius, scale, chunks.astype(np.intp), box, pts, skipped
    )

    circle = counts == 0
    bad = bad_coords | ~np.isfinite(lat0 + lon0) | (circle & ~np.isfinite(radius))
    if not bad.any():
        return out
    for i in np.flatnonzero(bad).tolist():
        skipped.append(SkippedFence(ok[i].fence_id, "non-finite coordinates or radius"))
    return out.subset(~bad)
