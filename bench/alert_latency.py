"""``python -m bench.alert_latency``: how long an SOS takes from the watch's MQTT publish to a
caregiver's live feed (the SSE event ``alert.opened``), with no load and under a background of
location fixes at 50 % and 90 % of the ingestor's maximum rate, measured in the same run.

The real stack, all started here and stopped in ``finally``: a private Mosquitto (project
config, free port), a fresh database (``bench.db``), ``anxin api`` (uvicorn) and ``anxin
ingest``. One contact, created through the API, cares for the devices that press SOS. The
maximum rate is the ingest bench's own measurement (``Bench.ingest``: a burst of QoS 1 fixes,
stored/s) unless ``--max-rate`` gives it; the background comes from the ingest bench's
publisher processes, paced. In this process: a watch-like MQTT client presses SOS on a fresh
device every ~``--interval-ms`` (each opens a new alert; silent and audible alternate) and
hears the backend's alarm receipt, and an SSE client on ``/v1/contacts/{id}/feed`` notes when
each ``alert.opened`` arrives, so both ends are timed on one clock (``perf_counter``).

Prints a table and writes ``bench/results/alert-latency-<UTC>.json`` (see bench/README.md).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import random
import shlex
import socket
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter as Tally
from contextlib import ExitStack
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import psycopg

from bench.db import Counter, bench_database, reset_positions, scalar
from bench.ingestors import Replicas, end_sessions
from bench.machine import machine_info
from bench.procstat import CpuWindow, peak_rss_mb
from bench.publish import PublisherPool, mqtt_client, wait_connected
from bench.run import Bench, add_stack_options, finish, ingestor_settings, run_and_save
from services.protocol import Alarm, AlarmMode, AlarmReceipt, AlarmType, Topics, UplinkKind
from services.storage.provisioning import demo_device_id
from tests.support.broker import MosquittoProcess
from tests.support.procs import AnxinProcess, anxin_env, free_port
from tests.support.stack import wait_for

DEFAULTS = {"devices": 10_000, "probes": 100, "max_fixes": 100_000, "warmup": 3.0}
QUICK = {"devices": 500, "probes": 8, "max_fixes": 5_000, "warmup": 1.0, "rate_cap": 1_000.0}
TOKEN = "bench-token"
PROBE_SEQ_BASE = 900_000_000  # far above any fix's seq in the run
TAIL_S = 2.0  # the background runs this much longer than the probes
SAMPLE_S = 0.5  # how often the stored fixes are counted (the ingestor's lag)
MODES = (AlarmMode.SILENT, AlarmMode.AUDIBLE)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m bench.alert_latency",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add = p.add_argument
    add("--devices", type=int, help=f"provisioned devices (default {DEFAULTS['devices']:,})")
    add("--probes", type=int, help=f"SOS presses a load level (default {DEFAULTS['probes']})")
    add("--interval-ms", type=float, default=200.0, help="between SOS presses (±25 %% jitter)")
    add("--loads", default="0,0.5,0.9", help="background as fractions of the maximum rate")
    add("--max-rate", type=float, help="fixes/s the ingestor can take (default: measure it)")
    add("--max-fixes", type=int, help="fixes in the burst that measures the maximum rate")
    add("--rate-cap", type=float, help="fractions are taken of min(maximum, this)")
    add("--warmup", type=float, help="seconds of background before the first SOS")
    add("--probe-timeout", type=float, default=30.0, help="wait for the last SOS's event")
    add("--publishers", type=int, default=2, help="background publisher processes")
    add("--quick", action="store_true", help="smoke test: 500 devices, 8 SOS a level, ≤1,000/s")
    add_stack_options(p)
    args = p.parse_args(argv)
    for key, value in (QUICK if args.quick else DEFAULTS).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    args.loads = [float(x) for x in args.loads.split(",") if x.strip()]
    if not args.loads or any(not 0 <= f <= 2 for f in args.loads):
        p.error("--loads wants fractions between 0 and 2, e.g. 0,0.5,0.9")
    if args.probes < 1 or args.devices < args.probes * len(args.loads):
        p.error("--devices must be at least --probes × the number of loads (a device per SOS)")
    args.settings = ingestor_settings(p, args.set)
    return args


# -- the two ends of an SOS, in this process --------------------------------------------


@dataclass
class Probe:
    """One SOS press: when it was published, receipted (committed) and shown in the feed."""

    level: str
    device_id: str
    seq: int
    mode: str
    t_pub: float  # perf_counter
    wall_pub: float  # time.time(), to set against the database's timestamps
    t_receipt: float | None = None
    wall_receipt: float | None = None
    t_sse: float | None = None
    received_at: float | None = None  # alarms.received_at: the ingestor took it, epoch s
    opened_at: float | None = None  # the alert's opened_at (its transaction's start), epoch s


class Prober:
    """The watches' side: an SOS (QoS 1) and the backend's alarm receipt on the command topic."""

    def __init__(self, host: str, port: int, prefix: str, probes: dict) -> None:
        self.topics = Topics(prefix)
        self.probes = probes
        subscribed = threading.Event()
        self.client = mqtt_client(f"{prefix}-prober")
        self.client.on_message = self._on_receipt
        self.client.on_subscribe = lambda *_: subscribed.set()
        self.client.connect(host, port, keepalive=60)
        self.client.loop_start()
        wait_connected(self.client)
        self.client.subscribe(self.topics.command("+"), qos=1)
        if not subscribed.wait(10):
            raise TimeoutError("the prober's subscription to the receipts was not confirmed")

    def press(self, level: str, device_id: str, seq: int, mode: AlarmMode) -> None:
        now = datetime.now(UTC)
        fix = {"t": now.isoformat(), "lat": 31.2304, "lon": 121.4737, "acc": 8.0, "src": "gps"}
        alarm = Alarm(seq=seq, t=now, type=AlarmType.SOS, mode=mode, fix=fix)
        payload = alarm.model_dump_json(exclude_none=True).encode()
        topic = self.topics.uplink(device_id, UplinkKind.ALARM)
        probe = Probe(level, device_id, seq, mode.value, time.perf_counter(), time.time())
        self.probes[(device_id, seq)] = probe
        self.client.publish(topic, payload, qos=1)

    def _on_receipt(self, client, userdata, msg) -> None:
        t, wall = time.perf_counter(), time.time()
        device_id = msg.topic.rsplit("/", 2)[-2]
        for seq in AlarmReceipt.model_validate_json(msg.payload).seqs:
            probe = self.probes.get((device_id, seq))
            if probe is not None and probe.t_receipt is None:
                probe.t_receipt, probe.wall_receipt = t, wall

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


class FeedClient:
    """A caregiver's live feed: one SSE connection read on its own thread."""

    def __init__(self, base: str, contact_id: int, probes: dict) -> None:
        self.url = f"{base}/v1/contacts/{contact_id}/feed"
        self.probes = probes
        self.events: Tally[str] = Tally()
        self.unmatched = 0
        self.error: str | None = None
        self._open = threading.Event()
        self._closing = False
        self._sock: socket.socket | None = None
        self._thread = threading.Thread(target=self._read, name="sse-client", daemon=True)

    def start(self, timeout: float = 10.0) -> None:
        self._thread.start()
        if not self._open.wait(timeout) or self.error:
            raise RuntimeError(f"the live feed did not open: {self.error}")

    def _read(self) -> None:
        headers = {"Authorization": f"Bearer {TOKEN}", "Accept": "text/event-stream"}
        timeout = httpx.Timeout(10, read=60)  # the API sends a keepalive every 15 s
        try:
            with httpx.stream("GET", self.url, headers=headers, timeout=timeout) as r:
                r.raise_for_status()
                stream = r.extensions.get("network_stream")
                self._sock = stream.get_extra_info("socket") if stream else None
                event = data = None
                for line in r.iter_lines():
                    now = time.perf_counter()
                    if line.startswith("retry:"):
                        self._open.set()  # the hub has subscribed us before the first byte
                    elif line.startswith("event:"):
                        event = line[6:].strip()
                    elif line.startswith("data:"):
                        data = line[5:].strip()
                    elif not line and event and data:
                        self._arrived(event, json.loads(data), now)
                        event = data = None
        except Exception as err:
            if not self._closing:
                self.error = f"{type(err).__name__}: {err}"
        finally:
            self._open.set()

    def _arrived(self, event: str, alert: dict[str, Any], now: float) -> None:
        self.events[event] += 1
        if event != "alert.opened":
            return
        probe = self.probes.get((alert["device_id"], (alert.get("detail") or {}).get("seq")))
        if probe is None or probe.t_sse is not None:
            self.unmatched += 1
            return
        probe.t_sse = now
        probe.opened_at = datetime.fromisoformat(alert["opened_at"]).timestamp()

    def close(self) -> None:
        self._closing = True
        if self._sock is not None:  # wakes the blocked read (closing the fd would not)
            with contextlib.suppress(OSError):
                self._sock.shutdown(socket.SHUT_RDWR)
        self._thread.join(5)


class StoredSampler:
    """``count(*)`` of positions every ``SAMPLE_S`` on its own thread: the ingestor's progress."""

    def __init__(self, db: str) -> None:
        self.counter = Counter(db)
        self.samples: list[tuple[float, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="stored-sampler", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.samples.append((time.monotonic(), self.counter.positions()))
            self._stop.wait(SAMPLE_S)

    def stop(self) -> list[tuple[float, int]]:
        self._stop.set()
        self._thread.join(10)
        self.counter.close()
        return self.samples


# -- the run ------------------------------------------------------------------------------


class AlertLatency:
    def __init__(self, args: argparse.Namespace, bench: Bench, reps: Replicas, api: AnxinProcess,
                 base: str) -> None:  # fmt: skip
        self.args = args
        self.bench = bench
        self.reps = reps
        self.api = api
        self.probes: dict[tuple[str, int], Probe] = {}
        self.prober = Prober("127.0.0.1", bench.broker.port, bench.prefix, self.probes)
        self.devices = iter(range(args.devices, 0, -1))  # SOS devices: the last ones, fresh each
        self.sent = 0
        self.rng = random.Random(6)
        self.contact_id = self._contact(base, args.probes * len(args.loads))
        self.feed = FeedClient(base, self.contact_id, self.probes)

    def _contact(self, base: str, n: int) -> int:
        """A caregiver, created through the API, caring for the wearers of the SOS devices."""
        first = self.args.devices
        wearers = [f"wearer-{demo_device_id(i)}" for i in range(first, first - n, -1)]
        auth = {"Authorization": f"Bearer {TOKEN}"}
        with httpx.Client(base_url=base, headers=auth, timeout=30) as client:
            r = client.post("/v1/contacts", json={"name": "Bench caregiver", "role": "caregiver"})
            r.raise_for_status()
            contact_id = int(r.json()["contact_id"])
            r = client.put(f"/v1/contacts/{contact_id}/wearers", json={"wearer_ids": wearers})
            r.raise_for_status()
        return contact_id

    def close(self) -> None:
        self.feed.close()
        self.prober.close()

    def level(self, fraction: float, rate: float) -> dict[str, Any]:
        """SOS presses over a background of ``rate`` fixes/s (none at 0)."""
        args, bench = self.args, self.bench
        name = f"{round(fraction * 100)} %"
        span = args.warmup + args.probes * args.interval_ms / 1000 + TAIL_S
        fixes = math.ceil(rate * span) if rate > 0 else 0
        if fixes:
            w = bench.workload(fixes)
            specs = bench.publish_specs(f"bg{self.sent}", 1, w)
            bench.pool.prepare([replace(s, rate=rate / len(specs)) for s in specs])
        reset_positions(bench.db)
        counter = Counter(bench.db)
        try:
            pids = {**bench.own_pids(), **self.reps.pids, "api": self.api_pid}
            if not fixes:
                pids = {k: v for k, v in pids.items() if not k.startswith("publisher")}
            cpu = CpuWindow(pids, {"postgres": counter.server_pids})
            cpu.start()
            sampler = StoredSampler(bench.db)
            if fixes:
                bench.pool.go()
            time.sleep(args.warmup)
            mine, probe_window = self._press(name, args.probes)
            raw = summary = stored = drain = None
            if fixes:
                raw = bench.pool.results(bench.publish_timeout(w) + 10)
                summary = bench.publishers_summary(raw)
                stored, done_at = bench._wait_stored(counter, summary["fixes"], self.reps, fixes)
                drain = done_at - max(p["last_publish"] for p in raw)
            self._await_feed(mine, probe_window[1] + args.probe_timeout)
            samples = sampler.stop()
            cpu_used = cpu.stop()
            others = cpu.others
        finally:
            counter.close()
        dead = int(scalar(bench.db, "SELECT count(*) FROM dead_letters"))
        probes = [p for p in self.probes.values() if p.level == name]
        self._received_at(probes)
        return {
            "load": name,
            "fraction": fraction,
            "target_fixes_per_s": round(rate, 1),
            "probes": len(probes),
            "received": sum(p.t_sse is not None for p in probes),
            "missing": [f"{p.device_id}#{p.seq}" for p in probes if p.t_sse is None],
            "latency_ms": _ms_stats([p.t_sse - p.t_pub for p in probes if p.t_sse]),
            "receipt_ms": _ms_stats([p.t_receipt - p.t_pub for p in probes if p.t_receipt]),
            "stages_ms": _stages(probes),
            "background": _background(raw, summary, stored, drain, samples, probe_window, dead),
            "cpu_s": cpu_used,
            "other_processes": others,
        }

    @property
    def api_pid(self) -> int:
        assert self.api.proc is not None
        return self.api.proc.pid

    def _press(self, name: str, n: int) -> tuple[list[Probe], tuple[float, float]]:
        """``n`` SOS presses ~``interval`` apart: the probes, and when the presses began and
        ended (their events are timed by the feed's thread meanwhile)."""
        interval = self.args.interval_ms / 1000
        start = due = time.monotonic()
        mine: list[Probe] = []
        for _ in range(n):
            time.sleep(max(0.0, due - time.monotonic()))
            device_id = demo_device_id(next(self.devices))
            seq = PROBE_SEQ_BASE + self.sent
            self.prober.press(name, device_id, seq, MODES[self.sent % 2])
            mine.append(self.probes[(device_id, seq)])
            self.sent += 1
            due += interval * self.rng.uniform(0.75, 1.25)
        return mine, (start, time.monotonic())

    def _await_feed(self, probes: list[Probe], deadline: float) -> None:
        """Until every probe's ``alert.opened`` has arrived, or ``deadline`` (monotonic)."""
        while any(p.t_sse is None for p in probes) and time.monotonic() < deadline:
            if self.feed.error:
                raise RuntimeError(f"the live feed broke: {self.feed.error}")
            time.sleep(0.01)

    def _received_at(self, probes: list[Probe]) -> None:
        """When the ingestor took each SOS off the wire (``alarms.received_at``)."""
        keys = [p.device_id for p in probes]
        with psycopg.connect(self.bench.db) as conn:
            rows = conn.execute(
                "SELECT device_id, seq, extract(epoch FROM received_at) FROM alarms"
                " WHERE device_id = ANY(%s)",
                (keys,),
            ).fetchall()
        got = {(d, s): float(t) for d, s, t in rows}
        for p in probes:
            p.received_at = got.get((p.device_id, p.seq))


# -- figures --------------------------------------------------------------------------------

STAGES = {  # name: (what it covers, its end points)
    "broker_to_ingestor": "publish → the ingestor takes it off the wire (alarms.received_at)",
    "queue_and_batch": "→ its batch's transaction begins (queue, batch wait, decode)",
    "store_and_commit": "→ the watch hears the receipt (store, alert, commit, receipt)",
    "sse_after_receipt": "→ alert.opened on the SSE client: NOTIFY → hub → stream, less the"
    " receipt's MQTT hop (negative: the feed was first)",
}


def _ms_stats(seconds: list[float]) -> dict[str, float | int | None]:
    if not seconds:
        return {"n": 0, "p50": None, "p95": None, "p99": None, "max": None}
    ms = sorted(s * 1000 for s in seconds)
    q = statistics.quantiles(ms, n=100, method="inclusive") if len(ms) > 1 else ms * 99
    return {
        "n": len(ms),
        "p50": round(q[49], 2),
        "p95": round(q[94], 2),
        "p99": round(q[98], 2),
        "max": round(ms[-1], 2),
        "min": round(ms[0], 2),
        "mean": round(statistics.fmean(ms), 2),
    }


def _stage_times(p: Probe) -> dict[str, float] | None:
    if None in (p.received_at, p.opened_at, p.wall_receipt, p.t_receipt, p.t_sse):
        return None
    return {
        "broker_to_ingestor": p.received_at - p.wall_pub,  # type: ignore[operator]
        "queue_and_batch": p.opened_at - p.received_at,  # type: ignore[operator]
        "store_and_commit": p.wall_receipt - p.opened_at,  # type: ignore[operator]
        "sse_after_receipt": p.t_sse - p.t_receipt,  # type: ignore[operator]
    }


def _stages(probes: list[Probe]) -> dict[str, Any]:
    """Each stage's spread, and its mean over the slowest 5 % of the SOS (the tail's cause)."""
    timed = [(p.t_sse - p.t_pub, s) for p in probes if p.t_sse and (s := _stage_times(p))]
    out: dict[str, Any] = {k: _ms_stats([s[k] for _, s in timed]) for k in STAGES}
    if timed:
        timed.sort(key=lambda ts: ts[0])
        tail = timed[int(len(timed) * 0.95) :] or timed[-1:]
        out["slowest_5pct_mean_ms"] = {
            k: round(statistics.fmean(s[k] for _, s in tail) * 1000, 2) for k in STAGES
        }
    return out


def _background(
    pubs: list[dict[str, Any]] | None,
    summary: dict[str, Any] | None,
    stored: int | None,
    drain: float | None,
    samples: list[tuple[float, int]],
    window: tuple[float, float],
    dead: int,
) -> dict[str, Any]:
    """What the background really was: published and stored rates, and how far the ingestor
    fell behind the publishers (backlog = published so far − stored so far)."""
    inside = [(t, n) for t, n in samples if window[0] <= t <= window[1]]
    rate_stored = None
    if len(inside) > 1 and inside[-1][0] > inside[0][0]:
        rate_stored = (inside[-1][1] - inside[0][1]) / (inside[-1][0] - inside[0][0])
    out: dict[str, Any] = {
        "fixes_published": summary["fixes"] if summary else 0,
        "fixes_stored": stored or 0,
        "dead_letters": dead,
        "published_per_s": summary["msgs_per_s"] if summary else 0,
        "stored_per_s_during_sos": round(rate_stored, 1) if rate_stored is not None else None,
        "backlog_max_fixes": 0,
        "backlog_mean_fixes": 0,
        "lag_max_s": 0.0,
        "drain_s": round(drain, 3) if drain is not None else None,
    }
    if pubs and summary:
        first = min(p["first_publish"] for p in pubs)
        last = max(p["last_publish"] for p in pubs)
        # The paced publishers send at a steady rate: so many were out by time t.
        backlog = [
            summary["messages"] * min(1.0, (t - first) / (last - first)) - n
            for t, n in samples
            if t >= first and last > first
        ]
        if backlog:
            top = max(0.0, max(backlog))
            out["backlog_max_fixes"] = round(top)
            out["backlog_mean_fixes"] = round(max(0.0, statistics.fmean(backlog)))
            rate = summary["messages"] / (last - first)
            out["lag_max_s"] = round(top / rate, 3)
        out["publisher_cpu_s"] = summary["cpu_s"]
    return out


def _n(value: float | None, digits: int = 0) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def _aligned(rows: list[tuple[str, ...]]) -> list[str]:
    """Text left, numbers right, a rule under the header."""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = []
    for r in rows:
        cells = [
            c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True))
        ]
        lines.append("  ".join(cells).rstrip())
    return [lines[0], "-" * len(lines[0]), *lines[1:]]


def table(result: dict[str, Any]) -> str:
    p, m = result["parameters"], result.get("machine", {})
    measured = "given" if p.get("max_rate") else "measured"
    head = [
        f"Anxin SOS → live feed (SSE alert.opened): {p['devices']:,} devices,"
        f" {p['probes']} SOS a load level every ~{p['interval_ms']:.0f} ms",
        f"maximum ingest {_n(result.get('max_fixes_per_s'))} fixes/s ({measured});"
        f" background = load × {_n(result.get('background_base_fixes_per_s'))} fixes/s",
        f"{m.get('nproc')} CPUs ({m.get('cpu_model', '?')}), Mosquitto {m.get('mosquitto')},"
        f" PostgreSQL {m.get('postgres')}, Python {m.get('python')}",
        "",
    ]
    rows = [("load", "fixes/s target", "published", "stored", "lag max", "drain", "p50 ms",
             "p95 ms", "p99 ms", "max ms", "n", "receipt p50/p99", "busy")]  # fmt: skip
    stages = [("stage, p50 / slowest 5 % mean (ms)", *STAGES)]
    for lv in result.get("levels", []):
        b, lat, rc = lv["background"], lv["latency_ms"], lv["receipt_ms"]
        rows.append((
            lv["load"], _n(lv["target_fixes_per_s"]), _n(b["published_per_s"]),
            _n(b["stored_per_s_during_sos"]), f"{b['lag_max_s']:.2f} s",
            "-" if b["drain_s"] is None else f"{b['drain_s']:.2f} s",
            _n(lat["p50"], 1), _n(lat["p95"], 1), _n(lat["p99"], 1), _n(lat["max"], 1),
            f"{lat['n']}/{lv['probes']}", f"{_n(rc['p50'], 1)}/{_n(rc['p99'], 1)}",
            f"{lv['cpu_s'].get('machine_busy_fraction', 0):.0%}",
        ))  # fmt: skip
        st = lv["stages_ms"]
        tail = st.get("slowest_5pct_mean_ms", {})
        cells = (f"{_n(st[k]['p50'], 1)} / {_n(tail.get(k), 1)}" for k in STAGES)
        stages.append((lv["load"], *cells))
    lines = [*head, *_aligned(rows), "", *_aligned(stages)]
    lines += [f"  {k}: {v}" for k, v in STAGES.items()]
    for lv in result.get("levels", []):
        if lv["missing"]:
            some = ", ".join(lv["missing"][:5]) + (" …" if len(lv["missing"]) > 5 else "")
            lines.append(f"WARNING {lv['load']}: {len(lv['missing'])} SOS never reached the feed"
                         f" ({some})")  # fmt: skip
        if lv["background"]["dead_letters"]:
            lines.append(f"WARNING {lv['load']}: {lv['background']['dead_letters']} dead letters")
        other = lv["cpu_s"].get("other_s", 0)
        if other > max(1.5, 0.1 * lv["cpu_s"].get("machine_busy_s", 0)):
            lines.append(f"WARNING {lv['load']}: other processes used {other:.1f} CPU s")
    lines.append(f"run took {result.get('duration_s')} s; command: {result.get('command')}")
    return "\n".join(lines)


# -- main -----------------------------------------------------------------------------------


def _healthy(base: str) -> bool:
    try:
        return httpx.get(f"{base}/healthz", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def run(args: argparse.Namespace, result: dict[str, Any]) -> None:
    """Fill ``result`` as the run goes (it holds what was done if a step fails)."""
    prefix = f"a{uuid.uuid4().hex[:10]}"
    argv = sys.argv[1:]
    result.update({
        "benchmark": "alert_latency",
        "schema": 1,
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": " ".join(shlex.quote(a) for a in
                            ["python", "-m", "bench.alert_latency", *argv]),
        "argv": argv,
        "parameters": {
            k: getattr(args, k) for k in ("devices", "probes", "interval_ms", "loads",
            "max_rate", "max_fixes", "rate_cap", "warmup", "probe_timeout", "publishers",
            "window", "settings", "quick")
        } | {"topic_prefix": prefix, "sample_s": SAMPLE_S, "tail_s": TAIL_S},
    })  # fmt: skip
    workdir = Path(tempfile.mkdtemp(prefix="anxin-alert-latency-"))
    t0 = time.monotonic()
    try:
        with ExitStack() as stack:
            broker = MosquittoProcess(workdir / "mosquitto")
            stack.callback(broker.stop)
            broker.start()
            db = stack.enter_context(
                bench_database(args.admin_url, args.devices, args.keep, args.fences_per_device)
            )
            result["parameters"]["database"] = db.rsplit("/", 1)[1]
            result["parameters"]["fences"] = int(scalar(db, "SELECT count(*) FROM fences"))
            result["machine"] = machine_info(str(scalar(db, "SHOW server_version")))
            pool = PublisherPool(args.publishers)
            stack.callback(pool.close)
            bench = Bench(args, workdir, broker, db, pool, prefix)
            port = free_port()
            env = anxin_env(database_url=db, api_token=TOKEN, api_port=port)
            api = AnxinProcess(["api"], env, workdir / "api.log")
            stack.callback(api.stop)
            api.start()
            base = f"http://127.0.0.1:{port}"
            wait_for(lambda: _healthy(base), 30, "the API")

            if args.max_rate:
                max_rate = args.max_rate
            else:
                _say(f"maximum ingest rate, {args.max_fixes:,} fixes as fast as they go")
                result["max_ingest"] = bench.ingest("max", 1, args.max_fixes, 1)
                max_rate = result["max_ingest"]["fixes_per_s"]
            result["max_fixes_per_s"] = max_rate
            base_rate = min(max_rate, args.rate_cap) if args.rate_cap else max_rate
            result["background_base_fixes_per_s"] = base_rate

            reps = Replicas(workdir, "latency", 1, broker.url, db, prefix, args.settings)

            def stop_ingestor() -> None:
                result["ingestor_counters"] = reps.stop()
                end_sessions("127.0.0.1", broker.port, reps.client_ids)

            stack.callback(stop_ingestor)
            reps.start()
            probe = AlertLatency(args, bench, reps, api, base)
            stack.callback(probe.close)
            probe.feed.start()
            result["contact_id"] = probe.contact_id
            levels: list[dict[str, Any]] = []
            result["levels"] = levels
            for fraction in args.loads:
                rate = fraction * base_rate
                _say(f"{args.probes} SOS over {rate:,.0f} fixes/s ({fraction:.0%} load)")
                levels.append(probe.level(fraction, rate))
            result["sse_events"] = dict(probe.feed.events)
            result["sse_unmatched"] = probe.feed.unmatched
            result["peak_rss_mb"] = {
                "ingestor": reps.peak_rss_mb(),
                "api": round(peak_rss_mb(probe.api_pid), 1),
            }
    finally:
        finish(result, t0, workdir, args.keep)


def _say(text: str) -> None:
    print(f"[alert-latency] {text} …", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    return run_and_save(parse_args(argv), run, table, "alert-latency", "alert-latency-")


if __name__ == "__main__":
    sys.exit(main())
