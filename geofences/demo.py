"""The demo fences: a Shanghai neighbourhood on Suzhou Creek, one set per demo wearer.

The area is the residential strip north of Suzhou Creek between Changshou Road (Putuo) and
Chengdu North Road (Jing'an), where the North–South Elevated Road crosses the creek. The
outlines are hand-drawn from a map, WGS 84, good to some tens of metres: right for a demo, not
a survey. Every wearer gets its own copy of the shared places (fences belong to a wearer) and
a personal "home" fence, active at night.

``demo_home`` is the point the simulator puts each watch at, so simulated wearers live inside
their home fences; homes are spread deterministically (a Halton sequence) over the
neighbourhood, well clear of the no-go fences and the other places.

``python -m geofences.demo`` regenerates ``geofences/demo/shanghai.geojson``.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import uuid
import zlib
from collections.abc import Sequence
from datetime import time
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import shapely

from geofences.geojson import fence_to_feature
from geofences.metric import LocalFrame
from geofences.model import Fence, FenceKind, Schedule, TimeWindow

Pos = tuple[float, float]  # (lon, lat), as GeoJSON
DEMO_FILE = Path(__file__).with_name("demo") / "shanghai.geojson"
DEMO_WEARERS = [f"wearer-w{i:05d}" for i in range(1, 21)]
NAMESPACE = uuid.UUID("8a4b3c1e-6f0d-4d55-9a53-3a1f2b6c7d90")  # stable demo fence ids
FRAME = LocalFrame.at(31.2465, 121.4500)  # for building shapes in metres

NEIGHBOURHOOD: list[Pos] = [
    (121.4345, 31.2425), (121.4410, 31.2410), (121.4470, 31.2395), (121.4560, 31.2385),
    (121.4660, 31.2410), (121.4662, 31.2480), (121.4655, 31.2535), (121.4500, 31.2545),
    (121.4420, 31.2537), (121.4350, 31.2520), (121.4345, 31.2425),
]  # fmt: skip
SUZHOU_CREEK: list[Pos] = [
    (121.4335, 31.2437), (121.4372, 31.2452), (121.4410, 31.2466), (121.4445, 31.2462),
    (121.4468, 31.2440), (121.4480, 31.2416), (121.4512, 31.2402), (121.4552, 31.2405),
    (121.4590, 31.2418), (121.4628, 31.2426), (121.4670, 31.2434),
]  # fmt: skip
ELEVATED_SOUTH: list[Pos] = [(121.4628, 31.2372), (121.4626, 31.2417)]
ELEVATED_NORTH: list[Pos] = [(121.4625, 31.2436), (121.4623, 31.2500), (121.4620, 31.2552)]
PARK: list[Pos] = [
    (121.4510, 31.2476), (121.4531, 31.2472), (121.4551, 31.2477), (121.4554, 31.2492),
    (121.4546, 31.2503), (121.4524, 31.2505), (121.4509, 31.2497), (121.4510, 31.2476),
]  # fmt: skip
PARK_POND: list[Pos] = [
    (121.4522, 31.2484), (121.4535, 31.2483), (121.4537, 31.2491), (121.4524, 31.2493),
    (121.4522, 31.2484),
]  # fmt: skip
CLINIC: Pos = (121.4440, 31.2505)  # a community health service centre
CLINIC_RADIUS_M = 60.0
# A residential compound: big enough that a watch indoors at its centre with 30–50 m accuracy
# is decided INSIDE (acc + margin ≤ 100 m from the long edges), so the first-sight rule finds
# the wearer at home. Its corners reach HOME_REACH_M from the centre, whatever the rotation.
HOME_SIZE_M = (240.0, 200.0)
HOME_MARGIN_M = 10.0
HOME_REACH_M = math.hypot(*HOME_SIZE_M) / 2
HOME_CLEAR_M = 20.0  # between a home fence and the neighbourhood's edge, the park, the clinic
HOME_CLEAR_NOGO_M = 50.0  # between a home fence and a no-go fence
NIGHT = Schedule(tz="Asia/Shanghai", windows=(TimeWindow(time(21, 0), time(7, 0)),))


def _rounded(pos: Sequence[float]) -> list[float]:
    return [round(pos[0], 7), round(pos[1], 7)]


def _ring(points_xy: Sequence[tuple[float, float]]) -> list[list[float]]:
    """A closed GeoJSON ring from points in FRAME metres."""
    ring = []
    for x, y in points_xy:
        lat, lon = FRAME.unproject(x, y)
        ring.append(_rounded((lon, lat)))
    return [*ring, ring[0]]


def _xy(p: Pos) -> tuple[float, float]:
    return FRAME.project(p[1], p[0])


def band(line: Sequence[Pos], half_width_m: float) -> list[list[float]]:
    """A thin polygon ring along a polyline (mitred offsets; our lines turn gently)."""
    pts = [_xy(p) for p in line]
    left, right = [], []
    for i, (x, y) in enumerate(pts):
        normals = []
        for a, b in ((i - 1, i), (i, i + 1)):
            if a >= 0 and b < len(pts):
                dx, dy = pts[b][0] - pts[a][0], pts[b][1] - pts[a][1]
                n = math.hypot(dx, dy)
                normals.append((-dy / n, dx / n))
        nx, ny = (sum(c) for c in zip(*normals, strict=True))
        scale = half_width_m / (nx * normals[0][0] + ny * normals[0][1])
        left.append((x + nx * scale, y + ny * scale))
        right.append((x - nx * scale, y - ny * scale))
    return _ring(left + right[::-1])


def _polygon(points: Sequence[Pos]) -> list[list[float]]:
    return [_rounded(p) for p in points]


@lru_cache(maxsize=1)
def _home_area() -> tuple[shapely.Geometry, shapely.Geometry]:
    """Where home centres may be, in FRAME metres: far enough inside the neighbourhood that
    the whole home fence is in it with 20 m to spare, and not so near a no-go fence (50 m to
    spare), the park or the clinic (20 m) that the home fence would touch them."""

    def poly(ring: Sequence[Sequence[float]]) -> shapely.Polygon:
        return shapely.Polygon([_xy((p[0], p[1])) for p in ring])

    nogo = [poly(band(line, w)) for line, w in _NOGO_LINES]
    places = [poly(PARK), shapely.Point(_xy(CLINIC)).buffer(CLINIC_RADIUS_M)]
    excluded = shapely.union_all(
        [g.buffer(HOME_REACH_M + HOME_CLEAR_NOGO_M) for g in nogo]
        + [g.buffer(HOME_REACH_M + HOME_CLEAR_M) for g in places]
    )
    area = poly(NEIGHBOURHOOD).buffer(-(HOME_REACH_M + HOME_CLEAR_M))
    shapely.prepare(area)
    shapely.prepare(excluded)
    return area, excluded


_NOGO_LINES = ((SUZHOU_CREEK, 45.0), (ELEVATED_SOUTH, 18.0), (ELEVATED_NORTH, 18.0))
_HOMES: list[tuple[float, float]] = []  # the acceptable Halton points found so far (metres)
_NEXT_CANDIDATE = [1]


def _halton(i: np.ndarray, base: int) -> np.ndarray:
    """The radical inverse of each index: a low-discrepancy spread, the same on every run."""
    out, f, i = np.zeros(len(i)), 1.0, i.copy()
    while i.any():
        f /= base
        out += f * (i % base)
        i //= base
    return out


def _home_xy(k: int) -> tuple[float, float]:
    """The k-th (1-based) acceptable home, in FRAME metres (candidates tested in blocks)."""
    area, excluded = _home_area()
    minx, miny, maxx, maxy = area.bounds
    while len(_HOMES) < k:
        start = _NEXT_CANDIDATE[0]
        j = np.arange(start, start + 4096)
        x = minx + _halton(j, 2) * (maxx - minx)
        y = miny + _halton(j, 3) * (maxy - miny)
        ok = shapely.contains_xy(area, x, y) & ~shapely.contains_xy(excluded, x, y)
        _HOMES.extend(zip(x[ok].tolist(), y[ok].tolist(), strict=True))
        _NEXT_CANDIDATE[0] = start + 4096
    return _HOMES[k - 1]


def wearer_index(wearer: str | int) -> int:
    """1 for "wearer-w00001", "w00001" or 1; any other id maps to a stable index by hash."""
    if isinstance(wearer, int):
        return wearer
    m = re.fullmatch(r"(?:wearer-)?w(\d+)", wearer)
    if m and int(m[1]) > 0:
        return int(m[1])
    return zlib.crc32(wearer.encode()) % 1_000_000 + 1


def demo_home(wearer_id_or_index: str | int) -> tuple[float, float]:
    """(lat, lon) of a demo wearer's home: the centre of its home fence."""
    x, y = _home_xy(wearer_index(wearer_id_or_index))
    lat, lon = FRAME.unproject(x, y)
    return round(lat, 7), round(lon, 7)


def _home_ring(k: int) -> list[list[float]]:
    """The residential compound around home k, turned by a per-home angle."""
    cx, cy = _home_xy(k)
    w, h = HOME_SIZE_M[0] / 2, HOME_SIZE_M[1] / 2
    a = math.radians((k * 37) % 90)
    c, s = math.cos(a), math.sin(a)
    corners = [(-w, -h), (w, -h), (w, h), (-w, h)]
    return _ring([(cx + c * u - s * v, cy + s * u + c * v) for u, v in corners])


def demo_fences(wearer_id: str) -> list[Fence]:
    """The six demo fences of one wearer (ids are stable: uuid5 of wearer and place)."""

    def fence(slug: str, kind: FenceKind, geometry: dict[str, Any], **kw: Any) -> Fence:
        fid = str(uuid.uuid5(NAMESPACE, f"{wearer_id}/{slug}"))
        name = kw.pop("name", slug.replace("-", " "))
        dwell = kw.pop("dwell_s", 60.0 if kind is FenceKind.SAFE else 0.0)
        return Fence(fid, wearer_id, name, kind, geometry, dwell_s=dwell, **kw)

    def polygon(*rings: list[list[float]]) -> dict[str, Any]:
        return {"type": "Polygon", "coordinates": list(rings)}

    elevated = [[band(ELEVATED_SOUTH, 18.0)], [band(ELEVATED_NORTH, 18.0)]]
    return [
        fence("home", FenceKind.SAFE, polygon(_home_ring(wearer_index(wearer_id))),
              schedule=NIGHT, margin_m=HOME_MARGIN_M),
        fence("neighbourhood", FenceKind.SAFE, polygon(_polygon(NEIGHBOURHOOD))),
        fence("park", FenceKind.SAFE, polygon(_polygon(PARK), _polygon(PARK_POND))),
        fence("clinic", FenceKind.SAFE, {"type": "Point", "coordinates": _rounded(CLINIC)},
              radius_m=CLINIC_RADIUS_M),
        fence("river-bank", FenceKind.NOGO, polygon(band(SUZHOU_CREEK, 45.0))),
        fence("elevated-road", FenceKind.NOGO, {"type": "MultiPolygon", "coordinates": elevated}),
    ]  # fmt: skip


def demo_fence_collection(wearer_ids: Sequence[str]) -> dict[str, Any]:
    """A FeatureCollection with every demo wearer's fences (what the demo file holds)."""
    features = [fence_to_feature(f) for w in wearer_ids for f in demo_fences(w)]
    return {"type": "FeatureCollection", "features": features}


def write_demo_file(path: Path = DEMO_FILE, wearer_ids: Sequence[str] = DEMO_WEARERS) -> Path:
    """One feature per line: diffable, and small enough to read."""
    doc = demo_fence_collection(wearer_ids)
    lines = [json.dumps(f, ensure_ascii=False, separators=(",", ":")) for f in doc["features"]]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text('{"type":"FeatureCollection","features":[\n' + ",\n".join(lines) + "\n]}\n")
    return path


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Regenerate the demo fence file.")
    ap.add_argument("--out", type=Path, default=DEMO_FILE)
    ap.add_argument("--wearers", type=int, default=len(DEMO_WEARERS))
    args = ap.parse_args(argv)
    ids = [f"wearer-w{i:05d}" for i in range(1, args.wearers + 1)]
    print(write_demo_file(args.out, ids))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
