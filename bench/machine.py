"""What the figures were measured on: a benchmark result is meaningless without it."""

from __future__ import annotations

import os
import platform
import re
import subprocess
import sys
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


def common_machine_info() -> dict[str, Any]:
    """What every benchmark records about the box it ran on."""
    return {
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
