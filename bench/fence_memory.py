"""The ingestor's fence cache at fleet scale: memory per fence and how fast it loads.

``python -m bench.fence_memory [--devices 100000] [--quick]``

The fleet is the ingest benchmark's (``bench.fleet_fences``: three fences per wearer, a third
circles, two thirds polygons of 6–12 vertices, one park in ten with a pond). Measured:

- **bytes per fence**: RSS growth of a fresh process that builds a ``FenceIndex`` from the
  fleet's generator (never materialised as a list), after ``gc.collect()``, over the fences
  held; also the peak (VmHWM) growth while loading. A child process, so that nothing this
  process allocated before counts. Measured again on the fleet as stored rows read back
  (``fence_from_stored``: each row's strings and version its own, as from the database).
- **load rates** (fences/s), on a sample of the fleet: ``upsert_many`` from ``Fence`` objects;
  the stored path as an ingestor starts (``fence_from_stored`` on rows as the database returns
  them, then ``upsert_many``); and, as the baseline measured in the same run, the path the cache
  used to take: the validating parser (``fences_from_geojson``) and one ``upsert`` per fence.

Results go to ``bench/results/fence-memory-<UTC>.json`` with the machine they were measured on.
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import json
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import shapely

from bench.fleet_fences import fleet_fences
from bench.machine import (
    ROOT,
    common_machine_info,
    package_versions,
    result_envelope,
    save_result,
)
from geofences.engine import FenceIndex
from geofences.geojson import fence_from_stored, fence_to_feature, fences_from_geojson
from geofences.model import Fence

RESULTS = Path(__file__).resolve().parent / "results"
TARGET_BYTES_PER_FENCE = 650
TARGET_LOAD_PER_S = 10_000
Row = tuple[dict[str, Any], str, str, int]  # (feature, fence_id, wearer_id, version)


def _status_kb(key: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise KeyError(key)


def stored_rows(fences: Iterable[Fence]) -> Iterator[Row]:
    """Rows as ``load_changed`` gets them: the stored Feature, freshly decoded from JSON (each
    row its own objects, as psycopg returns them), with the row's id, wearer and version (each
    its own int object, as read from the database)."""
    for version, f in enumerate(fences, start=1_000_000):
        yield json.loads(json.dumps(fence_to_feature(f))), f.fence_id, f.wearer_id, version


def _as_stored(fences: Iterable[Fence]) -> Iterator[Fence]:
    """The fleet as an ingestor reads it back."""
    return (fence_from_stored(*row) for row in stored_rows(fences))


def child_memory(devices: int, stored: bool) -> dict[str, Any]:
    """In this (fresh) process: build the fleet's index from its generator (or the generator
    of its stored rows), measure RSS."""
    list(_as_stored(fleet_fences(1)))  # imports and first-use caches, before the baseline
    gc.collect()
    before_kb, t = _status_kb("VmRSS"), time.perf_counter()
    source = fleet_fences(devices)
    index = FenceIndex(_as_stored(source) if stored else source, threads=1)
    seconds = time.perf_counter() - t
    gc.collect()
    after_kb, peak_kb = _status_kb("VmRSS"), _status_kb("VmHWM")
    return {
        "fences": len(index),
        "skipped": len(index.skipped),
        "rss_before_mb": round(before_kb / 1024, 1),
        "rss_after_mb": round(after_kb / 1024, 1),
        "rss_peak_mb": round(peak_kb / 1024, 1),
        "bytes_per_fence": round((after_kb - before_kb) * 1024 / len(index)),
        "peak_bytes_per_fence": round((peak_kb - before_kb) * 1024 / len(index)),
        "build_s_incl_generating": round(seconds, 2),
    }


def measure_memory(devices: int, *, stored: bool = False) -> dict[str, Any]:
    mode = ["--child-stored"] if stored else []
    proc = subprocess.run(
        [sys.executable, "-m", "bench.fence_memory", "--child-memory", str(devices), *mode],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(proc.stdout)


def rate(n: int, fn: Callable[[], Any], repeat: int) -> float:
    """Items per second: the best of ``repeat`` runs (a neighbour's load only slows a run)."""
    best = float("inf")
    for _ in range(repeat):
        gc.collect()
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return n / best


def run(devices: int, sample_devices: int, baseline_devices: int, repeat: int) -> dict[str, Any]:
    info = {
        **common_machine_info(),
        "geos": ".".join(map(str, shapely.geos_version)),
        "packages": package_versions("shapely", "numpy"),
    }
    memory = measure_memory(devices)
    memory_stored = measure_memory(devices, stored=True)
    fences = list(fleet_fences(sample_devices))
    rows = list(stored_rows(fences))
    few = rows[: 3 * baseline_devices]

    def bulk() -> None:
        FenceIndex(threads=1).upsert_many(fences)

    def stored() -> None:
        FenceIndex(threads=1).upsert_many(fence_from_stored(*r) for r in rows)

    def parse_stored() -> None:
        for r in rows:
            fence_from_stored(*r)

    def validated(row: Row) -> Fence:
        feature, fid, wearer, version = row
        [f] = fences_from_geojson(feature | {"id": fid}, wearer_id=wearer)
        return dataclasses.replace(f, version=version)

    def one_by_one() -> None:
        index = FenceIndex(threads=1)
        for r in few:
            index.upsert(validated(r))

    def upserts_only() -> None:
        index = FenceIndex(threads=1)
        for f in fences[: len(few)]:
            index.upsert(f)

    def validate_only() -> None:
        for r in few:
            validated(r)

    loads = {
        "upsert_many_per_s": round(rate(len(fences), bulk, repeat)),
        "stored_parse_and_upsert_many_per_s": round(rate(len(rows), stored, repeat)),
        "fence_from_stored_per_s": round(rate(len(rows), parse_stored, repeat)),
    }
    baseline = {
        "validate_and_upsert_per_s": round(rate(len(few), one_by_one, repeat)),
        "upsert_per_s": round(rate(len(few), upserts_only, repeat)),
        "fences_from_geojson_per_s": round(rate(len(few), validate_only, repeat)),
    }
    return {
        **result_envelope("fence_memory", info),
        "workload": {
            "devices": devices,
            "fences": memory["fences"],
            "circles_share": round(np.mean([f.radius_m is not None for f in fences]), 3),
            "sample_fences": len(fences),
            "baseline_fences": len(few),
            "repeat": repeat,
        },
        "memory": memory,
        "memory_stored_rows": memory_stored,
        "load": loads,
        "baseline_one_at_a_time": baseline,
        "targets": {
            "bytes_per_fence": TARGET_BYTES_PER_FENCE,
            "load_per_s": TARGET_LOAD_PER_S,
            "bytes_met": memory["bytes_per_fence"] <= TARGET_BYTES_PER_FENCE,
            "load_met": loads["stored_parse_and_upsert_many_per_s"] >= TARGET_LOAD_PER_S,
        },
    }


def report(r: dict[str, Any]) -> str:
    m, ld, b, t = r["memory"], r["load"], r["baseline_one_at_a_time"], r["targets"]
    paths = [
        ("upsert_many", ld["upsert_many_per_s"]),
        ("fence_from_stored + upsert_many", ld["stored_parse_and_upsert_many_per_s"]),
        ("  fence_from_stored alone", ld["fence_from_stored_per_s"]),
        ("baseline: validate + upsert, one by one", b["validate_and_upsert_per_s"]),
        ("  upsert alone", b["upsert_per_s"]),
        ("  fences_from_geojson alone", b["fences_from_geojson_per_s"]),
    ]
    full = m["fences"] / ld["stored_parse_and_upsert_many_per_s"]
    return "\n".join(
        [
            f"fence cache: {r['workload']['devices']:,} devices, {m['fences']:,} fences "
            f"({m['skipped']} skipped)",
            f"memory: {m['bytes_per_fence']:,} B/fence after load "
            f"(RSS {m['rss_before_mb']} -> {m['rss_after_mb']} MB), "
            f"peak {m['peak_bytes_per_fence']:,} B/fence",
            f"  from stored rows (own strings, own versions): "
            f"{r['memory_stored_rows']['bytes_per_fence']:,} B/fence, "
            f"peak {r['memory_stored_rows']['peak_bytes_per_fence']:,} B/fence",
            f"{'load path':<42}{'fences/s':>10}",
            *[f"{label:<42}{value:>10,}" for label, value in paths],
            f"all {m['fences']:,} stored fences would load in {full:.1f} s "
            f"(one by one: {m['fences'] / b['validate_and_upsert_per_s']:.0f} s)",
            f"targets: <= {t['bytes_per_fence']} B/fence {'met' if t['bytes_met'] else 'MISSED'}, "
            f">= {t['load_per_s']:,} fences/s {'met' if t['load_met'] else 'MISSED'}",
        ]
    )


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.fence_memory", description=__doc__)
    ap.add_argument("--devices", type=int, default=100_000)
    ap.add_argument("--quick", action="store_true", help="2,000 devices, small samples")
    ap.add_argument("--sample-devices", type=int, default=10_000, help="for the load rates")
    ap.add_argument("--baseline-devices", type=int, default=1_000, help="for the slow path")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--out-dir", type=Path, default=RESULTS)
    ap.add_argument("--child-memory", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--child-stored", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child_memory is not None:
        print(json.dumps(child_memory(args.child_memory, args.child_stored)))
        return 0
    if args.quick:
        devices, sample, base, repeat = 2_000, 1_000, 200, 1
    else:
        devices, sample, base, repeat = (
            args.devices, args.sample_devices, args.baseline_devices, args.repeat
        )  # fmt: skip
    result = run(devices, min(sample, devices), min(base, sample, devices), repeat)
    result["command"] = " ".join([Path(sys.executable).name, "-m", "bench.fence_memory", *(
        argv if argv is not None else sys.argv[1:])])  # fmt: skip
    print(report(result))
    save_result(result, args.out_dir, "fence-memory")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
