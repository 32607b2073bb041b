"""``anxin demo`` on a machine with no broker or database configured: embedded servers from
wheels, watches moving in the API, and Ctrl-C leaves no process behind."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from tests.support.procs import ROOT, alive, descendants, free_port
from tests.support.stack import wait_for


def _get(url: str, token: str) -> dict:
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(req, timeout=5) as r:
        return json.loads(r.read())


def test_demo_runs_everything_embedded_and_stops_clean(tmp_path: Path) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANXIN_")}
    env |= {"ANXIN_API_PORT": str(port), "ANXIN_DATA_DIR": str(tmp_path / "var")}
    log_path = tmp_path / "demo.log"
    with log_path.open("wb") as log:
        demo = subprocess.Popen(
            [sys.executable, "-m", "services.cli", "demo", "--devices", "4", "--rate", "2"],
            cwd=ROOT,
            env=env | {"PYTHONUNBUFFERED": "1"},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_for(lambda: "API token" in log_path.read_text(), 60, "the demo to start")
        token = re.search(r"API token\s+(\S+)", log_path.read_text()).group(1)  # type: ignore[union-attr]
        base = f"http://127.0.0.1:{port}"
        url = f"{base}/v1/wearers/wearer-w00001/location"
        wait_for(lambda: _get(url, token)["location"] is not None, 30, "a first fix")
        first = _get(url, token)["location"]
        wait_for(lambda: _get(url, token)["location"]["t"] != first["t"], 30, "a newer fix")
        devices = _get(f"{base}/v1/devices", token)["devices"]
        assert [d["device_id"] for d in devices] == ["w00001", "w00002", "w00003", "w00004"]
        assert all(d["online"] for d in devices)
        # The printed family account logs in and sees its wearer, and only that one.
        family = re.search(r"Family\s+(\S+)\s+password (\S+)", log_path.read_text())
        assert family is not None
        login = urllib.request.Request(
            f"{base}/v1/auth/login",
            data=json.dumps({"email": family[1], "password": family[2]}).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(login, timeout=5) as r:
            access = json.loads(r.read())["access_token"]
        assert _get(f"{base}/v1/me", access)["wearers"][0]["wearer_id"] == "wearer-w00001"
        me = _get(f"{base}/v1/me", access)
        feed = _get(f"{base}/v1/contacts/{me['contact_id']}/alerts", access)
        assert set(feed["counts"]) == {"total", "critical", "high", "medium", "low"}
        children = descendants(demo.pid)
        assert len(children) >= 5  # broker, database, ingestor, notifier, API, simulator
    finally:
        demo.send_signal(signal.SIGINT)  # what Ctrl-C sends
        code = demo.wait(60)
    assert code == 0, log_path.read_text()[-3000:]
    time.sleep(0.5)
    left = [p for p in children if Path(f"/proc/{p}").exists() and alive(p)]
    assert left == [], f"left running: {left}"
    # PostgreSQL daemonises (its parent is init, not the demo): it must have shut down too.
    pidfiles = list((tmp_path / "var").rglob("postmaster.pid"))
    assert pidfiles == [], "embedded PostgreSQL still running"
    assert (tmp_path / "var" / "postgres").is_dir()  # it did run, embedded
