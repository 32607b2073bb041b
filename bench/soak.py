"""``python -m bench.soak``: the real ingestor under a steady load for a long time.

Does memory creep, does the ingestor fall behind? A private Mosquitto (project config), a fresh
database (``bench.db``) and one ``anxin ingest``; paced publisher processes send QoS 1 fixes
from ``--devices`` watches at ``--rate`` fixes/s, 70 % of the ingestor's maximum by default,
for ``--minutes``. Every ``--sample-s`` seconds it records the ingestor's RSS and CPU and its
lag: fixes the broker has acknowledged to the publishers minus fixes stored. At the end it
waits for the backlog to drain and checks that every published fix was stored once.

The maximum is ``ingest_1.fixes_per_s`` of the latest full ``python -m bench`` result in
bench/results/ (``--measure`` runs ``python -m bench --phases ingest`` first).

Prints a table and writes ``bench/results/soak-<UTC>.json`` (see bench/README.md).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime
from multiprocessing.sharedctypes import Synchronized
from pathlib import Path
from typing import Any

import psycopg

from bench.db import bench_database, scalar, server_version
from bench.ingestors import Replicas, final_counters
from bench.machine import ROOT, machine_info
from bench.payloads import walk_point
from bench.procstat import MachineCpu, cpu_seconds, status_kb
from bench.publish import mqtt_client, wait_connected
from bench.run import add_fences_option
from services.protocol import Fix, Topics, UplinkKind
from services.storage.provisioning import demo_device_id
from tests.support.broker import MosquittoProcess

RESULTS = ROOT / "bench" / "results"
FULL_RESULT = re.compile(r"^\d{8}T\d{6}Z\.json$")
LOAD = 0.7
QUICK = {"minutes": 8 / 60, "devices": 500, "sample_s": 2.0}
QUICK_RATE = 300.0
DRAIN_TIMEOUT_S = 120.0
WINDOW = 1000  # per publisher: most unacknowledged QoS 1 messages


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m bench.soak",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add = p.add_argument
    add("--minutes", type=float, help="how long the load runs (default 10)")
    add("--rate", type=float, help=f"fixes/s (default {LOAD:.0%}% of the measured maximum)")
    add("--measure", action="store_true", help="measure the maximum now (python -m bench)")
    add("--devices", type=int, help="watches (default 10,000: ~0.8 fixes/s each at 8k/s)")
    add("--publishers", type=int, default=2, help="publisher processes (default 2)")
    add("--sample-s", type=float, help="seconds between samples (default 10)")
    add(
        "--quick",
        action="store_true",
        help=f"20 s, 500 devices, {QUICK_RATE:g} fixes/s (smoke test)",
    )
    add("--admin-url",
        default=os.environ.get("ANXIN_BENCH_ADMIN_URL", "postgresql://postgres@127.0.0.1/postgres"),
        help="the PostgreSQL to create the benchmark database in")  # fmt: skip
    add("--out", type=Path, default=RESULTS, help="where the JSON goes")
    add_fences_option(p)
    args = p.parse_args(argv)
    defaults = QUICK if args.quick else {"minutes": 10.0, "devices": 10_000, "sample_s": 10.0}
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if args.minutes <= 0 or args.devices < 1 or args.publishers < 1 or args.sample_s <= 0:
        p.error("--minutes, --devices, --publishers and --sample-s must be positive")
    return args


def latest_max_rate(results: Path) -> tuple[float, str] | None:
    """``ingest_1.fixes_per_s`` of the newest full (not --quick) ingest result."""
    for path in sorted(results.glob("*.json"), reverse=True):
        if not FULL_RESULT.match(path.name):
            continue
        r = json.loads(path.read_text())
        rate = r.get("ingest_1", {}).get("fixes_per_s")
        if rate and not r.get("parameters", {}).get("quick"):
            return float(rate), path.name
    return None


def measure_max_rate(admin_url: str) -> tuple[float, str]:
    out = Path(tempfile.mkdtemp(prefix="soak-max-"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANXIN_")}
    subprocess.run(
        [sys.executable, "-m", "bench", "--phases", "ingest", "--admin-url", admin_url,
         "--out", str(out)],
        cwd=ROOT, env=env, check=True, timeout=600,
    )  # fmt: skip
    found = latest_max_rate(out)
    if found is None:
        raise RuntimeError("python -m bench --phases ingest wrote no ingest_1 figure")
    return found[0], f"measured now ({found[1]})"


# -- publishers ------------------------------------------------------------------------------


def publisher_main(
    host: str, port: int, prefix: str, devices: list[int], rate: float, seconds: float,
    acked: Synchronized, published: Synchronized, done: Any,
) -> None:  # fmt: skip
    """One MQTT connection sending ``rate`` fixes/s round-robin over ``devices`` (0-based
    indexes), QoS 1, with at most WINDOW unacknowledged; device time is now, each device's seq
    counts up, and each walks north from its home (``walk_point``, where the fleet's fences
    are) about a metre a fix: in ten minutes it leaves home and crosses the park and river."""
    topics = Topics(prefix)
    window = threading.Semaphore(WINDOW)

    def on_publish(client, userdata, mid, reason_code, properties) -> None:
        window.release()
        with acked.get_lock():
            acked.value += 1

    client = mqtt_client(f"{prefix}-soak-{os.getpid()}")
    client.max_queued_messages_set(0)
    client.on_publish = on_publish
    client.connect(host, port, keepalive=60)
    client.loop_start()
    wait_connected(client)
    names = [topics.uplink(demo_device_id(d + 1), UplinkKind.LOC) for d in devices]
    seq_base = int(time.time() * 1000)
    start = time.monotonic()
    i = 0
    while True:
        due = start + i / rate
        now = time.monotonic()
        if due - start >= seconds:
            break
        if due > now + 0.001:
            time.sleep(due - now)
        k, d = divmod(i, len(devices))
        lat, lon = walk_point(devices[d], k)
        fix = Fix(seq=seq_base + k, t=datetime.now(UTC), lat=round(lat, 7), lon=lon,
                  acc=10.0 + d % 40, bat=80)  # fmt: skip
        window.acquire(timeout=60)
        client.publish(names[d], fix.model_dump_json(exclude_none=True), qos=1)
        with published.get_lock():
            published.value += 1
        i += 1
    deadline = time.monotonic() + 60
    while acked.value < published.value and time.monotonic() < deadline:
        time.sleep(0.05)
    client.disconnect()
    client.loop_stop()
    done.set()


class Publishers:
    def __init__(self, n: int, broker: MosquittoProcess, prefix: str, devices: int,
                 rate: float, seconds: float) -> None:  # fmt: skip
        ctx = mp.get_context("spawn")
        self.acked = [ctx.Value("q", 0) for _ in range(n)]
        self.published = [ctx.Value("q", 0) for _ in range(n)]
        self.done = [ctx.Event() for _ in range(n)]
        ids = list(range(devices))  # index i is demo_device_id(i + 1), as seed_demo made it
        self.procs = [
            ctx.Process(
                target=publisher_main,
                args=(
                    "127.0.0.1",
                    broker.port,
                    prefix,
                    ids[j::n],
                    rate / n,
                    seconds,
                    self.acked[j],
                    self.published[j],
                    self.done[j],
                ),
                daemon=True,
            )
            for j in range(n)
        ]

    def start(self) -> None:
        for p in self.procs:
            p.start()

    def acked_total(self) -> int:
        return sum(v.value for v in self.acked)

    def published_total(self) -> int:
        return sum(v.value for v in self.published)

    def finished(self) -> bool:
        return all(e.is_set() for e in self.done)

    def stop(self) -> None:
        for p in self.procs:
            p.join(5)
            if p.is_alive():
                p.kill()
                p.join(5)


# -- sampling --------------------------------------------------------------------------------


def stored_fixes(conn: psycopg.Connection) -> int:
    """Rows inserted into the positions partitions, from PostgreSQL's statistics: cheap on a
    table of millions (a count(*) every few seconds would load the box); at most about a
    second behind. The final check is a real count(*)."""
    row = conn.execute(
        "SELECT coalesce(sum(n_tup_ins), 0) FROM pg_stat_user_tables"
        " WHERE relid IN (SELECT inhrelid FROM pg_inherits"
        "                 WHERE inhparent = 'positions'::regclass)"
    ).fetchone()
    return int(row[0]) if row else 0


def sample(t0: float, pubs: Publishers, conn: psycopg.Connection, pids: list[int],
           cpu_before: tuple[float, float, MachineCpu]) -> dict[str, Any]:  # fmt: skip
    """``pids``: the ingestor's processes (it and its store process), added up."""
    now = time.monotonic()
    cpu, machine = sum(cpu_seconds(p) for p in pids), MachineCpu.now()
    acked, stored = pubs.acked_total(), stored_fixes(conn)
    return {
        "t_s": round(now - t0, 1),
        "published": acked,
        "stored": stored,
        "lag": acked - stored,
        "rss_mb": round(sum(status_kb(p, "VmRSS") for p in pids) / 1024, 1),
        "cpu_pct": round(100 * (cpu - cpu_before[0]) / max(now - cpu_before[1], 1e-6), 1),
        # The whole box (all cores = 100): other people's work shows here, not in cpu_pct.
        "machine_busy_pct": round(100 * machine.busy_fraction_since(cpu_before[2]), 1),
        "_cpu": (cpu, now, machine),
    }


def slope(xs: list[float], ys: list[float]) -> float | None:
    if len(xs) < 2 or len(set(xs)) < 2:
        return None
    return statistics.linear_regression(xs, ys).slope


def summarise(samples: list[dict[str, Any]], rate: float) -> dict[str, Any]:
    rss = [s["rss_mb"] for s in samples]
    lags = [s["lag"] for s in samples]
    ts = [s["t_s"] for s in samples]
    steady = samples[len(samples) // 5 :] or samples  # the first fifth is warm-up
    lag_slope = slope([s["t_s"] for s in steady], [s["lag"] for s in steady])
    rss_slope = slope([s["t_s"] for s in steady], [s["rss_mb"] for s in steady])
    return {
        "rss_mb": {"start": rss[0], "end": rss[-1], "max": max(rss)},
        "rss_mb_per_min_after_warmup": round(rss_slope * 60, 2) if rss_slope is not None else None,
        "lag": {"first": lags[0], "last": lags[-1], "max": max(lags), "mean": round(
            statistics.fmean(lags), 1)},
        "lag_s_max": round(max(lags) / rate, 2) if rate else None,
        "lag_fixes_per_s_after_warmup": round(lag_slope, 2) if lag_slope is not None else None,
        "published_per_s": round(samples[-1]["published"] / ts[-1], 1) if ts[-1] else None,
        "machine_busy_pct_mean": round(statistics.fmean(s["machine_busy_pct"] for s in samples), 1),
    }  # fmt: skip


def table(result: dict[str, Any]) -> str:
    lines = [
        f"{'t (s)':>7} {'published':>10} {'stored':>10} {'lag':>8} {'RSS MB':>7} {'CPU %':>6}"
        f" {'box %':>6}"
    ]
    for s in result["samples"]:
        lines.append(
            f"{s['t_s']:>7.0f} {s['published']:>10,} {s['stored']:>10,} {s['lag']:>8,}"
            f" {s['rss_mb']:>7.1f} {s['cpu_pct']:>6.1f} {s['machine_busy_pct']:>6.1f}"
        )
    sm, pa = result["summary"], result["parameters"]
    lines += [
        f"rate {pa['rate']:,.0f} fixes/s ({result['rate_source']}),"
        f" {pa['devices']:,} devices, {pa['minutes'] * 60:.0f} s",
        f"RSS MB start {sm['rss_mb']['start']}, end {sm['rss_mb']['end']}, max"
        f" {sm['rss_mb']['max']}, after warm-up {sm['rss_mb_per_min_after_warmup']} MB/min",
        f"lag first {sm['lag']['first']:,}, last {sm['lag']['last']:,}, max {sm['lag']['max']:,}"
        f" (~{sm['lag_s_max']} s), trend after warm-up {sm['lag_fixes_per_s_after_warmup']}"
        " fixes/s",
        f"drained in {result['drain_s']} s; stored {result['fixes_stored']:,} of"
        f" {result['fixes_published']:,} published; dead letters {result['dead_letters']}",
    ]
    return "\n".join(lines)


# -- the run ---------------------------------------------------------------------------------


def run(args: argparse.Namespace) -> dict[str, Any]:
    if args.rate:
        rate, source = args.rate, "given"
    elif args.quick:
        rate, source = QUICK_RATE, "the --quick rate"
    else:
        found = measure_max_rate(args.admin_url) if args.measure else latest_max_rate(RESULTS)
        if found is None:
            raise SystemExit("no ingest result in bench/results/: pass --rate or --measure")
        rate, source = LOAD * found[0], f"{LOAD:.0%} of {found[0]:,.0f} fixes/s, {found[1]}"
    seconds = args.minutes * 60
    prefix = f"s{uuid.uuid4().hex[:10]}"
    work = Path(tempfile.mkdtemp(prefix="soak-"))
    broker = MosquittoProcess(work / "broker")
    result: dict[str, Any] = {
        "benchmark": "soak",
        "at": datetime.now(UTC).isoformat(),
        "command": " ".join(["python -m bench.soak", *sys.argv[1:]]),
        "parameters": {"minutes": args.minutes, "rate": round(rate, 1), "devices": args.devices,
                       "publishers": args.publishers, "sample_s": args.sample_s,
                       "quick": args.quick, "fences_per_device": args.fences_per_device},
        "rate_source": source,
    }  # fmt: skip
    with bench_database(args.admin_url, args.devices,
                        fences_per_device=args.fences_per_device) as db:  # fmt: skip
        broker.start()
        reps = Replicas(work, "soak", 1, broker.url, db, prefix, {})
        pubs = None
        try:
            reps.start()
            pids = list(reps.pids.values())
            pubs = Publishers(args.publishers, broker, prefix, args.devices, rate, seconds)
            with psycopg.connect(db, autocommit=True) as conn:
                t0 = time.monotonic()
                pubs.start()
                samples, cpu_before = [], (sum(map(cpu_seconds, pids)), t0, MachineCpu.now())
                while not pubs.finished() and time.monotonic() - t0 < seconds + 90:
                    time.sleep(max(0.0, t0 + (len(samples) + 1) * args.sample_s - time.monotonic()))
                    if not reps.alive():
                        raise RuntimeError(f"the ingestor died:\n{reps.logs_tail()}")
                    s = sample(t0, pubs, conn, pids, cpu_before)
                    cpu_before = s.pop("_cpu")
                    samples.append(s)
                    print(f"{s['t_s']:>6.0f}s published {s['published']:>9,} stored"
                          f" {s['stored']:>9,} lag {s['lag']:>7,} RSS {s['rss_mb']:>6.1f} MB",
                          flush=True)  # fmt: skip
                published = pubs.acked_total()
                drain_start = time.monotonic()  # the statistics can lag 10 s once idle: count
                while time.monotonic() - drain_start < DRAIN_TIMEOUT_S:
                    row = conn.execute("SELECT count(*) FROM positions").fetchone()
                    if row is not None and row[0] >= published:
                        break
                    time.sleep(0.5)
                drain_s = round(time.monotonic() - drain_start, 2)
            result["peak_rss_mb"] = reps.peak_rss_mb()[0]
        finally:
            if pubs is not None:
                pubs.stop()
            counters = reps.stop()
            broker.stop()
        result["samples"] = samples
        result["summary"] = summarise(samples, rate)
        result["drain_s"] = drain_s
        result["fixes_published"] = published
        result["fixes_stored"] = int(scalar(db, "SELECT count(*) FROM positions"))
        result["duplicates"] = int(scalar(
            db, "SELECT count(*) - count(DISTINCT (device_id, seq)) FROM positions"))  # fmt: skip
        result["dead_letters"] = int(scalar(db, "SELECT count(*) FROM dead_letters"))
        result["ingestor_counters"] = counters[0] if counters else final_counters(
            work / "soak-ingestor-1.log")  # fmt: skip
        result["machine"] = machine_info(server_version(db))
    return result


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    result = run(args)
    print(table(result))
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"soak-{datetime.now(UTC):%Y%m%dT%H%M%SZ}.json"
    path.write_text(json.dumps(result, indent=2))
    print(f"-> {path}")
    ok = result["fixes_stored"] == result["fixes_published"] and result["duplicates"] == 0
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
