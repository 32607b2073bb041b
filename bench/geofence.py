"""Geofence decisions per second: the vectorised engine against a naive scalar loop.

``python -m bench.geofence [--devices 100000] [--quick]``

A "decision" is one fix against one fence: membership and signed distance to the boundary in
metres, and the observation (inside / outside / uncertain) from the fix's accuracy. The
workload: N devices with 3 fences each (polygons of 20–60 vertices, a quarter of them with a
hole, some MultiPolygons, and circles), one fix per device with a realistic accuracy mix, so
3·N pairs in one batch. (a) ``FenceIndex.signed_distances`` + ``observe_codes`` over all
pairs; (b) the same decision pair by pair with scalar Shapely calls (``Point(x, y).within``,
``poly.boundary.distance``) on a sample, scaled. Also reported: (a) on one thread, and the
whole ``decide_batch`` (pairing + distances + state steps). Results go to
``bench/results/geofence-<UTC>.json`` with the machine they were measured on.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import shapely

from bench.machine import common_machine_info, package_versions, result_envelope, save_result
from geofences.batch import decide_batch
from geofences.decision import observe, observe_codes
from geofences.engine import FenceIndex
from geofences.metric import (
    LocalFrame,
    compile_fence,
    scalar_signed_distance,
)
from geofences.model import DeviceFix, Fence, FenceKind, FixSample

RESULTS = Path(__file__).resolve().parent / "results"
CENTRE = LocalFrame.at(31.2304, 121.4737)  # Shanghai
ACCURACY, ACCURACY_CDF = [(4, 20), (20, 90), (150, 800)], [0.6, 0.9]
TARGET_RATE = 1_000_000
TARGET_RATIO = 10.0


def _star(rng: np.random.Generator, n: int, r: float) -> np.ndarray:
    """A simple ring of n vertices, one per equal sector at 0.6–1.0 r, closed: star-shaped
    around its centre, every edge over 0.5 r from it (room for a 0.4 r hole)."""
    a = (np.arange(n) + rng.uniform(0.1, 0.9, n)) * (2 * np.pi / n)
    rr = r * rng.uniform(0.6, 1.0, n)
    xy = np.column_stack((rr * np.cos(a), rr * np.sin(a)))
    return np.vstack((xy, xy[:1]))


def _lonlat(frame: LocalFrame, xy: np.ndarray) -> list[list[float]]:
    lat, lon = frame.unproject(xy[:, 0], xy[:, 1])
    return np.column_stack((lon, lat)).tolist()


def make_fence(rng: np.random.Generator, wearer: str, k: int, home: tuple[float, float]) -> Fence:
    """One random fence within ~1.5 km of a wearer's home."""
    cx, cy = home[0] + rng.normal(0, 600), home[1] + rng.normal(0, 600)
    lat0, lon0 = CENTRE.unproject(cx, cy)
    frame = LocalFrame.at(float(lat0), float(lon0))
    r = float(rng.uniform(80, 800))
    kind = FenceKind.SAFE if rng.random() < 0.6 else FenceKind.NOGO
    roll = rng.random()
    if roll < 0.3:
        geometry = {"type": "Point", "coordinates": [float(lon0), float(lat0)]}
        return Fence(f"{wearer}-f{k}", wearer, f"f{k}", kind, geometry, radius_m=r)
    shell = _star(rng, int(rng.integers(20, 61)), r)
    rings = [_lonlat(frame, shell)]
    if roll < 0.5:  # a hole (a pond, a building site), well inside the star's inner radius
        rings.append(_lonlat(frame, _star(rng, int(rng.integers(8, 21)), 0.4 * r)[::-1]))
    if roll > 0.9:  # two parts
        other = _star(rng, int(rng.integers(20, 41)), 0.5 * r) + np.array([2.5 * r, 0])
        geometry = {"type": "MultiPolygon", "coordinates": [rings, [_lonlat(frame, other)]]}
    else:
        geometry = {"type": "Polygon", "coordinates": rings}
    return Fence(f"{wearer}-f{k}", wearer, f"f{k}", kind, geometry)


def make_workload(devices: int, seed: int) -> tuple[list[Fence], list[DeviceFix]]:
    rng = np.random.default_rng(seed)
    t0 = datetime(2025, 6, 2, 4, 0, tzinfo=UTC)
    fences: list[Fence] = []
    fixes: list[DeviceFix] = []
    for d in range(devices):
        wearer = f"wearer-b{d:06d}"
        home = (float(rng.uniform(-20_000, 20_000)), float(rng.uniform(-20_000, 20_000)))
        fences += [make_fence(rng, wearer, k, home) for k in range(3)]
        # GPS outdoors (60 %), Wi-Fi indoors (30 %), sometimes only the cell tower (10 %).
        acc = rng.uniform(*ACCURACY[int(np.searchsorted(ACCURACY_CDF, rng.random()))])
        x, y = home[0] + rng.normal(0, 700), home[1] + rng.normal(0, 700)
        lat, lon = CENTRE.unproject(x, y)
        fix = FixSample(t0 + timedelta(seconds=d % 60), float(lat), float(lon), float(acc))
        fixes.append(DeviceFix(f"b{d:06d}", wearer, fix))
    return fences, fixes


def _moved(df: DeviceFix, rng: np.random.Generator) -> DeviceFix:
    """The device's next fix: 30 s later, a few metres away, a fresh accuracy draw."""
    f = df.fix
    lat, lon = f.lat + rng.normal(0, 5) / 111_000, f.lon + rng.normal(0, 5) / 95_000
    acc = max(3.0, f.acc * float(rng.uniform(0.7, 1.3)))
    return DeviceFix(
        df.device_id, df.wearer_id, FixSample(f.t + timedelta(seconds=30), lat, lon, acc)
    )


def timed(fn: Callable[[], Any], repeat: int) -> tuple[list[float], Any]:
    times, out = [], None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return times, out


def naive_decisions(
    compiled: Sequence[Any], lat: np.ndarray, lon: np.ndarray, acc: np.ndarray
) -> list[float]:
    """The loop the engine replaces: one pair at a time with scalar Shapely on unprepared
    shapes (``Point(x, y).within(poly)``, ``poly.boundary.distance(pt)``; circles in closed
    form), then the same observation."""
    out = []
    for cf, la, lo, a in zip(compiled, lat.tolist(), lon.tolist(), acc.tolist(), strict=True):
        d = scalar_signed_distance(cf, la, lo)
        observe(d, a, cf.fence.margin_m)
        out.append(d)
    return out


def machine() -> dict[str, Any]:
    return {
        **common_machine_info(),
        "geos": ".".join(map(str, shapely.geos_version)),
        "packages": package_versions("shapely", "numpy"),
    }


def run(
    devices: int, *, sample: int, repeat: int, threads: int | None, seed: int
) -> dict[str, Any]:
    info = machine()
    t = time.perf_counter()
    fences, fixes = make_workload(devices, seed)
    t_make = time.perf_counter() - t
    t = time.perf_counter()
    index = FenceIndex(fences, threads=threads)
    t_index = time.perf_counter() - t

    # One batch in arrival order (devices shuffled): each fix against its wearer's 3 fences.
    rng = np.random.default_rng(seed + 1)
    arrival = rng.permutation(devices)
    pair_fence = (arrival[:, None] * 3 + np.arange(3)).ravel()  # fences are 3 per device
    fix_of = np.repeat(arrival, 3)
    pair_ids = [fences[i].fence_id for i in pair_fence.tolist()]
    lat = np.array([df.fix.lat for df in fixes])[fix_of]
    lon = np.array([df.fix.lon for df in fixes])[fix_of]
    acc = np.array([df.fix.acc for df in fixes])[fix_of]
    margin = np.array([f.margin_m for f in fences])[pair_fence]
    slots = index.slots(pair_ids)
    pairs = len(pair_ids)

    def by_id() -> np.ndarray:
        d = index.signed_distances(pair_ids, lat, lon)
        observe_codes(d, acc, margin)
        return d

    def by_slot() -> np.ndarray:
        d = index.signed_distances_at(slots, lat, lon)
        observe_codes(d, acc, margin)
        return d

    pick = np.sort(rng.choice(pairs, size=min(sample, pairs), replace=False))
    compiled = [compile_fence(fences[i]) for i in pair_fence[pick].tolist()]  # unprepared

    def naive() -> list[float]:
        return naive_decisions(compiled, lat[pick], lon[pick], acc[pick])

    cold, dist = timed(by_id, 1)  # the first use builds the prepared polygons' indexes
    # Alternate the paths so that a neighbour's load hits all of them alike.
    t_id, t_slot, t_naive = [], [], []
    for _ in range(repeat):
        t_id += timed(by_id, 1)[0]
        t_slot += timed(by_slot, 1)[0]
        t_naive += timed(naive, 1)[0]
    naive_d = naive()
    threads_used = index.threads
    index.threads = 1
    single, _ = timed(by_id, repeat)
    index.threads = threads_used
    # The full batch engine: a first batch (every state new) and the next one, 30 s later,
    # with the states the first produced (the steady state: most pairs confirm their state).
    first_times, first = timed(lambda: decide_batch(index, fixes, {}, {}), repeat)
    later = [_moved(df, rng) for df in fixes]
    newest = {df.device_id: df.fix.t for df in fixes}
    batch_times, batch = timed(lambda: decide_batch(index, later, first.changed, newest), repeat)

    max_diff = float(np.max(np.abs(np.asarray(naive_d) - dist[pick])))
    med = statistics.median
    naive_rate = len(pick) / med(t_naive)
    ratios = [(pairs / v) / (len(pick) / n) for v, n in zip(t_id, t_naive, strict=True)]
    ratios_slot = [(pairs / v) / (len(pick) / n) for v, n in zip(t_slot, t_naive, strict=True)]
    return {
        **result_envelope("geofence", info),
        "workload": {
            "devices": devices,
            "fences": len(fences),
            "pairs": pairs,
            "circles": sum(f.radius_m is not None for f in fences),
            "seed": seed,
            "make_s": round(t_make, 2),
            "index_build_s": round(t_index, 2),
            "index_upserts_per_s": round(len(fences) / t_index),
        },
        "vectorised": {
            "threads": threads_used,
            "cold_s": round(cold[0], 4),
            "times_s": [round(x, 4) for x in t_id],
            "decisions_per_s_median": round(pairs / med(t_id)),
            "decisions_per_s_best": round(pairs / min(t_id)),
            "by_slot_decisions_per_s_median": round(pairs / med(t_slot)),
            "single_thread_decisions_per_s_median": round(pairs / med(single)),
        },
        "decide_batch": {
            "first_batch_times_s": [round(x, 4) for x in first_times],
            "first_batch_decisions_per_s_median": round(first.decisions / med(first_times)),
            "first_batch_changed_states": len(first.changed),
            "times_s": [round(x, 4) for x in batch_times],
            "decisions_per_s_median": round(batch.decisions / med(batch_times)),
            "transitions": len(batch.transitions),
            "changed_states": len(batch.changed),
        },
        "naive": {
            "sample_pairs": len(pick),
            "times_s": [round(x, 4) for x in t_naive],
            "decisions_per_s": round(naive_rate),
            "max_abs_diff_m": max_diff,
        },
        "ratio_median_vs_naive": round(med(ratios), 1),
        "ratio_by_slot_median_vs_naive": round(med(ratios_slot), 1),
        "targets": {"decisions_per_s": TARGET_RATE, "ratio": TARGET_RATIO},
    }


def report(r: dict[str, Any]) -> str:
    v, n, b, w = r["vectorised"], r["naive"], r["decide_batch"], r["workload"]
    rows = [
        ("vectorised, median", f"{v['decisions_per_s_median']:>12,}", f"{v['threads']} threads"),
        ("vectorised, best", f"{v['decisions_per_s_best']:>12,}", ""),
        ("vectorised, by slot", f"{v['by_slot_decisions_per_s_median']:>12,}", "no id lookups"),
        ("vectorised, 1 thread", f"{v['single_thread_decisions_per_s_median']:>12,}", ""),
        (
            "decide_batch, 1st batch",
            f"{b['first_batch_decisions_per_s_median']:>12,}",
            "every state new",
        ),
        (
            "decide_batch, steady",
            f"{b['decisions_per_s_median']:>12,}",
            "pairing + distances + state steps",
        ),
        ("naive scalar loop", f"{n['decisions_per_s']:>12,}", f"{n['sample_pairs']:,} pairs"),
    ]
    lines = [
        f"geofence decisions: {w['devices']:,} devices x 3 fences = {w['pairs']:,} pairs "
        f"({w['circles']:,} circles); index built in {w['index_build_s']} s",
        f"{'path':<24}{'decisions/s':>12}  note",
        *[f"{a:<24}{b_}  {c}" for a, b_, c in rows],
        f"ratio to naive (medians of alternating rounds): {r['ratio_median_vs_naive']}x by id, "
        f"{r['ratio_by_slot_median_vs_naive']}x by slot",
        f"cold first batch: {v['cold_s']} s   max |vectorised - naive|: "
        f"{n['max_abs_diff_m']:.2e} m   load average at end: {r['loadavg_at_end'][0]:.2f}",
        f"targets: >= {TARGET_RATE:,}/s "
        f"{'met' if v['decisions_per_s_median'] >= TARGET_RATE else 'MISSED'}, "
        f">= {TARGET_RATIO:g}x {'met' if r['ratio_median_vs_naive'] >= TARGET_RATIO else 'MISSED'}",
    ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.geofence", description=__doc__)
    ap.add_argument("--devices", type=int, default=100_000)
    ap.add_argument("--quick", action="store_true", help="10,000 devices, a smaller sample")
    ap.add_argument("--sample", type=int, default=20_000, help="pairs for the naive loop")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--threads", type=int, default=None, help="default: min(4, CPUs)")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--out-dir", type=Path, default=RESULTS)
    args = ap.parse_args(argv)
    devices, sample = (10_000, 5_000) if args.quick else (args.devices, args.sample)
    result = run(devices, sample=sample, repeat=args.repeat, threads=args.threads, seed=args.seed)
    print(report(result))
    save_result(result, args.out_dir, "geofence")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
