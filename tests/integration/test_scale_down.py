"""Scaling down: a replica removed with ``anxin ingest --leave-group`` strands nothing."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest

from services.protocol import Fix, UplinkKind
from services.storage.provisioning import seed_demo
from tests.support.broker import MosquittoProcess
from tests.support.procs import AnxinProcess, anxin_env
from tests.support.stack import Watch, count, start_ingestor, wait_for


def publish_fixes(watch: Watch, seqs: range) -> None:
    t0 = datetime.now(UTC) - timedelta(minutes=5)
    for s in seqs:
        fix = Fix(seq=s, t=t0 + timedelta(seconds=s), lat=31.23, lon=121.47, acc=10)
        watch.publish(UplinkKind.LOC, fix.model_dump_json())


def settled(db_url: str, seconds: float = 1.0) -> int:
    """The stored count once it has stopped moving."""
    last = -1
    while True:
        now = count(db_url, "SELECT count(*) FROM positions")
        if now == last:
            return now
        last = now
        time.sleep(seconds)


@pytest.mark.fault
def test_leave_group_stores_the_backlog_and_hands_the_traffic_to_the_others(
    tmp_path: Path, broker: MosquittoProcess, db_url: str, topic_prefix: str
) -> None:
    with psycopg.connect(db_url) as conn:
        seed_demo(conn, 1)
    one = start_ingestor(tmp_path, broker.url, db_url, topic_prefix, replica=1)
    two = start_ingestor(tmp_path, broker.url, db_url, topic_prefix, replica=2)
    two.stop()  # a plain stop keeps its session: the broker queues its share for it
    watch = Watch(broker.url, topic_prefix, "w00001")
    try:
        publish_fixes(watch, range(1, 101))
        stranded = 100 - settled(db_url)
        assert stranded > 10  # replica 2's share waits in its session
        env = anxin_env(
            mqtt_url=broker.url,
            database_url=db_url,
            topic_prefix=topic_prefix,
            ingestor_client_id=f"{topic_prefix}-ingestor-2",
        )
        leave = AnxinProcess(["ingest", "--leave-group"], env, tmp_path / "leave.log").start()
        assert leave.wait(60) == 0, leave.log()[-2000:]
        assert count(db_url, "SELECT count(*) FROM positions") == 100
        publish_fixes(watch, range(101, 151))  # now everything goes to replica 1
        wait_for(lambda: count(db_url, "SELECT count(*) FROM positions") == 150, 15, "150")
    finally:
        watch.close()
        one.stop()
    assert "left the subscription group" in leave.log()
