"""CPU time and memory of processes, read from /proc (Linux), so the benchmark needs no psutil."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")


def cpu_seconds(pid: int) -> float:
    """utime + stime of one process (its own threads included, not its children)."""
    text = Path(f"/proc/{pid}/stat").read_text()
    fields = text[text.rfind(")") + 2 :].split()
    # After "pid (comm) ": state is field 3, utime field 14, stime field 15 (1-based, man 5 proc).
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def status_kb(pid: int, key: str) -> int:
    """A ``kB`` line of /proc/<pid>/status, e.g. VmHWM (peak RSS) or VmRSS."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise KeyError(key)


def all_processes() -> dict[int, float]:
    """CPU seconds of every process on the machine (those readable)."""
    out = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                out[int(entry.name)] = cpu_seconds(int(entry.name))
            except (OSError, ValueError, IndexError):
                continue
    return out


def command_line(pid: int, limit: int = 80) -> str:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return "?"
    text = raw.replace(b"\0", b" ").decode(errors="replace").strip()
    return text[:limit] or "?"


def pss_mb(pid: int) -> float:
    """Proportional set size: the process's own pages plus its share of pages it shares (a
    forked child's copy-on-write pages count half in each), so the PSS of several processes
    adds up to the memory they occupy together, which their RSS overstates."""
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith("Pss:"):
            return int(line.split()[1]) / 1024
    raise KeyError("Pss")


def peak_rss_mb(pid: int) -> float:
    return status_kb(pid, "VmHWM") / 1024


@dataclass(frozen=True)
class MachineCpu:
    """Jiffies of the whole machine (first line of /proc/stat)."""

    busy: int
    total: int
    irq: int  # hardware and software interrupts (loopback TCP is largely softirq work)

    @classmethod
    def now(cls) -> MachineCpu:
        with open("/proc/stat") as f:
            values = [int(v) for v in f.readline().split()[1:]]
        idle = values[3] + (values[4] if len(values) > 4 else 0)  # idle + iowait
        total = sum(values[:8])  # guest time is already counted in user
        return cls(busy=total - idle, total=total, irq=values[5] + values[6])

    def busy_seconds_since(self, earlier: MachineCpu) -> float:
        return (self.busy - earlier.busy) / CLK_TCK

    def busy_fraction_since(self, earlier: MachineCpu) -> float:
        """Share of all cores busy between ``earlier`` and this sample (1.0 = every core)."""
        dt = self.total - earlier.total
        return (self.busy - earlier.busy) / dt if dt > 0 else 0.0


class CpuWindow:
    """CPU seconds used by some processes between ``start()`` and ``stop()``.

    ``pids`` are fixed processes (ingestor replicas, the broker, the publishers); ``groups``
    name a set of processes found anew at each end (PostgreSQL's backends of one database):
    a process that ended in between is missed, one born in between counts from zero."""

    def __init__(
        self, pids: dict[str, int], groups: dict[str, Callable[[], list[int]]] | None = None
    ) -> None:
        self.pids = pids
        self.groups = groups or {}
        self._start: dict[str, float] = {}
        self._start_groups: dict[str, dict[int, float]] = {}
        self._machine: MachineCpu | None = None
        self._everyone: dict[int, float] = {}
        self.result: dict[str, float] = {}
        self.others: list[dict[str, object]] = []

    @staticmethod
    def _group_cpu(find: Callable[[], list[int]]) -> dict[int, float]:
        out = {}
        for pid in find():
            try:
                out[pid] = cpu_seconds(pid)
            except OSError:
                continue
        return out

    def start(self) -> None:
        self._start = {k: cpu_seconds(p) for k, p in self.pids.items()}
        self._start_groups = {k: self._group_cpu(f) for k, f in self.groups.items()}
        self._everyone = all_processes()
        self._machine = MachineCpu.now()

    def stop(self) -> dict[str, float]:
        out = {k: round(cpu_seconds(p) - self._start[k], 3) for k, p in self.pids.items()}
        known = set(self.pids.values())
        for name, find in self.groups.items():
            before = self._start_groups[name]
            after = self._group_cpu(find)
            known |= set(before) | set(after)
            out[name] = round(sum(v - before.get(pid, 0.0) for pid, v in after.items()), 3)
        used = {
            pid: v - self._everyone.get(pid, 0.0)
            for pid, v in all_processes().items()
            if pid not in known
        }
        self.others = [
            {"pid": pid, "cpu_s": round(v, 2), "command": command_line(pid)}
            for pid, v in sorted(used.items(), key=lambda kv: -kv[1])[:3]
            if v >= 0.1
        ]
        assert self._machine is not None
        machine = MachineCpu.now()
        busy = machine.busy_seconds_since(self._machine)
        out["machine_busy_fraction"] = round(machine.busy_fraction_since(self._machine), 3)
        out["machine_busy_s"] = round(busy, 2)
        irq = (machine.irq - self._machine.irq) / CLK_TCK
        out["machine_irq_s"] = round(irq, 2)
        # What neither the measured processes nor interrupts used: other people's processes
        # on a shared machine, mostly. Large values mean the figures are disturbed.
        ours = sum(v for k, v in out.items() if not k.startswith("machine"))
        out["other_s"] = round(busy - irq - ours, 2)
        self.result = out
        return out
