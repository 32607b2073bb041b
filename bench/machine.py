"""What the figures were measured on: a benchmark result is meaningless without it."""

from __future__ import annotations

import json
import os
import platform
import re
import subprocess
import sys
import time
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def _run(*cmd: str) -> str:
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=10, cwd=ROOT)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return (out.stdout + out.stderr).strip()


def mosquitto_version() -> str:
    found = re.search(r"mosquitto version (\S+)", _run("mosquitto", "-h"))
    return found.group(1) if found else "unknown"


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def mem_total_mb() -> int | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) // 1024
    except OSError:
        pass
    return None


def package_versions(*names: str) -> dict[str, str]:
    out = {}
    for n in names:
        try:
            out[n] = metadata.version(n)
        except metadata.PackageNotFoundError:
            out[n] = "missing"
    return out


def python_speed_ms() -> float:
    """Milliseconds a fixed pure-Python loop takes here (best of 3): the yardstick for
    comparing runs on different machines of the same kind (seen: 2-core VMs whose per-core
    speed differs by 2.5×), since the services' costs are mostly interpreter time."""
    best = float("inf")
    for _ in range(3):
        t = time.perf_counter()
        total = 0
        for i in range(2_000_000):
            total += i
        best = min(best, time.perf_counter() - t)
    return round(best * 1000, 1)


def common_machine_info() -> dict[str, Any]:
    """What every benchmark records about the box it ran on."""
    return {
        "python_loop_2m_ms": python_speed_ms(),
        "nproc": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)),
        "cpu_model": cpu_model(),
        "mem_total_mb": mem_total_mb(),
        "loadavg_at_start": list(os.getloadavg()),
        "platform": platform.platform(),
        "python": sys.version.split()[0],
    }


def machine_info(postgres_version: str) -> dict[str, Any]:
    commit = _run("git", "rev-parse", "HEAD")
    status = _run("git", "status", "--porcelain", "--untracked-files=no").splitlines()
    dirty = [line.split(maxsplit=1)[1] for line in status if len(line.split()) > 1]
    return {
        **common_machine_info(),
        "python_implementation": platform.python_implementation(),
        "mosquitto": mosquitto_version(),
        "postgres": postgres_version,
        "packages": package_versions("paho-mqtt", "psycopg", "psycopg-binary", "pydantic"),
        "git_commit": commit if re.fullmatch(r"[0-9a-f]{40}", commit) else None,
        "git_dirty": bool(dirty),
        "git_modified": dirty[:50],  # was the measured ingestor the committed one?
    }


def result_envelope(name: str, machine: dict[str, Any]) -> dict[str, Any]:
    """The head of a result: which benchmark, when, on what, and how busy the box was at the
    end (call it when the measuring is done)."""
    return {
        "benchmark": name,
        "utc": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine,
        "loadavg_at_end": list(os.getloadavg()),
    }


def save_result(result: dict[str, Any], out_dir: Path, name: str) -> Path:
    """``<out_dir>/<name>-<UTC>.json``: where a benchmark's figures are kept."""
    out_dir.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    path = out_dir / f"{name}-{stamp}.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {path}")
    return path
