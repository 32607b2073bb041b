"""Alarms survive a broker crash: the watch re-sends until the backend's receipt, sent after
the commit, arrives; the (device, seq, t) key makes the re-sends harmless."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pytest

from services.protocol import Alarm, AlarmReceipt, UplinkKind
from services.storage.provisioning import seed_demo
from tests.integration.test_telemetry_path import run_sim, summary
from tests.support.broker import MosquittoProcess
from tests.support.stack import Watch, count, start_ingestor, wait_for

pytestmark = pytest.mark.fault


@pytest.fixture
def crashable_broker(tmp_path: Path) -> Iterator[MosquittoProcess]:
    """The project's config, but no autosave during the test: a SIGKILL loses everything the
    broker accepted since it started, which is the worst case of the snapshot design."""
    b = MosquittoProcess(tmp_path / "broker", autosave_interval=3600)
    b.start()
    yield b
    b.stop()


def stored_alarms(db_url: str) -> list[tuple[str, int]]:
    with psycopg.connect(db_url) as conn:
        return sorted((d, s) for d, s in conn.execute("SELECT device_id, seq FROM alarms"))


def pressed_alarms(s: dict) -> list[tuple[str, int]]:
    return sorted((d, a["seq"]) for d, dev in s["devices"].items() for a in dev["alarms"])


def raised_alerts(db_url: str) -> dict[tuple[str, str], int]:
    """(device, alert kind) → how many alarms the alert gathered (occurrences)."""
    with psycopg.connect(db_url) as conn:
        rows = conn.execute("SELECT device_id, kind, occurrences FROM alerts").fetchall()
    assert len(rows) == len({(d, k) for d, k, _ in rows})  # one alert per device and kind
    return {(d, k): n for d, k, n in rows}


def expected_alerts(s: dict) -> dict[tuple[str, str], int]:
    """What the pressed alarms should raise: one alert per device and kind, every press
    joining it once (a re-send joins nothing)."""
    kinds = {"sos": lambda mode: f"sos_{mode}", "fall": lambda _: "fall",
             "removed": lambda _: "removed"}  # fmt: skip
    out: dict[tuple[str, str], int] = {}
    for d, dev in s["devices"].items():
        for a in dev["alarms"]:
            key = (d, kinds[a["type"]](a["mode"]))
            out[key] = out.get(key, 0) + 1
    return out


def test_an_sos_the_broker_acked_then_lost_is_stored_once(
    tmp_path: Path, crashable_broker: MosquittoProcess, db_url: str, topic_prefix: str
) -> None:
    with psycopg.connect(db_url) as conn:
        seed_demo(conn, 1)
    ingestor = start_ingestor(tmp_path, crashable_broker.url, db_url, topic_prefix)
    ingestor.stop()  # clean stop: its session keeps queueing for it inside the broker
    sim = run_sim(tmp_path, crashable_broker.url, topic_prefix, "--devices", "1",
                  "--rate", "2", "--fixes", "20", "--press", "1:sos:silent@1",
                  "--drain-timeout", "90")  # fmt: skip
    try:
        time.sleep(3)  # pressed at 1 s: PUBACKed and queued for the ingestor, not yet saved
        crashable_broker.kill()
        crashable_broker.start()
        ingestor = start_ingestor(tmp_path, crashable_broker.url, db_url, topic_prefix)
        assert sim.wait(120) == 0, sim.log()[-3000:]
    finally:
        sim.stop()
        ingestor.stop()
    s = summary(tmp_path)
    [alarm] = s["devices"]["w00001"]["alarms"]
    assert alarm["receipted"] is True
    assert alarm["sends"] >= 2  # the first copy died with the broker
    assert stored_alarms(db_url) == [("w00001", alarm["seq"])]
    assert count(db_url, "SELECT count(*) FROM events WHERE kind = 'alarm_sos'") == 1
    assert raised_alerts(db_url) == {("w00001", "sos_silent"): 1}  # its alert, raised once
    assert s["devices"]["w00001"]["ui_events"] == []  # silent, receipt included


def test_many_watches_pressing_sos_through_two_broker_crashes(
    tmp_path: Path, crashable_broker: MosquittoProcess, db_url: str, topic_prefix: str
) -> None:
    with psycopg.connect(db_url) as conn:
        seed_demo(conn, 20)
    ingestor = start_ingestor(tmp_path, crashable_broker.url, db_url, topic_prefix)
    sim = run_sim(tmp_path, crashable_broker.url, topic_prefix, "--devices", "20",
                  "--rate", "1", "--fixes", "12", "--sos-every", "0.3",
                  "--drain-timeout", "120")  # fmt: skip
    try:
        for _ in range(2):
            time.sleep(3)
            crashable_broker.kill()
            time.sleep(0.5)
            crashable_broker.start()
        assert sim.wait(180) == 0, sim.log()[-3000:]
    finally:
        sim.stop()
    s = summary(tmp_path)
    assert s["totals"]["alarms_pressed"] >= 10
    assert s["unreceipted_alarms"] == []  # every watch's alarm buffer is empty
    wait_for(lambda: count(db_url, "SELECT count(*) FROM alarms") >= len(pressed_alarms(s)), 20,
             "alarms stored")  # fmt: skip
    ingestor.stop()
    assert stored_alarms(db_url) == pressed_alarms(s)  # each once: no duplicates, none lost
    events = count(db_url, "SELECT count(*) FROM events WHERE kind LIKE 'alarm_%%'")
    assert events == len(pressed_alarms(s))  # one event per alarm, not per re-send
    assert raised_alerts(db_url) == expected_alerts(s)  # no duplicate alerts, none missing
    assert ingestor.log().count("subscribed to") >= 3  # it rode out both crashes


def test_a_lost_receipt_brings_a_resend_that_is_deduplicated_and_receipted_again(
    tmp_path: Path, broker: MosquittoProcess, db_url: str, topic_prefix: str
) -> None:
    with psycopg.connect(db_url) as conn:
        seed_demo(conn, 1)
    ingestor = start_ingestor(tmp_path, broker.url, db_url, topic_prefix)
    sos = Alarm(seq=77, t=datetime.now(UTC), type="sos", mode="silent").model_dump_json()
    try:
        # First send from a watch that vanishes right after its PUBACK: no session, so the
        # receipt the ingestor sends after committing reaches nobody.
        gone = Watch(broker.url, topic_prefix, "w00001")
        gone.client.unsubscribe(gone.topics.command("w00001"))
        gone.publish(UplinkKind.ALARM, sos)
        gone.close()
        wait_for(lambda: count(db_url, "SELECT count(*) FROM alarms") == 1, 15, "the alarm")
        back = Watch(broker.url, topic_prefix, "w00001")
        time.sleep(0.3)  # subscribed
        back.publish(UplinkKind.ALARM, sos)  # the same alarm again
        wait_for(lambda: bool(back.received), 15, "a receipt for the re-send")
        back.close()
    finally:
        ingestor.stop()
    receipt = AlarmReceipt.model_validate(json.loads(back.received[0]))
    assert receipt.seqs == [77]
    assert count(db_url, "SELECT count(*) FROM alarms") == 1
    assert count(db_url, "SELECT count(*) FROM events") == 1
    assert raised_alerts(db_url) == {("w00001", "sos_silent"): 1}
    assert "alarms_new=1," in ingestor.log()  # the re-send was a duplicate, not a new alarm


def test_a_silent_sos_receipt_shows_and_sounds_nothing_an_audible_one_reassures(
    tmp_path: Path, broker: MosquittoProcess, db_url: str, topic_prefix: str
) -> None:
    with psycopg.connect(db_url) as conn:
        seed_demo(conn, 2)
    ingestor = start_ingestor(tmp_path, broker.url, db_url, topic_prefix)
    try:
        sim = run_sim(tmp_path, broker.url, topic_prefix, "--devices", "2", "--rate", "5",
                      "--fixes", "10", "--press", "1:sos:silent@0.5",
                      "--press", "2:sos:audible@0.5")  # fmt: skip
        assert sim.wait(60) == 0, sim.log()[-3000:]
    finally:
        ingestor.stop()
    devices = summary(tmp_path)["devices"]
    assert all(a["receipted"] for d in devices.values() for a in d["alarms"])
    assert devices["w00001"]["ui_events"] == []
    assert devices["w00002"]["ui_events"] == ["siren", "screen:help-is-coming", "beep"]
