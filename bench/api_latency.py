"""Family API latency under load: latest location and one-day history.

``python -m bench.api_latency [--devices 100000] [--tracked 100] [--days 7]``: a fresh
database with ``--devices`` provisioned watches, a week of fixes (one a minute) for
``--tracked`` of them written with COPY, the real ``anxin api`` (uvicorn) as a subprocess,
asked by a logged-in guardian of those wearers (``--caller operator``: the operator token),
then for each route (random tracked wearers):

- **saturated**: ``--concurrency`` clients in a closed loop for ``--seconds``: the most the
  API serves (requests/s). Its latencies are mostly queueing behind the other clients.
- **load_50, load_90**: an open loop at those fractions (``--loads``) of that maximum,
  requests starting on a Poisson schedule and timed from their scheduled start: the latency a
  family sees while the API is that busy. The p99 targets are judged here.

Each level also records the API process's CPU per request (steadier than any rate on a shared
machine) and the client's own (httpx, on the same two cores: what it takes is not the API's).
Prints a table and writes ``bench/results/api-latency-<UTC>.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import random
import secrets
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import psycopg

from bench.db import bench_database
from bench.machine import common_machine_info, python_speed_ms
from bench.procstat import cpu_seconds
from services.storage.partitions import ensure_day_partitions
from services.storage.provisioning import demo_device_id
from tests.support.people import make_user, relate, token_for
from tests.support.procs import AnxinProcess, anxin_env, free_port
from tests.support.stack import wait_for

ROUTES = ("latest", "history_1_day", "history_1_day_bucket_5min")
QUICK = {"devices": 1_000, "tracked": 5, "days": 2, "seconds": 1.0, "loads": [0.5]}
OPERATOR_TOKEN = secrets.token_urlsafe(24)


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


def guardian(db_url: str, wearers: list[str], secret: str) -> str:
    """An access token of one guardian of all the ``wearers``: every request is then checked
    as a family's is (the session looked up, the relation found in ``guardianships``)."""
    user = make_user(db_url, "Bench family")
    for wearer_id in wearers:
        relate(db_url, wearer_id, user, "guardian")
    return token_for(db_url, user, secret)


def _quantiles(latencies: list[float]) -> dict[str, float]:
    q = statistics.quantiles(latencies, n=100)
    return {"p50_ms": round(q[49] * 1000, 2), "p95_ms": round(q[94] * 1000, 2),
            "p99_ms": round(q[98] * 1000, 2)}  # fmt: skip


async def saturate(
    base: str, token: str, paths: list[str], seconds: float, concurrency: int, api_pid: int
) -> dict:
    """Closed loop: ``concurrency`` clients, each asking again as soon as it has its answer.
    This finds the most the API serves; its latencies are mostly queueing (``concurrency``
    requests always wait their turn), so they are reported but not judged."""
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

    async with _client(base, token) as client:
        cpu0, own0, started = cpu_seconds(api_pid), time.process_time(), time.monotonic()
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
        elapsed, cpu = time.monotonic() - started, cpu_seconds(api_pid) - cpu0
        own = time.process_time() - own0
    return {
        "requests": len(latencies),
        "errors": errors,
        "requests_per_s": round(len(latencies) / elapsed, 1),
        "api_cpu_ms_per_request": round(cpu * 1000 / len(latencies), 3),
        "client_cpu_ms_per_request": round(own * 1000 / len(latencies), 3),
        **_quantiles(latencies),
    }


async def paced(
    base: str, token: str, paths: list[str], seconds: float, rate: float, api_pid: int
) -> dict:
    """Open loop: requests start on a Poisson schedule at ``rate`` a second, whether or not
    earlier ones have finished, as independent families' phones do. Each latency runs from
    the request's scheduled start, so a client that falls behind cannot hide the wait."""
    latencies: list[float] = []
    errors = 0
    rng = random.Random(7)

    async def one(client: httpx.AsyncClient, due: float) -> None:
        nonlocal errors
        r = await client.get(rng.choice(paths))
        latencies.append(time.perf_counter() - due)
        errors += r.status_code != 200

    async with _client(base, token) as client:
        cpu0, own0 = cpu_seconds(api_pid), time.process_time()
        start = time.perf_counter()
        due, tasks = start, []
        while due < start + seconds:
            await asyncio.sleep(max(0.0, due - time.perf_counter()))
            tasks.append(asyncio.create_task(one(client, due)))
            due += rng.expovariate(rate)
        await asyncio.gather(*tasks)
        cpu, own = cpu_seconds(api_pid) - cpu0, time.process_time() - own0
    return {
        "offered_per_s": round(rate, 1),
        "requests": len(latencies),
        "errors": errors,
        "api_cpu_ms_per_request": round(cpu * 1000 / len(latencies), 3),
        "client_cpu_ms_per_request": round(own * 1000 / len(latencies), 3),
        **_quantiles(latencies),
    }


def _client(base: str, token: str) -> httpx.AsyncClient:
    # Idle connections are dropped before uvicorn drops them (after 5 s), never in a race.
    limits = httpx.Limits(max_connections=200, max_keepalive_connections=200, keepalive_expiry=2)
    headers = {"Authorization": f"Bearer {token}"}
    return httpx.AsyncClient(base_url=base, headers=headers, timeout=30, limits=limits)


def measure(
    base: str, token: str, paths: list[str], args: argparse.Namespace, api_pid: int
) -> dict:
    """One route: its maximum, then the latency a family sees at each ``--loads`` fraction
    of that maximum."""
    top = asyncio.run(saturate(base, token, paths, args.seconds, args.concurrency, api_pid))
    out = {"saturated": top}
    for load in args.loads:
        rate = top["requests_per_s"] * load
        out[f"load_{round(load * 100)}"] = asyncio.run(
            paced(base, token, paths, args.seconds, rate, api_pid)
        )
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--devices", type=int, default=100_000)
    p.add_argument("--tracked", type=int, default=100)
    p.add_argument("--days", type=int, default=7)
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--concurrency", type=int, default=8, help="clients when saturating")
    p.add_argument("--routes", nargs="+", choices=ROUTES, default=list(ROUTES))
    p.add_argument(
        "--caller",
        choices=["family", "operator"],
        default="family",
        help="a logged-in guardian of the tracked wearers (its session checked on every"
        " request, as the app's), or the operator token",
    )
    p.add_argument(
        "--loads",
        type=float,
        nargs="+",
        default=[0.5, 0.9],
        help="fractions of the maximum at which latency is measured",
    )
    p.add_argument("--out", type=Path, default=Path(__file__).with_name("results"))
    p.add_argument(
        "--admin-url",
        default=os.environ.get("ANXIN_BENCH_ADMIN_URL", "postgresql://postgres@127.0.0.1/postgres"),
        help="a PostgreSQL the benchmark may create its database in",
    )
    p.add_argument(
        "--quick", action="store_true", help="smoke test: 1,000 devices, 2 days for 5, 1 s a level"
    )
    args = p.parse_args()
    if args.quick:
        for key, value in QUICK.items():
            setattr(args, key, value)
    port = free_port()
    api = None
    with bench_database(args.admin_url, args.devices) as db_url:
        try:
            t0 = time.monotonic()
            rows = fill(db_url, args.tracked, args.days)
            fill_s = time.monotonic() - t0
            secret = secrets.token_urlsafe(32)
            wearers = [f"wearer-{demo_device_id(i)}" for i in range(1, args.tracked + 1)]
            token = (
                OPERATOR_TOKEN if args.caller == "operator" else guardian(db_url, wearers, secret)
            )
            env = anxin_env(database_url=db_url, api_token=OPERATOR_TOKEN, auth_secret=secret,
                            api_port=port)  # fmt: skip
            log = Path(tempfile.mkdtemp(prefix="api-bench-")) / "api.log"
            api = AnxinProcess(["api"], env, log).start()
            base = f"http://127.0.0.1:{port}"
            wait_for(lambda: _up(base), 30, "the API")
            day_ago = (datetime.now(UTC) - timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
            routes = {
                "latest": [f"/v1/wearers/{w}/location" for w in wearers],
                "history_1_day": [f"/v1/wearers/{w}/history?start={day_ago}" for w in wearers],
                "history_1_day_bucket_5min": [
                    f"/v1/wearers/{w}/history?start={day_ago}&bucket_s=300" for w in wearers
                ],
            }
            assert api.proc is not None
            # The client's own collector pauses would be counted as the API's latency.
            gc.collect()
            gc.freeze()
            results, yardsticks = {}, {}
            for name, paths in routes.items():
                if name not in args.routes:
                    continue
                # This machine's speed drifts within minutes: the yardstick, per route.
                yardsticks[name] = python_speed_ms()
                results[name] = measure(base, token, paths, args, api.proc.pid)
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
        "python_loop_2m_ms_before_route": yardsticks,
        "machine": common_machine_info(),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"api-latency-{datetime.now(UTC):%Y%m%dT%H%M%SZ}.json"
    path.write_text(json.dumps(out, indent=2))
    print(f"{args.devices} devices, {rows} fixes for {args.tracked} of them ({fill_s:.0f} s)")
    print(f"  {'route':26} {'load':>14} {'req/s':>8} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8}"
          f" {'API CPU ms/req':>15} {'client':>7} errors")  # fmt: skip
    for route, levels in results.items():
        print(f"  {route} (pure-Python yardstick before it: {yardsticks[route]} ms)")
        for level, r in levels.items():
            rate = r.get("requests_per_s", r.get("offered_per_s"))
            cpu, own = r["api_cpu_ms_per_request"], r["client_cpu_ms_per_request"]
            print(f"  {route:26} {level:>14} {rate:8.1f} {r['p50_ms']:8.2f} {r['p95_ms']:8.2f}"
                  f" {r['p99_ms']:8.2f} {cpu:15.3f} {own:7.3f} {r['errors']}")  # fmt: skip
    print(f"-> {path}")


def _up(base: str) -> bool:
    try:
        return httpx.get(f"{base}/healthz", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


if __name__ == "__main__":
    main()
