"""``python -m bench --quick`` runs end to end and writes a complete result.

Only the shape and the bookkeeping are checked (every section present, positive numbers, every
published fix stored once): timings depend on the machine and are never asserted here.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.procs import ROOT

ADMIN_URL = os.environ.get("ANXIN_TEST_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
INGEST_SECTIONS = ("ingest_1", "ingest_2", "batches")


@pytest.mark.timeout(60)
def test_quick_bench_writes_every_section(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANXIN_")}
    env["ANXIN_BENCH_ADMIN_URL"] = ADMIN_URL
    proc = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--out", str(tmp_path)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=50,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    files = list(tmp_path.glob("*.json"))
    assert len(files) == 1, files
    r = json.loads(files[0].read_text())

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

    naive = r["naive"]
    assert naive["stored"] == naive["fixes"] == p["naive_fixes"]
    assert naive["stored_in_table"] == naive["fixes"]
    assert naive["fixes_per_s"] > 0

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
    assert r["machine"]["mosquitto"] and r["machine"]["postgres"]
    assert "RSS MB start" in proc.stdout  # the table
