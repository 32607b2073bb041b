"""How long after a broker restart every alarm the watches buffered while it was down is stored.

``python -m bench.alarm_recovery [--devices 20] [--down 6]``: a private Mosquitto (project
config), a fresh database, the real ingestor and ``anxin sim``; the broker is SIGKILLed, every
watch presses SOS while it is down, the broker comes back, and the clock runs from its restart
until the last alarm is committed. Prints the figure and writes
``bench/results/alarm-recovery-<UTC>.json``.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

from bench.db import bench_database
from bench.machine import common_machine_info
from tests.support.broker import MosquittoProcess
from tests.support.procs import AnxinProcess, anxin_env
from tests.support.stack import count, start_ingestor, wait_for

ADMIN = "postgresql://postgres@127.0.0.1/postgres"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--devices", type=int, default=20)
    p.add_argument("--down", type=float, default=6.0, help="seconds the broker stays down")
    p.add_argument("--out", type=Path, default=Path(__file__).with_name("results"))
    args = p.parse_args()
    prefix = f"b{uuid.uuid4().hex[:8]}"
    work = Path(tempfile.mkdtemp(prefix="alarm-recovery-"))
    broker = MosquittoProcess(work / "broker", autosave_interval=3600)
    ingestor = sim = None
    with bench_database(ADMIN, args.devices) as db_url:
        try:
            broker.start()
            ingestor = start_ingestor(work, broker.url, db_url, prefix)
            press_at = 2.0 + args.down / 2
            presses = [f"{i}:sos:silent@{press_at}" for i in range(1, args.devices + 1)]
            sim = AnxinProcess(
                ["sim", "--devices", str(args.devices), "--rate", "1", "--drain-timeout", "120",
                 "--fixes", str(int(press_at + args.down + 10)),
                 *[a for spec in presses for a in ("--press", spec)]],
                anxin_env(mqtt_url=broker.url, topic_prefix=prefix),
                work / "sim.log",
            ).start()  # fmt: skip
            time.sleep(2.0)
            broker.kill()
            time.sleep(args.down)
            assert count(db_url, "SELECT count(*) FROM alarms") == 0, "pressed before the kill"
            broker.start()
            restarted = time.monotonic()
            wait_for(
                lambda: count(db_url, "SELECT count(*) FROM alarms") >= args.devices,
                120, "every alarm stored", every=0.02,
            )  # fmt: skip
            seconds = time.monotonic() - restarted
            code = sim.wait(150)
        finally:
            for proc in (sim, ingestor):
                if proc:
                    proc.stop()
            broker.stop()
    result = {
        "benchmark": "alarm_recovery",
        "at": datetime.now(UTC).isoformat(),
        "devices": args.devices,
        "broker_down_s": args.down,
        "restart_to_all_alarms_stored_s": round(seconds, 3),
        "sim_exit_code": code,
        "machine": common_machine_info(),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"alarm-recovery-{datetime.now(UTC):%Y%m%dT%H%M%SZ}.json"
    path.write_text(json.dumps(result, indent=2))
    print(f"{args.devices} alarms buffered while the broker was down {args.down:.0f} s:"
          f" all stored {seconds:.2f} s after its restart (sim exit {code}) -> {path}")  # fmt: skip


if __name__ == "__main__":
    main()
