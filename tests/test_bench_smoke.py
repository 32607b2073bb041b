"""The benchmarks' ``--quick`` variants (ingest, SOS latency, soak, API latency) run end to
end and write a complete result.

Only the shape and the bookkeeping are checked (every section present, positive numbers, every
published fix stored once): timings depend on the machine and are never asserted here.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.support.procs import ROOT

ADMIN_URL = os.environ.get("ANXIN_TEST_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
INGEST_SECTIONS = ("ingest_1", "ingest_2", "batches")


def run_quick(module: str, out: Path, timeout: float) -> dict[str, Any]:
    """``python -m <module> --quick`` against the test PostgreSQL: the one JSON it wrote."""
    return _quick(module, ["--out", str(out)], out, timeout)[0]


def run_quick_pure(module: str, out: Path, timeout: float) -> tuple[dict[str, Any], str]:
    """``python -m <module> --quick`` for a benchmark with no services (``--out-dir``): the one
    JSON it wrote and what it printed."""
    return _quick(module, ["--out-dir", str(out)], out, timeout)


def _quick(module: str, args: list[str], out: Path, timeout: float) -> tuple[dict[str, Any], str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANXIN_")}
    env["ANXIN_BENCH_ADMIN_URL"] = ADMIN_URL
    proc = subprocess.run(
        [sys.executable, "-m", module, "--quick", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    files = list(out.glob("*.json"))
    assert len(files) == 1, files
    return json.loads(files[0].read_text()), proc.stdout


@pytest.mark.timeout(60)
def test_quick_bench_writes_every_section(tmp_path: Path) -> None:
    r = run_quick("bench", tmp_path, timeout=50)

    p = r["parameters"]
    assert (p["devices"], p["fixes"], p["quick"]) == (500, 5000, True)
    for key in ("nproc", "python", "mosquitto", "postgres"):
        assert r["machine"][key], key
    assert "--quick" in r["command"]

    for qos in (0, 1):
        b = r[f"broker_qos{qos}"]
        assert b["qos"] == qos
        assert b["published"]["messages"] == p["fixes"]
        assert b["received"] > 0
        assert b["msgs_per_s"] > 0
    assert r["broker_qos1"]["received"] == p["fixes"]  # QoS 1 with unlimited queues loses none

    for key in ("naive", "naive_after"):  # before and after the ingest phases
        naive = r[key]
        assert naive["stored"] == naive["fixes"] == p["naive_fixes"], key
        assert naive["stored_in_table"] == naive["fixes"], key
        assert naive["fixes_per_s"] > 0, key
    naive_mean = (r["naive"]["fixes_per_s"] + r["naive_after"]["fixes_per_s"]) / 2
    assert r["ratios"]["naive_reference"] == round(naive_mean, 1)

    for key in INGEST_SECTIONS:
        s = r[key]
        assert s["published"]["acked"] == s["published"]["messages"], key
        assert s["fixes_published"] == s["published"]["fixes"], key
        assert s["fixes_stored"] == s["fixes_published"], key  # each stored once, none lost
        assert s["dead_letters"] == 0, key
        assert s["fixes_per_s"] > 0, key
        assert s["ingestor_cpu_s"] > 0, key
        assert all(mb > 0 for mb in s["ingestor_peak_rss_mb"]), key
        assert sum(c["fixes_new"] for c in s["ingestor_counters"]) == s["fixes_stored"], key
        # Every stored fix was checked against its wearer's 3 fences; the newcomers (one
        # wearer in 50) entered their no-go fence, once each, in every phase.
        counters = s["ingestor_counters"]
        assert sum(c["fence_decisions"] for c in counters) == 3 * s["fixes_stored"], key
        senders = min(p["devices"], s["published"]["messages"])
        assert sum(c["fence_events"] for c in counters) == -(-senders // 50), key
    # Settled wearers (49 in 50) start with a state per fence, but where even a good fix at
    # home straddles an edge (a small home circle): that state is still unknown.
    assert p["fences"] == 1500 and 0.9 * 3 * 490 < p["fence_states_seeded"] <= 3 * 490
    assert r["ingest_1"]["fixes_published"] == p["fixes"]
    assert r["batches"]["fixes_published"] == p["batch_fixes"]
    assert r["batches"]["fixes_per_message"] == 100
    assert len(r["ingest_2"]["ingestor_peak_rss_mb"]) == 2
    assert all(c["fixes_new"] > 0 for c in r["ingest_2"]["ingestor_counters"])  # both worked

    st = r["storage"]
    assert st["fixes"] == p["fixes"]
    assert st["bytes_per_fix"] > 0

    for name, value in r["ratios"].items():
        assert value is not None and value > 0, name


@pytest.mark.timeout(90)
def test_quick_alert_latency_bench_times_every_sos_at_every_load(tmp_path: Path) -> None:
    r = run_quick("bench.alert_latency", tmp_path, timeout=80)
    assert r["benchmark"] == "alert_latency" and "--quick" in r["command"]

    p = r["parameters"]
    assert (p["devices"], p["probes"], p["loads"], p["quick"]) == (500, 8, [0.0, 0.5, 0.9], True)
    for key in ("nproc", "python", "mosquitto", "postgres"):
        assert r["machine"][key], key
    assert r["max_ingest"]["fixes_stored"] == r["max_ingest"]["fixes_published"] == 5000
    assert r["max_fixes_per_s"] > 0
    assert r["background_base_fixes_per_s"] == min(r["max_fixes_per_s"], 1000)

    assert [lv["fraction"] for lv in r["levels"]] == p["loads"]
    for lv in r["levels"]:
        load = lv["load"]
        assert (lv["probes"], lv["received"], lv["missing"]) == (8, 8, []), load
        lat = lv["latency_ms"]
        assert lat["n"] == 8 and 0 < lat["p50"] <= lat["p95"] <= lat["p99"] <= lat["max"], load
        assert lv["receipt_ms"]["n"] == 8, load  # every SOS was receipted to the watch
        assert all(lv["stages_ms"][k]["n"] == 8 for k in ("queue_and_batch", "store_and_commit"))
        b = lv["background"]
        assert b["dead_letters"] == 0, load
        assert b["fixes_stored"] == b["fixes_published"], load
        if lv["fraction"] == 0:
            assert b["fixes_published"] == 0 and b["drain_s"] is None
        else:
            assert b["fixes_published"] > 0 and b["published_per_s"] > 0, load
            assert b["stored_per_s_during_sos"] > 0 and b["lag_max_s"] >= 0, load
            assert b["drain_s"] is not None, load
        assert lv["cpu_s"]["ingestor_1"] > 0 and "api" in lv["cpu_s"], load

    assert r["sse_events"].get("alert.opened") == 24 and r["sse_unmatched"] == 0
    assert r["ingestor_counters"][0]["alarms_new"] == 24


@pytest.mark.timeout(60)
def test_quick_soak_samples_memory_and_lag_and_stores_every_fix(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANXIN_")}
    env["ANXIN_BENCH_ADMIN_URL"] = ADMIN_URL
    proc = subprocess.run(
        [sys.executable, "-m", "bench.soak", "--quick", "--out", str(tmp_path)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=55,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    [path] = tmp_path.glob("soak-*.json")
    r = json.loads(path.read_text())
    p = r["parameters"]
    assert (p["devices"], p["rate"], p["quick"]) == (500, 300.0, True)
    assert len(r["samples"]) >= 3
    for s in r["samples"]:
        assert s["rss_mb"] > 0 and s["lag"] == s["published"] - s["stored"], s
    assert r["fixes_published"] == r["fixes_stored"] > 0  # each stored once, none lost
    assert r["duplicates"] == 0 and r["dead_letters"] == 0
    sm = r["summary"]
    assert 0 < sm["rss_mb"]["start"] <= sm["rss_mb"]["max"]
    assert set(sm["lag"]) == {"first", "last", "max", "mean"}
    assert r["ingestor_counters"]["fixes_new"] == r["fixes_stored"]
    # Every fix decided against its wearer's three fleet fences.
    assert p["fences_per_device"] == 3
    assert r["ingestor_counters"]["fence_decisions"] == 3 * r["fixes_stored"]
    assert r["machine"]["mosquitto"] and r["machine"]["postgres"]
    assert "RSS MB start" in proc.stdout  # the table


@pytest.mark.timeout(90)
def test_quick_api_latency_bench_measures_every_route_saturated_and_paced(tmp_path: Path) -> None:
    r = run_quick("bench.api_latency", tmp_path, timeout=85)
    assert r["benchmark"] == "api_latency" and r["params"]["quick"] is True
    assert r["fixes_stored"] == 5 * 2 * 24 * 60
    assert set(r["routes"]) == {"latest", "history_1_day", "history_1_day_bucket_5min"}
    assert r["params"]["caller"] == "family"
    assert set(r["python_loop_2m_ms_before_route"]) == set(r["routes"])
    for route, levels in r["routes"].items():
        assert set(levels) == {"saturated", "load_50"}, route
        top, paced = levels["saturated"], levels["load_50"]
        assert top["requests"] > 0 and top["requests_per_s"] > 0, route
        assert paced["offered_per_s"] == round(top["requests_per_s"] * 0.5, 1), route
        for level in (top, paced):
            assert level["errors"] == 0 and level["api_cpu_ms_per_request"] > 0, (route, level)
            assert level["client_cpu_ms_per_request"] > 0, (route, level)
            assert 0 < level["p50_ms"] <= level["p95_ms"] <= level["p99_ms"], (route, level)


@pytest.mark.timeout(60)
def test_quick_geofence_bench_agrees_with_the_naive_loop(tmp_path: Path) -> None:
    r, stdout = run_quick_pure("bench.geofence", tmp_path, timeout=55)
    assert r["workload"]["devices"] == 10_000 and r["workload"]["pairs"] == 30_000
    assert r["vectorised"]["decisions_per_s_median"] > 0 and r["naive"]["decisions_per_s"] > 0
    # The fast path answers what Shapely's scalar calls answer, to the millimetre.
    assert r["naive"]["max_abs_diff_m"] < 1e-3
    assert r["ratio_median_vs_naive"] > 0
    assert "targets:" in stdout


@pytest.mark.timeout(120)
def test_quick_fence_memory_bench_measures_memory_and_every_load_path(tmp_path: Path) -> None:
    r, stdout = run_quick_pure("bench.fence_memory", tmp_path, timeout=110)
    assert r["benchmark"] == "fence_memory" and r["workload"]["devices"] == 2_000
    for memory in (r["memory"], r["memory_stored_rows"]):
        assert memory["fences"] == 6_000 and memory["skipped"] == 0
        assert memory["bytes_per_fence"] > 0 and memory["peak_bytes_per_fence"] > 0
    assert all(v > 0 for v in r["load"].values()) and len(r["load"]) == 3
    assert all(v > 0 for v in r["baseline_one_at_a_time"].values())
    assert set(r["targets"]) >= {"bytes_per_fence", "load_per_s", "bytes_met", "load_met"}
    assert r["machine"]["python"] and "targets:" in stdout
