"""Family API latency under load: latest location and one-day history.

``python -m bench.api_latency [--devices 100000] [--tracked 100] [--days 7]``: a fresh
database with ``--devices`` provisioned watches, a week of fixes (one a minute) for
``--tracked`` of them written with COPY, the real ``anxin api`` (uvicorn) as a subprocess,
and ``--concurrency`` clients asking for random tracked wearers for ``--seconds`` per route.
Prints requests/s and p50/p95/p99 and writes ``bench/results/api-latency-<UTC>.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import psycopg

from bench.db import bench_database
from bench.machine import common_machine_info
from services.storage.partitions import ensure_day_partitions
from services.storage.provisioning import demo_device_id
from tests.support.procs import AnxinProcess, anxin_env, free_port
from tests.support.stack import wait_for

ADMIN = "postgresql://postgres@127.0.0.1/postgres"
TOKEN = "bench-token"


def fill(db_url: str, tracked: int, days: int) -> int:
    """A week (``days``) of one-a-minute fixes for the first ``tracked`` devices, by COPY."""
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    start = now - timedelta(days=days)
    with psycopg.connect(db_url) as conn:
        ensure_day_partitions(conn, [(start + timedelta(days=d)).date() for d in range(days + 2)])
        rows = 0
        with (
            conn.cursor() as cur,
            cur.copy(
                "COPY positions (device_id, seq, t, lat, lon, acc, src, received_at)"
                " FROM STDIN (FORMAT BINARY)"
            ) as copy,
        ):
            copy.set_types(["text", "int8", "timestamptz", "float8", "float8", "float4", "text",
                            "timestamptz"])  # fmt: skip
            for i in range(1, tracked + 1):
                device = demo_device_id(i)
                for m in range(days * 24 * 60):
                    t = start + timedelta(minutes=m)
                    copy.write_row((device, m, t, 31.23 + m * 1e-7, 121.47, 15.0, "gps", t))
                    rows += 1
        conn.execute(
            "INSERT INTO device_state (device_id, fix_t, lat, lon, acc, src, last_seen, online)"
            " SELECT DISTINCT ON (device_id) device_id, t, lat, lon, acc, src, t, true"
            " FROM positions ORDER BY device_id, t DESC"
        )
        conn.execute("ANALYZE")
    return rows


async def hammer(base: str, paths: list[str], seconds: float, concurrency: int) -> dict:
    latencies: list[float] = []
    errors = 0
    deadline = time.monotonic() + seconds

    async def worker(client: httpx.AsyncClient) -> None:
        nonlocal errors
        while time.monotonic() < deadline:
            t0 = time.perf_counter()
            r = await client.get(random.choice(paths))
            latencies.append(time.perf_counter() - t0)
            errors += r.status_code != 200

    headers = {"Authorization": f"Bearer {TOKEN}"}
    async with httpx.AsyncClient(base_url=base, headers=headers, timeout=30) as client:
        started = time.monotonic()
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
        elapsed = time.monotonic() - started
    q = statistics.quantiles(latencies, n=100)
    return {
        "requests": len(latencies),
        "errors": errors,
        "requests_per_s": round(len(latencies) / elapsed, 1),
        "p50_ms": round(q[49] * 1000, 2),
        "p95_ms": round(q[94] * 1000, 2),
        "p99_ms": round(q[98] * 1000, 2),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--devices", type=int, default=100_000)
    p.add_argument("--tracked", type=int, default=100)
    p.add_argument("--days", type=int, default=7)
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--concurrency", type=int, default=8)
    p.add_argument("--out", type=Path, default=Path(__file__).with_name("results"))
    args = p.parse_args()
    port = free_port()
    api = None
    with bench_database(ADMIN, args.devices) as db_url:
        try:
            t0 = time.monotonic()
            rows = fill(db_url, args.tracked, args.days)
            fill_s = time.monotonic() - t0
            env = anxin_env(database_url=db_url, api_token=TOKEN, api_port=port)
            log = Path(tempfile.mkdtemp(prefix="api-bench-")) / "api.log"
            api = AnxinProcess(["api"], env, log).start()
            base = f"http://127.0.0.1:{port}"
            wait_for(lambda: _up(base), 30, "the API")
            wearers = [f"wearer-{demo_device_id(i)}" for i in range(1, args.tracked + 1)]
            day_ago = (datetime.now(UTC) - timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
            routes = {
                "latest": [f"/v1/wearers/{w}/location" for w in wearers],
                "history_1_day": [f"/v1/wearers/{w}/history?start={day_ago}" for w in wearers],
                "history_1_day_bucket_5min": [
                    f"/v1/wearers/{w}/history?start={day_ago}&bucket_s=300" for w in wearers
                ],
            }
            results = {
                name: asyncio.run(hammer(base, paths, args.seconds, args.concurrency))
                for name, paths in routes.items()
            }
        finally:
            if api:
                api.stop()
    out = {
        "benchmark": "api_latency",
        "at": datetime.now(UTC).isoformat(),
        "params": vars(args) | {"out": str(args.out)},
        "fixes_stored": rows,
        "fill_s": round(fill_s, 1),
        "routes": results,
        "machine": common_machine_info(),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"api-latency-{datetime.now(UTC):%Y%m%dT%H%M%SZ}.json"
    path.write_text(json.dumps(out, indent=2))
    print(f"{args.devices} devices, {rows} fixes for {args.tracked} of them ({fill_s:.0f} s)")
    for route, r in results.items():
        rate, p50, p95, p99 = (r[k] for k in ("requests_per_s", "p50_ms", "p95_ms", "p99_ms"))
        print(f"  {route:28} {rate:8.1f} req/s  p50 {p50:7.2f} ms  p95 {p95:7.2f} ms"
              f"  p99 {p99:7.2f} ms  errors {r['errors']}")  # fmt: skip
    print(f"-> {path}")


def _up(base: str) -> bool:
    try:
        return httpx.get(f"{base}/healthz", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


if __name__ == "__main__":
    main()
