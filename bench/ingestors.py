"""The real ingestor (``python -m services.cli ingest``) as replicas, and their sessions.

Each phase uses fresh client ids. After a phase the replicas stop with SIGTERM (which keeps
their persistent sessions, as in production) and the benchmark then ends those sessions, so
that the broker does not keep queueing a share of the next phase's messages for a replica
that will never come back (Mosquitto's shared subscriptions do exactly that).
"""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

from bench.procstat import cpu_seconds, peak_rss_mb, pss_mb
from bench.publish import mqtt_client, wait_connected
from tests.support.procs import AnxinProcess, anxin_env, descendants

SUBSCRIBE_TIMEOUT_S = 300.0  # the main lane subscribes once every fence is loaded


class Replicas:
    def __init__(
        self,
        workdir: Path,
        phase: str,
        n: int,
        mqtt_url: str,
        database_url: str,
        prefix: str,
        settings: dict[str, str],
    ) -> None:
        self.client_ids = [f"{prefix}-{phase}-ingestor-{i}" for i in range(1, n + 1)]
        self.max_pss_mb: dict[str, float] = {}  # per replica, the most seen by sample_pss
        self._pids: dict[str, int] = {}
        self.procs = [
            AnxinProcess(
                ["ingest"],
                anxin_env(
                    mqtt_url=mqtt_url,
                    database_url=database_url,
                    topic_prefix=prefix,
                    ingestor_client_id=cid,
                    **settings,
                ),
                workdir / f"{phase}-ingestor-{i}.log",
            )
            for i, cid in enumerate(self.client_ids, start=1)
        ]

    def start(self) -> None:
        for p in self.procs:
            p.start()
        deadline = time.monotonic() + SUBSCRIBE_TIMEOUT_S
        for p in self.procs:
            while "(fixes lane)" not in p.log() and "(all lane)" not in p.log():
                assert p.proc is not None
                if p.proc.poll() is not None:
                    raise RuntimeError(f"ingestor exited at start:\n{p.log()[-3000:]}")
                if time.monotonic() >= deadline:
                    raise TimeoutError(f"ingestor did not subscribe:\n{p.log()[-3000:]}")
                time.sleep(0.05)
        # Found once: the store process starts before the main lane subscribes, and lives as
        # long as its replica (a /proc scan at every CPU or memory sample would be work the
        # benchmark itself adds to the machine it measures).
        self._pids = self._find_pids()

    def fence_load_s(self) -> list[float | None]:
        """Seconds each replica took to load its fence cache before subscribing (its log)."""
        found = [re.search(r"fence cache: \d+ fences \(version \d+\) in ([\d.]+) s", p.log())
                 for p in self.procs]  # fmt: skip
        return [float(m.group(1)) if m else None for m in found]

    @property
    def pids(self) -> dict[str, int]:
        """Each replica's process and its store process (``ingestor_1``, ``ingestor_1_store``):
        a replica's CPU and memory are both's. Known once ``start`` has returned."""
        return self._pids

    def _find_pids(self) -> dict[str, int]:
        out = {}
        for i, p in enumerate(self.procs, 1):
            if p.proc:
                out[f"ingestor_{i}"] = p.proc.pid
                for j, child in enumerate(sorted(descendants(p.proc.pid))):
                    out[f"ingestor_{i}_store" + (f"_{j}" if j else "")] = child
        return out

    def alive(self) -> bool:
        return all(p.proc is not None and p.proc.poll() is None for p in self.procs)

    def cpu_seconds(self) -> float:
        return sum(cpu_seconds(pid) for pid in self.pids.values())

    def sample_pss(self) -> None:
        """Note each replica's PSS (its processes added up) if it is the most seen yet."""
        for replica, pids in self._by_replica().items():
            try:
                total = sum(pss_mb(pid) for pid in pids)
            except OSError:
                continue  # a process just ended
            self.max_pss_mb[replica] = max(self.max_pss_mb.get(replica, 0.0), round(total, 1))

    def _by_replica(self) -> dict[str, list[int]]:
        out: dict[str, list[int]] = {}
        for name, pid in self.pids.items():
            out.setdefault("_".join(name.split("_")[:2]), []).append(pid)
        return out

    def peak_rss_mb(self) -> list[float]:
        """Per replica, the sum of its processes' peaks (an upper bound: pages the fork
        shares are counted in each)."""
        return [round(sum(map(peak_rss_mb, pids)), 1) for pids in self._by_replica().values()]

    def stop(self) -> list[dict[str, Any]]:
        """SIGTERM each replica; return what each said in its final ``stopped:`` line."""
        out = []
        for p in self.procs:
            code = p.stop(timeout=20)
            out.append({"exit_code": code, **final_counters(p.log_path)})
        return out

    def logs_tail(self, chars: int = 2000) -> str:
        return "\n".join(f"--- {p.log_path.name}\n{p.log()[-chars:]}" for p in self.procs)


def final_counters(log_path: Path) -> dict[str, int]:
    """The ingestor's final counters (its last ``stopped`` log lines), both lanes added up."""
    try:
        text = log_path.read_text(errors="replace")
    except OSError:
        return {}
    main = re.findall(r"stopped: Counters\(([^)]*)\)", text)
    if not main:
        return {}
    out = {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", main[-1])}
    # The alarm lane (same process, its own connection) counts its own messages and alarms.
    lane = re.findall(r"stopped \(alarms lane\): Counters\(([^)]*)\)", text)
    for k, v in re.findall(r"(\w+)=(\d+)", lane[-1] if lane else ""):
        out[k] = max(out.get(k, 0), int(v)) if k == "held_max" else out.get(k, 0) + int(v)
    return out


def end_sessions(host: str, port: int, client_ids: list[str]) -> None:
    """Discard the broker's persistent sessions of these ingestors (clean start, no expiry),
    their alarm lanes' included: a session left behind stays a member of the shared group,
    and the broker keeps handing it its turn of the messages."""
    for cid in [c for base in client_ids for c in (base, f"{base}-alarms")]:
        client = mqtt_client(cid)
        client.connect(host, port, keepalive=10, clean_start=True)
        client.loop_start()
        try:
            wait_connected(client)
        finally:
            client.disconnect()
            client.loop_stop()
