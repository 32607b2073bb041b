"""``anxin fences check`` and ``anxin fences load`` as a person runs them."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import psycopg

from services.storage.provisioning import seed_demo
from tests.support.procs import ROOT, anxin_env

DEMO = ROOT / "geofences" / "demo" / "shanghai.geojson"


def anxin(*args: str, db_url: str | None = None) -> subprocess.CompletedProcess[str]:
    env = anxin_env(**({"database_url": db_url} if db_url else {}))
    return subprocess.run(
        [sys.executable, "-m", "services.cli", *args],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def test_check_passes_the_demo_set_and_fails_a_bad_file_line_by_line(tmp_path: Path) -> None:
    ok = anxin("fences", "check", str(DEMO))
    assert ok.returncode == 0 and "120 fences OK" in ok.stdout + ok.stderr
    doc = json.loads(DEMO.read_text())
    doc["features"][0]["properties"]["kind"] = "dangerous"
    doc["features"][1]["geometry"]["coordinates"][0].pop()  # unclose a ring
    bad = tmp_path / "bad.geojson"
    bad.write_text(json.dumps(doc))
    res = anxin("fences", "check", str(bad))
    assert res.returncode == 1
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 2
    assert "kind" in lines[0] and "not closed" in lines[1]


def test_load_stores_the_demo_set_once_and_refuses_duplicates(db_url: str) -> None:
    with psycopg.connect(db_url) as conn:
        seed_demo(conn, 20)
    first = anxin("fences", "load", str(DEMO), db_url=db_url)
    assert first.returncode == 0, first.stderr
    again = anxin("fences", "load", str(DEMO), db_url=db_url)
    assert again.returncode == 1 and "already has a fence named" in again.stderr
    replaced = anxin("fences", "load", str(DEMO), "--replace", db_url=db_url)
    assert replaced.returncode == 0, replaced.stderr
    with psycopg.connect(db_url) as conn:
        live = conn.execute("SELECT count(*) FROM fences WHERE deleted_at IS NULL").fetchone()
    assert live == (120,)
