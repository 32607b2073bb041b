"""The benchmark fleet's fences: three per wearer, placed around the walk each device's fixes
follow (``bench.payloads.fix``), so that the ingestor really decides something for every fix.

What a family draws for an elderly wearer, by our demo and the product's screens:
- **home**, a safe circle of 60–250 m around where the walk starts: most fixes fall inside
  it, the smaller ones leave fixes "uncertain" (the accuracy circle straddles the edge);
- **park**, a safe polygon of 6–12 vertices 250–700 m away, one in ten with a pond (a hole):
  the wearer is outside it, which the first fix records after the dwell, with no event;
- **river**, a no-go strip 40–80 m wide and 500–900 m long, 200–700 m away; for one wearer in
  fifty it is a construction site across the walk instead, so their first fixes *enter* a
  no-go fence: events, alerts and outbox rows come with the load, as they would in a fleet.

Deterministic per device (``random.Random(device)``), loaded with one COPY: 300,000 fences for
100,000 devices take seconds, where the API's one-at-a-time path would take minutes.

A running fleet has a state for every (device, fence) already: ``seed_fence_states`` gives
each wearer what the engine itself concluded from two good fixes at home yesterday, so a phase
measures the steady state, where most fixes only confirm what is known. The wearers who walk
into a construction site start with no state: they are the fleet's newcomers, decided from
their first fix (first sight), and their entries raise alerts.
"""

from __future__ import annotations

import math
import random
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import psycopg
from psycopg.types.json import Jsonb

from bench.payloads import walk_origin
from geofences.batch import decide_batch
from geofences.engine import FenceIndex
from geofences.geojson import fence_to_feature
from geofences.metric import metres_per_degree
from geofences.model import DeviceFix, Fence, FenceKind, FenceState, FixSample
from services.storage.provisioning import demo_device_id

NOGO_ON_WALK_EVERY = 50  # one wearer in this many walks into a no-go fence


def _offset(lat: float, lon: float, north_m: float, east_m: float) -> list[float]:
    """[lon, lat] — GeoJSON order — of the point ``north_m``/``east_m`` from (lat, lon)."""
    east_per_deg, north_per_deg = metres_per_degree(lat)
    return [round(lon + east_m / east_per_deg, 7), round(lat + north_m / north_per_deg, 7)]


def _ring(lat: float, lon: float, radii: list[float], turn: float = 0.0) -> list[list[float]]:
    """A closed ring of len(radii) vertices at even bearings (a star-shaped, simple ring)."""
    step = 2 * math.pi / len(radii)
    pts = [
        _offset(lat, lon, r * math.cos(turn + i * step), r * math.sin(turn + i * step))
        for i, r in enumerate(radii)
    ]
    return [*pts, pts[0]]


def _strip(
    lat: float, lon: float, length: float, width: float, bearing: float
) -> list[list[float]]:
    """A bent strip (a river bank, a highway): six vertices, counter-clockwise."""
    ux, uy = math.sin(bearing), math.cos(bearing)  # along (east, north)
    vx, vy = -uy, ux  # across
    half, bend = length / 2, width * 0.8
    along = [(-half, 0.0), (0.0, bend), (half, 0.0)]
    left = [(a * ux + (b + width / 2) * vx, a * uy + (b + width / 2) * vy) for a, b in along]
    right = [(a * ux + (b - width / 2) * vx, a * uy + (b - width / 2) * vy) for a, b in along]
    pts = [_offset(lat, lon, n, e) for e, n in [*right, *reversed(left)]]
    return [*pts, pts[0]]


def fences_for(device: int) -> list[Fence]:
    """The three fences of the wearer of device index ``device``."""
    rng = random.Random(device)
    wearer = f"wearer-{demo_device_id(device + 1)}"
    lat, lon = walk_origin(device)

    def fid() -> str:
        return str(uuid.UUID(int=rng.getrandbits(128), version=4))

    def away(lo: float, hi: float) -> tuple[float, float]:
        d, b = rng.uniform(lo, hi), rng.uniform(0, 2 * math.pi)
        east, north = d * math.sin(b), d * math.cos(b)
        lon_c, lat_c = _offset(lat, lon, north, east)
        return lat_c, lon_c

    home_lon, home_lat = _offset(lat, lon, rng.uniform(-30, 30), rng.uniform(-30, 30))
    home = Fence(fid(), wearer, "home", FenceKind.SAFE,
                 {"type": "Point", "coordinates": [home_lon, home_lat]},
                 radius_m=round(rng.uniform(60, 250)))  # fmt: skip

    p_lat, p_lon = away(250, 700)
    size = rng.uniform(80, 200)
    outer = _ring(p_lat, p_lon, [size * rng.uniform(0.7, 1.0) for _ in range(rng.randint(6, 12))])
    rings = [outer]
    if rng.random() < 0.1:  # a pond in the park: a hole, clockwise
        rings.append(list(reversed(_ring(p_lat, p_lon, [size * 0.3] * 6))))
    park = Fence(fid(), wearer, "park", FenceKind.SAFE, {"type": "Polygon", "coordinates": rings})

    if device % NOGO_ON_WALK_EVERY == 0:
        site = _ring(lat, lon, [300.0] * 8, turn=rng.uniform(0, 1))
        nogo = Fence(fid(), wearer, "construction site", FenceKind.NOGO,
                     {"type": "Polygon", "coordinates": [site]})  # fmt: skip
    else:
        r_lat, r_lon = away(200, 700)
        strip = _strip(r_lat, r_lon, rng.uniform(500, 900), rng.uniform(40, 80),
                       rng.uniform(0, math.pi))  # fmt: skip
        nogo = Fence(fid(), wearer, "river", FenceKind.NOGO,
                     {"type": "Polygon", "coordinates": [strip]})  # fmt: skip
    return [home, park, nogo]


def fleet_fences(devices: int, per_device: int = 3) -> Iterator[Fence]:
    for d in range(devices):
        yield from fences_for(d)[:per_device]


def load_fleet_fences(conn: psycopg.Connection, devices: int, per_device: int = 3) -> int:
    """COPY the fleet's fences into ``fences`` (each takes a version, as the API's do)."""
    n = 0
    sql = "COPY fences (fence_id, wearer_id, name, kind, feature) FROM STDIN"
    with conn.transaction(), conn.cursor() as cur, cur.copy(sql) as cp:
        for f in fleet_fences(devices, per_device):
            cp.write_row((f.fence_id, f.wearer_id, f.name, f.kind.value,
                          Jsonb(fence_to_feature(f))))  # fmt: skip
            n += 1
    return n


SEED_TABLE = "bench_fence_state_seed"


def steady_states(devices: int, per_device: int = 3) -> dict[tuple[str, str], FenceState]:
    """What the engine concluded for each settled wearer from two good fixes (5 m) at the
    start of their walk, an hour apart, yesterday: past every dwell."""
    index = FenceIndex(fleet_fences(devices, per_device))
    settled = [d for d in range(devices) if d % NOGO_ON_WALK_EVERY]
    yesterday = datetime.now(UTC).replace(microsecond=0) - timedelta(days=1)
    states: dict[tuple[str, str], FenceState] = {}
    newest: dict[str, datetime | None] = {}
    for t in (yesterday, yesterday + timedelta(hours=1)):
        fixes = []
        for d in settled:
            lat, lon = walk_origin(d)
            device_id = demo_device_id(d + 1)
            fixes.append(DeviceFix(device_id, f"wearer-{device_id}", FixSample(t, lat, lon, 5.0)))
        states.update(decide_batch(index, fixes, states, newest).changed)
        newest = dict.fromkeys(newest.keys() | {f.device_id for f in fixes}, t)
    return states


def seed_fence_states(conn: psycopg.Connection, devices: int, per_device: int = 3) -> int:
    """Store ``steady_states`` in ``fence_state``, and a copy that ``restore_fence_states``
    puts back between phases."""
    states = steady_states(devices, per_device)
    sql = (
        "COPY fence_state (device_id, fence_id, inside, since, pending_exit_since, active,"
        " version) FROM STDIN"
    )
    with conn.transaction(), conn.cursor() as cur:
        with cur.copy(sql) as cp:
            for (device_id, fence_id), s in states.items():
                cp.write_row((device_id, fence_id, s.inside, s.since, s.pending_exit_since,
                              s.active, 1))  # fmt: skip
        cur.execute(f"CREATE TABLE {SEED_TABLE} AS SELECT * FROM fence_state")
    return len(states)


def restore_fence_states(conn: psycopg.Connection) -> None:
    """Every (device, fence) state back to the seed (none, when nothing was seeded)."""
    conn.execute("TRUNCATE fence_state")
    if conn.execute("SELECT to_regclass(%s)", (SEED_TABLE,)).fetchone() != (None,):
        conn.execute(f"INSERT INTO fence_state SELECT * FROM {SEED_TABLE}")
