"""The store process's protocol on its own (services/ingestor/store_process.py): batches in,
answers out in order, counts and receipts carried back, a clean close, and a death noticed.

Under pytest-xdist the worker already runs threads, so ``start`` spawns rather than forks
here: this also keeps the spawn path, which ``anxin ingest`` never takes, working."""

from __future__ import annotations

import os
import signal
import threading
from datetime import UTC, datetime

import psycopg
import pytest

from services.ingestor.pipeline import Received
from services.ingestor.store_process import StoreProcess, StoreProcessDied
from services.protocol import Alarm, AlarmMode, AlarmType, Fix, Topics, UplinkKind
from services.settings import Settings
from services.storage.provisioning import seed_demo
from tests.support.procs import alive
from tests.support.stack import count, wait_for


def _fix(topics: Topics, device: str, seq: int, now: datetime) -> Received:
    payload = Fix(seq=seq, t=now, lat=31.2, lon=121.4, acc=10).model_dump_json().encode()
    return Received(topics.uplink(device, UplinkKind.LOC), payload, now)


@pytest.fixture
def store(db_url: str, topic_prefix: str):
    with psycopg.connect(db_url) as conn:
        seed_demo(conn, 2)
    settings = Settings(database_url=db_url, topic_prefix=topic_prefix, device_rate_per_s=0)
    s = StoreProcess(settings, takes_fixes=True)
    assert s.open(threading.Event())
    yield s
    s.close()


def test_two_batches_in_flight_are_answered_in_order_with_their_counts(
    store: StoreProcess, db_url: str, topic_prefix: str
) -> None:
    topics, now = Topics(topic_prefix), datetime.now(UTC)
    sos = Alarm(seq=7, t=now, type=AlarmType.SOS, mode=AlarmMode.SILENT).model_dump_json()
    first = [_fix(topics, "w00001", s, now) for s in range(3)]
    second = [
        _fix(topics, "w00002", 1, now),
        Received(topics.uplink("w00002", UplinkKind.ALARM), sos.encode(), now),
        Received(topics.uplink("w00002", UplinkKind.LOC), b"not json", now),
    ]
    store.send(first)
    store.send(second)  # before the first answer: the child never waits for the parent
    a, b = store.receive(threading.Event()), store.receive(threading.Event())
    assert a is not None and b is not None
    assert (a.counts.messages, a.counts.fixes_new, a.receipts) == (3, 3, {})
    assert (b.counts.messages, b.counts.fixes_new, b.counts.alarms_new) == (3, 1, 1)
    assert (b.counts.dead_letters, b.receipts) == (1, {"w00002": [7]})
    assert count(db_url, "SELECT count(*) FROM positions") == 4


def test_a_store_process_that_dies_is_noticed_not_waited_for(
    store: StoreProcess, topic_prefix: str
) -> None:
    pid = store.pid
    assert pid is not None and alive(pid)
    os.kill(pid, signal.SIGKILL)
    # Noticed when the batch is sent, if the child's end of the pipe is closed already, or
    # else when its answer is awaited: either way as StoreProcessDied, never a hang.
    with pytest.raises(StoreProcessDied):
        store.send([_fix(Topics(topic_prefix), "w00001", 1, datetime.now(UTC))])
        store.receive(threading.Event())


def test_a_batch_sent_to_a_store_process_long_dead_raises_store_process_died(
    store: StoreProcess, topic_prefix: str
) -> None:
    pid = store.pid
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: not alive(pid), 10, "the store process gone")
    with pytest.raises(StoreProcessDied):
        # A pipe buffer may take the first batch; it cannot take them all.
        for seq in range(1, 200):
            store.send([_fix(Topics(topic_prefix), "w00001", seq, datetime.now(UTC))] * 50)


def test_close_ends_the_store_process(db_url: str, topic_prefix: str) -> None:
    s = StoreProcess(Settings(database_url=db_url, topic_prefix=topic_prefix), takes_fixes=True)
    assert s.open(threading.Event())
    pid = s.pid
    assert pid is not None and alive(pid)
    s.close()
    wait_for(lambda: not alive(pid), 10, "the store process gone")
