"""``python -m bench``: the ingest benchmarks, in one run on one private broker and database.

Phases, in order (see bench/README.md for what each figure means):
    broker   the ceiling: publishers → Mosquitto → a subscriber that only acks (QoS 0, QoS 1)
    naive    one INSERT + one COMMIT per fix, the baseline the batched ingestor must beat
    ingest   publishers → Mosquitto → ``anxin ingest`` → PostgreSQL, one replica (+ storage)
    replicas the same with two replicas on one shared subscription
    batches  offline ``batch`` messages of 100 fixes each, one replica
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import signal
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from contextlib import ExitStack
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.db import Counter, bench_database, naive_insert, reset_positions, scalar, storage
from bench.ingestors import Replicas, end_sessions
from bench.machine import ROOT, machine_info
from bench.payloads import Workload, rows_for
from bench.procstat import CpuWindow, peak_rss_mb
from bench.publish import PublisherPool, PublishSpec
from bench.report import ratios, table
from bench.sink import SinkProcess, SinkSpec
from tests.support.broker import MosquittoProcess

PHASES = ("broker", "naive", "ingest", "replicas", "batches")
DEFAULTS = {"devices": 10_000, "fixes": 200_000, "naive_fixes": 5_000}
QUICK = {"devices": 500, "fixes": 5_000, "naive_fixes": 500}
SINK_GROUP = "bench"
SINK_RECEIVE_MAXIMUM = 1000
BATCH_FIXES_PER_MESSAGE = 100
POLL_S = 0.1  # count(*) interval once the publishers are done (the end-time resolution)
STALL_S = 30.0  # no new stored fix for this long: the phase has failed


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m bench",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add = p.add_argument
    add("--devices", type=int, help=f"seeded devices (default {DEFAULTS['devices']:,})")
    add("--fixes", type=int, help=f"fixes per ingest phase (default {DEFAULTS['fixes']:,})")
    add("--publishers", type=int, default=2, help="publisher processes (default 2)")
    add("--batch-fixes", type=int, help="fixes in the offline-batch phase (default --fixes)")
    add("--naive-fixes", type=int, help=f"naive baseline (default {DEFAULTS['naive_fixes']:,})")
    add("--quick", action="store_true", help="small numbers (smoke test): 500 devices, 5,000 fixes")
    add("--phases", default=",".join(PHASES), help=f"a subset of {','.join(PHASES)}")
    add_stack_options(p)
    args = p.parse_args(argv)
    base = QUICK if args.quick else DEFAULTS
    for key, value in base.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if args.batch_fixes is None:
        args.batch_fixes = args.fixes
    args.phases = [ph.strip() for ph in args.phases.split(",") if ph.strip()]
    unknown = set(args.phases) - set(PHASES)
    if unknown:
        p.error(f"unknown phases: {', '.join(sorted(unknown))}")
    for key in ("devices", "fixes", "publishers", "batch_fixes", "naive_fixes", "window"):
        if getattr(args, key) < 1:
            p.error(f"--{key.replace('_', '-')} must be at least 1")
    args.settings = ingestor_settings(p, args.set)
    return args


def add_stack_options(p: argparse.ArgumentParser) -> None:
    """Options of every benchmark that runs the private stack (broker, database, ingestor)."""
    add = p.add_argument
    add("--window", type=int, default=1000, help="per publisher: most unacked QoS 1 messages")
    add("--set", action="append", default=[], metavar="KEY=VALUE",
        help="an ingestor setting for this run, e.g. --set ingestor_batch_size=1000")  # fmt: skip
    add("--admin-url",
        default=os.environ.get("ANXIN_BENCH_ADMIN_URL", "postgresql://postgres@127.0.0.1/postgres"),
        help="the PostgreSQL to create the benchmark database in")  # fmt: skip
    add("--out", type=Path, default=ROOT / "bench" / "results", help="where the JSON goes")
    add("--keep", action="store_true", help="keep the work directory (logs) and the database")
    add_fences_option(p)


def add_fences_option(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--fences-per-device", type=int, default=3, choices=range(4), metavar="0-3",
        help="fences a wearer has, home/park/no-go (bench/fleet_fences.py; default 3)",
    )  # fmt: skip


def ingestor_settings(p: argparse.ArgumentParser, items: list[str]) -> dict[str, str]:
    """``--set KEY=VALUE`` items as ingestor settings (``ANXIN_`` prefix optional)."""
    settings = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            p.error(f"--set wants KEY=VALUE, got {item!r}")
        settings[key.strip().lower().removeprefix("anxin_")] = value
    return settings


class Bench:
    def __init__(self, args: argparse.Namespace, workdir: Path, broker: MosquittoProcess,
                 db: str, pool: PublisherPool, prefix: str) -> None:  # fmt: skip
        self.args = args
        self.workdir = workdir
        self.broker = broker
        self.db = db
        self.pool = pool
        self.prefix = prefix
        self.phase_no = 0

    # -- helpers -------------------------------------------------------------------------

    def own_pids(self) -> dict[str, int]:
        """The processes every phase has: broker, publishers, this one (which polls)."""
        assert self.broker.proc is not None
        pids = {"broker": self.broker.proc.pid, "bench": os.getpid()}
        pids.update({f"publisher_{i}": pid for i, pid in enumerate(self.pool.pids, 1)})
        return pids

    def workload(self, fixes: int, per_message: int = 1) -> Workload:
        self.phase_no += 1
        return Workload(
            prefix=self.prefix,
            devices=self.args.devices,
            fixes=fixes,
            per_message=per_message,
            seq_base=self.phase_no * 10_000_000,
            t_end=time.time(),
            spacing_s=1.0 if per_message == 1 else 5.0,
        )

    def publish_specs(self, name: str, qos: int, w: Workload) -> list[PublishSpec]:
        n = self.args.publishers
        return [
            PublishSpec(
                host="127.0.0.1",
                port=self.broker.port,
                client_id=f"{self.prefix}-pub-{name}-{i}",
                qos=qos,
                workload=w,
                publishers=n,
                window=self.args.window,
                timeout_s=self.publish_timeout(w),
            )
            for i in range(n)
        ]

    @staticmethod
    def publish_timeout(w: Workload) -> float:
        return 60 + w.messages / 500

    def publishers_summary(self, pubs: list[dict[str, Any]]) -> dict[str, Any]:
        first = min(p["first_publish"] for p in pubs)
        last_ack = max(p["last_ack"] for p in pubs)
        messages = sum(p["messages"] for p in pubs)
        return {
            "messages": messages,
            "fixes": sum(p["fixes"] for p in pubs),
            "acked": sum(p["acked"] for p in pubs),
            "payload_bytes_mean": round(sum(p["payload_bytes"] for p in pubs) / messages, 1),
            "seconds": round(last_ack - first, 3),
            "msgs_per_s": round(messages / (last_ack - first), 1) if last_ack > first else None,
            "cpu_s": [p["cpu_s"] for p in pubs],
            "_first": first,
        }

    # -- phases --------------------------------------------------------------------------

    def broker_ceiling(self, qos: int) -> dict[str, Any]:
        w = self.workload(self.args.fixes)
        spec = SinkSpec(
            host="127.0.0.1",
            port=self.broker.port,
            client_id=f"{self.prefix}-sink-qos{qos}",
            prefix=self.prefix,
            group=SINK_GROUP,
            qos=qos,
            expected=w.messages,
            receive_maximum=SINK_RECEIVE_MAXIMUM,
            timeout_s=self.publish_timeout(w) + 30,
            idle_s=5.0,
        )
        counter = Counter(self.db)
        sink: SinkProcess | None = None
        try:
            sink = SinkProcess(spec)
            sink.ready()
            self.pool.prepare(self.publish_specs(f"qos{qos}", qos, w))
            assert sink.proc.pid is not None
            cpu = CpuWindow(
                {**self.own_pids(), "subscriber": sink.proc.pid},
                {"postgres": counter.server_pids},
            )
            cpu.start()
            sink.go()
            self.pool.go()
            pubs = self.publishers_summary(self.pool.results(self.publish_timeout(w) + 10))
            rx = sink.result(spec.timeout_s + 10)
            cpu_used = cpu.stop()
            others = cpu.others
        finally:
            counter.close()
            if sink is not None:
                sink.close()
        first = pubs.pop("_first")
        span = rx["last_rx"] - first
        return {
            "qos": qos,
            "published": pubs,
            "received": rx["received"],
            "duplicates": rx["duplicates"],
            "lost": w.messages - rx["received"],
            "seconds": round(span, 3),
            "msgs_per_s": round(rx["received"] / span, 1) if span > 0 else None,
            "cpu_s": cpu_used,
            "other_processes": others,
        }

    def naive(self) -> dict[str, Any]:
        w = self.workload(self.args.naive_fixes)
        rows = rows_for(w, self.args.naive_fixes, datetime.now(UTC))
        reset_positions(self.db)  # every phase starts from the seed: the same empty table
        result = naive_insert(self.db, rows, timeout_s=120)
        result["stored_in_table"] = int(scalar(self.db, "SELECT count(*) FROM positions"))
        return result

    def ingest(self, name: str, replicas: int, fixes: int, per_message: int) -> dict[str, Any]:
        w = self.workload(fixes, per_message)
        reset_positions(self.db)
        reps = Replicas(self.workdir, name, replicas, self.broker.url, self.db, self.prefix,
                        self.args.settings)  # fmt: skip
        counter: Counter | None = None
        try:
            reps.start()
            reps.sample_pss()  # every fence loaded
            counter = Counter(self.db)
            self.pool.prepare(self.publish_specs(name, 1, w))
            assert self.broker.proc is not None
            cpu = CpuWindow({**reps.pids, **self.own_pids()}, {"postgres": counter.server_pids})
            cpu.start()
            self.pool.go()
            pubs = self.publishers_summary(self.pool.results(self.publish_timeout(w) + 10))
            first = pubs.pop("_first")
            expected = pubs["fixes"]
            stored, done_at = self._wait_stored(counter, expected, reps, fixes)
            cpu_used = cpu.stop()
            others = cpu.others
            rss = reps.peak_rss_mb()
            rss_each = {name: round(peak_rss_mb(pid), 1) for name, pid in reps.pids.items()}
            reps.sample_pss()
            fence_load = reps.fence_load_s()
        except BaseException:
            sys.stderr.write(reps.logs_tail())
            raise
        finally:
            if counter is not None:
                counter.close()
            finals = reps.stop()
            end_sessions("127.0.0.1", self.broker.port, reps.client_ids)
        span = done_at - first
        ingestor_cpu = round(sum(v for k, v in cpu_used.items() if k.startswith("ingestor")), 3)
        batches = sum(f.get("batches", 0) for f in finals)
        messages = sum(f.get("messages", 0) for f in finals)
        return {
            "replicas": replicas,
            "fixes_per_message": per_message,
            "published": pubs,
            "fixes_published": expected,
            "fixes_stored": stored,
            "dead_letters": int(scalar(self.db, "SELECT count(*) FROM dead_letters")),
            "seconds": round(span, 3),
            "fixes_per_s": round(stored / span, 1) if span > 0 else None,
            "messages_per_s": round(pubs["messages"] / span, 1) if span > 0 else None,
            "ingestor_cpu_s": ingestor_cpu,
            "ingestor_cpu_us_per_fix": round(ingestor_cpu / stored * 1e6, 2) if stored else None,
            "ingestor_peak_rss_mb": rss,
            "ingestor_peak_rss_mb_each": rss_each,
            "ingestor_max_pss_mb": list(reps.max_pss_mb.values()),
            "ingestor_fence_load_s": fence_load,
            "cpu_s": cpu_used,
            "other_processes": others,
            "ingestor_counters": finals,
            "mean_batch_messages": round(messages / batches, 1) if batches else None,
        }

    def _wait_stored(
        self, counter: Counter, expected: int, reps: Replicas, fixes: int
    ) -> tuple[int, float]:
        """Poll count(*) until every published fix is stored; (stored, when) or raise."""
        deadline = time.monotonic() + 60 + fixes / 500
        last_change = time.monotonic()
        last = -1
        next_pss = 0.0
        while True:
            now = time.monotonic()
            if now >= next_pss:  # ~10 ms a read: once a second
                reps.sample_pss()
                next_pss = now + 1.0
            stored = counter.positions()
            if stored >= expected:
                return stored, now
            if stored != last:
                last, last_change = stored, now
            if not reps.alive():
                raise RuntimeError(f"an ingestor died with {stored}/{expected} stored")
            if now - last_change > STALL_S or now > deadline:
                raise TimeoutError(f"only {stored} of {expected} fixes stored")
            time.sleep(POLL_S)


def run(args: argparse.Namespace, result: dict[str, Any]) -> None:
    """Run the phases, filling ``result`` as they finish (it holds what was done on failure)."""
    started = datetime.now(UTC)
    prefix = f"b{uuid.uuid4().hex[:10]}"
    result.update(
        {
            "schema": 1,
            "started_at": started.isoformat(timespec="seconds"),
            "command": " ".join(shlex.quote(a) for a in ["python", "-m", "bench", *sys.argv[1:]]),
            "argv": sys.argv[1:],
            "parameters": {
                "devices": args.devices,
                "fixes": args.fixes,
                "batch_fixes": args.batch_fixes,
                "batch_fixes_per_message": BATCH_FIXES_PER_MESSAGE,
                "naive_fixes": args.naive_fixes,
                "fences_per_device": args.fences_per_device,
                "publishers": args.publishers,
                "publisher_window": args.window,
                "quick": args.quick,
                "phases": args.phases,
                "ingestor_settings": args.settings,
                "sink_receive_maximum": SINK_RECEIVE_MAXIMUM,
                "topic_prefix": prefix,
                "poll_s": POLL_S,
            },
        }
    )
    workdir = Path(tempfile.mkdtemp(prefix="anxin-bench-"))
    t0 = time.monotonic()
    try:
        with ExitStack() as stack:
            broker = MosquittoProcess(workdir / "mosquitto")
            stack.callback(broker.stop)
            broker.start()
            db = stack.enter_context(
                bench_database(args.admin_url, args.devices, args.keep, args.fences_per_device)
            )
            result["parameters"]["fences"] = int(scalar(db, "SELECT count(*) FROM fences"))
            result["parameters"]["fence_states_seeded"] = int(
                scalar(db, "SELECT count(*) FROM fence_state")
            )
            result["parameters"]["database"] = db.rsplit("/", 1)[1]
            result["parameters"]["broker_port"] = broker.port
            result["machine"] = machine_info(str(scalar(db, "SHOW server_version")))
            pool = PublisherPool(args.publishers)
            stack.callback(pool.close)
            bench = Bench(args, workdir, broker, db, pool, prefix)
            walls: dict[str, float] = {}
            result["phase_wall_s"] = walls  # each phase with its set-up (ingestor start etc.)

            def phase(key: str, label: str, fn: Callable[[], dict[str, Any]]) -> None:
                _say(label)
                t = time.monotonic()
                result[key] = fn()
                walls[key] = round(time.monotonic() - t, 1)

            phases = args.phases
            if "broker" in phases:
                phase("broker_qos0", "broker ceiling, QoS 0", lambda: bench.broker_ceiling(0))
                phase("broker_qos1", "broker ceiling, QoS 1", lambda: bench.broker_ceiling(1))
            if "naive" in phases:
                phase("naive", f"naive baseline, {args.naive_fixes} fixes", bench.naive)
            if "ingest" in phases:
                phase("ingest_1", f"ingest, 1 ingestor, {args.fixes} fixes",
                      lambda: bench.ingest("ingest1", 1, args.fixes, 1))  # fmt: skip
                result["storage"] = storage(db)
            if "replicas" in phases:
                phase("ingest_2", f"ingest, 2 replicas, {args.fixes} fixes",
                      lambda: bench.ingest("ingest2", 2, args.fixes, 1))  # fmt: skip
            if "batches" in phases:
                phase("batches", f"offline batches, {args.batch_fixes} fixes",
                      lambda: bench.ingest("batches", 1, args.batch_fixes,
                                           BATCH_FIXES_PER_MESSAGE))  # fmt: skip
            if "naive" in phases and {"ingest", "replicas", "batches"} & set(phases):
                # The same for the naive baseline: measured during a fast minute before the
                # phases it once made batches 9.3 × naive where the bracketed mean says more
                # (docs/performance.md).
                phase("naive_after", "naive baseline, again", bench.naive)
            if "broker" in phases and {"ingest", "replicas"} & set(phases):
                # The machine's speed drifts within minutes (docs/performance.md): the ceiling
                # is measured again after the ingest phases, and they are compared with the
                # mean of the two, which brackets them.
                phase("broker_qos1_after", "broker ceiling, QoS 1, again",
                      lambda: bench.broker_ceiling(1))  # fmt: skip
    finally:
        finish(result, t0, workdir, args.keep)
        result["ratios"] = ratios(result)


def finish(result: dict[str, Any], t0: float, workdir: Path, keep: bool) -> None:
    """A run's end, also a failed one: its duration, and its work directory kept or removed."""
    result["duration_s"] = round(time.monotonic() - t0, 1)
    result["finished_at"] = datetime.now(UTC).isoformat(timespec="seconds")
    if keep:
        result["workdir"] = str(workdir)
    else:
        shutil.rmtree(workdir, ignore_errors=True)


def _say(text: str) -> None:
    print(f"[bench] {text} …", file=sys.stderr, flush=True)


def _exit_on_sigterm(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)  # unwinds through every ``finally``: nothing is left running


def run_and_save(
    args: argparse.Namespace,
    run: Callable[[argparse.Namespace, dict[str, Any]], None],
    table: Callable[[dict[str, Any]], str],
    tag: str,
    prefix: str = "",
) -> int:
    """A benchmark's ``main``: SIGTERM unwinds every ``finally``; the result is written to
    ``args.out/<prefix><UTC>.json`` and its table printed, or on failure what was measured goes
    to ``<prefix><UTC>-failed.json`` and the exit code is 1."""
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    started = datetime.now(UTC)
    result: dict[str, Any] = {}
    code = 0
    try:
        run(args, result)
    except Exception as err:
        result["error"] = f"{type(err).__name__}: {err}"
        print(f"[{tag}] failed: {result['error']}", file=sys.stderr)
        code = 1
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"{prefix}{started:%Y%m%dT%H%M%SZ}{'-failed' if code else ''}.json"
    path.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n")
    if not code:
        print(table(result))
    print(f"\nsaved {path}", file=sys.stderr if code else sys.stdout)
    return code


def main(argv: list[str] | None = None) -> int:
    return run_and_save(parse_args(argv), run, table, "bench")
