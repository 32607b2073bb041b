"""The messages a benchmark phase publishes: real protocol v1 ``Fix`` and ``Batch`` JSON.

A phase is a deterministic function of its ``Workload``, so that the publisher processes, the
naive baseline and the checks all agree on the same fixes without shipping them around:
message ``j`` of a ``loc`` phase is fix ``k = j // devices`` of device ``j % devices`` (the
devices take turns, as a fleet reporting on a timer does); a ``batch`` phase packs fixes
``k = b*per_message … b*per_message + per_message - 1`` of a device into its ``b``-th message.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from services.protocol import Fix, Source, Topics, UplinkKind
from services.storage.provisioning import demo_device_id

SHANGHAI = (31.2304, 121.4737)


@dataclass(frozen=True)
class Workload:
    prefix: str  # topic prefix
    devices: int  # w00001 … (seeded in the database)
    fixes: int  # fixes in the whole phase, over all publishers
    per_message: int = 1  # 1: one ``loc`` per fix; >1: ``batch`` messages of that many fixes
    seq_base: int = 0  # each phase its own sequence numbers: no key ever collides
    t_end: float = 0.0  # epoch seconds of the newest fix (the phase's start)
    spacing_s: float = 1.0  # device time between a device's consecutive fixes

    @property
    def kind(self) -> UplinkKind:
        return UplinkKind.LOC if self.per_message == 1 else UplinkKind.BATCH

    @property
    def messages(self) -> int:
        return -(-self.fixes // self.per_message)

    def fixes_per_device(self) -> int:
        """The most fixes any one device sends in this phase."""
        msgs_per_device = -(-self.messages // self.devices)
        return msgs_per_device * self.per_message


def walk_origin(device: int) -> tuple[float, float]:
    """(lat, lon) where device index ``device`` (0-based) starts its walk: a 100 × 100 grid
    of homes about 200 m apart (the fleet's fences are placed around these)."""
    return (SHANGHAI[0] + (device % 100) * 0.002, SHANGHAI[1] + (device // 100 % 100) * 0.002)


def walk_point(device: int, k: int) -> tuple[float, float]:
    """(lat, lon) of step ``k`` of device index ``device``: about a metre a step north of its
    ``walk_origin``."""
    lat0, lon0 = walk_origin(device)
    return lat0 + k * 0.00001, lon0


def fix(w: Workload, device: int, k: int) -> Fix:
    """Fix number ``k`` of device index ``device`` (0-based): a plausible walk near Shanghai,
    northwards from its ``walk_origin``."""
    rng = random.Random(device * 1_000_003 + k)
    t0 = w.t_end - w.fixes_per_device() * w.spacing_s
    lat, lon = walk_point(device, k)
    lat += rng.uniform(-1e-4, 1e-4)
    lon += rng.uniform(-1e-4, 1e-4)
    return Fix(
        seq=w.seq_base + k,
        t=datetime.fromtimestamp(t0 + k * w.spacing_s, UTC).replace(microsecond=0)
        + timedelta(milliseconds=rng.randrange(1000)),
        lat=round(lat, 7),
        lon=round(lon, 7),
        acc=round(rng.uniform(3, 40), 1),
        src=Source.GPS if rng.random() < 0.8 else Source.WIFI,
        spd=round(rng.uniform(0, 1.6), 2),
        hdg=round(rng.uniform(0, 359.9), 1),
        bat=max(1, 95 - k // 50 - device % 40),
    )


def message_device(w: Workload, m: int) -> int:
    return m % w.devices


def message_fixes(w: Workload, m: int) -> range:
    """The fix numbers ``k`` that message ``m`` carries for its device."""
    b = m // w.devices
    first = b * w.per_message
    # Fixes are numbered per device; the phase's total is cut at ``w.fixes`` overall, which
    # only ever shortens the very last batch of each device in the last round.
    done_before = m * w.per_message
    n = min(w.per_message, w.fixes - done_before)
    return range(first, first + n)


def encode(w: Workload, device: int, ks: range) -> bytes:
    if w.per_message == 1:
        return fix(w, device, ks[0]).model_dump_json(exclude_none=True).encode()
    items = [fix(w, device, k).model_dump(mode="json", exclude_none=True) for k in ks]
    return json.dumps({"v": 1, "fixes": items}, separators=(",", ":")).encode()


def messages_for(w: Workload, publisher: int, publishers: int) -> Iterator[tuple[str, bytes, int]]:
    """(topic, payload, fixes in it) for one publisher: the devices ``d % publishers ==
    publisher`` are its own, many device topics on one connection."""
    topics = Topics(w.prefix)
    for m in range(w.messages):
        device = message_device(w, m)
        if device % publishers != publisher:
            continue
        ks = message_fixes(w, m)
        yield topics.uplink(demo_device_id(device + 1), w.kind), encode(w, device, ks), len(ks)


def rows_for(w: Workload, count: int, received_at: datetime) -> list[tuple]:
    """The first ``count`` fixes of a ``loc`` workload as ``positions`` rows (naive baseline)."""
    rows = []
    for m in range(min(count, w.messages)):
        device = message_device(w, m)
        for k in message_fixes(w, m):
            f = fix(w, device, k)
            rows.append(
                (demo_device_id(device + 1), f.seq, f.t, f.lat, f.lon, f.acc, f.src.value,
                 f.spd, f.hdg, f.bat, received_at)
            )  # fmt: skip
    return rows[:count]
