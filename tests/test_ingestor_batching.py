"""How the MQTT edge cuts batches (services/ingestor/service.py, ``_collect``): a full batch
goes as soon as it is full, a partial one when its wait is over, and the first message of an
idle spell wakes the loop at once. The network thread wakes the loop only for those, not for
every message; these check that no batch is left waiting for a wake-up that never comes."""

from __future__ import annotations

import threading
import time
from types import SimpleNamespace

from services.ingestor.service import Ingestor, Lane
from services.settings import Settings

WAIT_MS = 3_000  # a batch's longest wait: far longer than any wake-up may take


def _edge(batch_size: int, lane: Lane = Lane.FIXES) -> Ingestor:
    settings = Settings(
        mqtt_url="mqtt://127.0.0.1:1", database_url="postgresql://nobody@127.0.0.1:1/none",
        ingestor_batch_size=batch_size, ingestor_batch_wait_ms=WAIT_MS,
    )  # fmt: skip
    return Ingestor(settings, lane)


def _arrive(edge: Ingestor, n: int, start: int = 0) -> None:
    """``n`` messages as paho's network thread hands them over."""
    for i in range(start, start + n):
        msg = SimpleNamespace(topic=f"t/{i}", payload=b"{}", mid=i + 1, qos=1)
        edge._on_message(None, None, msg)


def _collect_later(edge: Ingestor) -> tuple[threading.Thread, dict]:
    out: dict = {}

    def run() -> None:
        t = time.monotonic()
        out["batch"] = edge._collect()
        out["took"] = time.monotonic() - t

    thread = threading.Thread(target=run)
    thread.start()
    return thread, out


def test_a_full_batch_goes_at_once_though_its_wait_is_not_over() -> None:
    edge = _edge(batch_size=50)
    thread, out = _collect_later(edge)
    time.sleep(0.02)  # the loop is waiting for a first message
    _arrive(edge, 20)
    time.sleep(0.05)  # ... and now for the rest of the batch
    _arrive(edge, 30, start=20)
    thread.join(WAIT_MS / 1000 + 5)
    assert [b.mid for b in out["batch"]] == list(range(1, 51))
    assert out["took"] < WAIT_MS / 1000 / 2


def test_a_partial_batch_goes_when_its_wait_is_over() -> None:
    edge = _edge(batch_size=50)
    _arrive(edge, 10)
    thread, out = _collect_later(edge)
    thread.join(WAIT_MS / 1000 + 5)
    assert len(out["batch"]) == 10
    assert out["took"] >= WAIT_MS / 1000 * 0.9


def test_the_alarm_lane_takes_a_message_the_moment_it_arrives() -> None:
    edge = _edge(batch_size=50, lane=Lane.ALARMS)
    thread, out = _collect_later(edge)
    time.sleep(0.02)
    _arrive(edge, 1)
    thread.join(5)
    assert len(out["batch"]) == 1 and out["took"] < 0.2
