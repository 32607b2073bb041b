"""The whole path with real processes: ``anxin sim`` → Mosquitto → ``anxin ingest`` →
PostgreSQL → the family API, and the faults it must survive."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import psycopg
import pytest
from fastapi.testclient import TestClient

from services.api.app import create_app
from services.settings import Settings
from services.storage.provisioning import seed_demo
from tests.support.broker import MosquittoProcess
from tests.support.procs import AnxinProcess, alive, anxin_env, descendants
from tests.support.stack import count, start_ingestor, wait_for


def run_sim(tmp: Path, mqtt_url: str, prefix: str, *args: str) -> AnxinProcess:
    env = anxin_env(mqtt_url=mqtt_url, topic_prefix=prefix)
    summary = tmp / "sim-summary.json"
    return AnxinProcess(
        ["sim", *args, "--summary", str(summary), "--seed", "42"], env, tmp / "sim.log"
    ).start()


def summary(tmp: Path) -> dict:
    return json.loads((tmp / "sim-summary.json").read_text())


def published_keys(s: dict) -> set[tuple[str, int]]:
    return {(d, seq) for d, dev in s["devices"].items() for seq in dev["fix_seqs"]}


def stored_keys(db_url: str) -> list[tuple[str, int]]:
    with psycopg.connect(db_url) as conn:
        return [(d, s) for d, s in conn.execute("SELECT device_id, seq FROM positions")]


def test_simulated_watches_reach_the_api(
    tmp_path: Path, broker: MosquittoProcess, db_url: str, topic_prefix: str
) -> None:
    with psycopg.connect(db_url) as conn:
        seed_demo(conn, 8)
    ingestor = start_ingestor(tmp_path, broker.url, db_url, topic_prefix)
    try:
        sim = run_sim(tmp_path, broker.url, topic_prefix, "--devices", "8", "--rate", "10",
                      "--fixes", "40", "--press", "3:sos:silent@1")  # fmt: skip
        assert sim.wait(90) == 0, sim.log()[-3000:]
        s = summary(tmp_path)
        published = published_keys(s)
        assert len(published) == 8 * 40
        wait_for(lambda: len(stored_keys(db_url)) >= len(published), 30, "every fix stored")
        stored = stored_keys(db_url)
        assert sorted(stored) == sorted(published)  # each once, none missing, none extra
        assert count(db_url, "SELECT count(*) FROM alarms WHERE mode = 'silent'") == 1
        assert count(db_url, "SELECT count(*) FROM dead_letters") == 0
    finally:
        ingestor.stop()
    settings = Settings(database_url=db_url, api_token="t0ken")
    with TestClient(create_app(settings)) as client:
        client.headers["Authorization"] = "Bearer t0ken"
        for device, dev in s["devices"].items():
            body = client.get(f"/v1/wearers/wearer-{device}/location").json()
            assert body["device_id"] == device
            with psycopg.connect(db_url) as conn:
                newest = conn.execute(
                    "SELECT lat, lon FROM positions WHERE device_id = %s ORDER BY t DESC LIMIT 1",
                    (device,),
                ).fetchone()
            assert (body["location"]["lat"], body["location"]["lon"]) == pytest.approx(newest)
            history = client.get(f"/v1/wearers/wearer-{device}/history").json()
            assert len(history["points"]) == dev["fixes_published"]


@pytest.mark.fault
def test_sigkilled_ingestor_loses_no_alarm_and_no_fix(
    tmp_path: Path, broker: MosquittoProcess, db_url: str, topic_prefix: str
) -> None:
    """50 watches publish QoS 1 fixes and alarms; the ingestor is SIGKILLed mid-stream and
    restarted: every (device, seq) of a fix and of an alarm is stored exactly once."""
    with psycopg.connect(db_url) as conn:
        seed_demo(conn, 50)
    ingestor = start_ingestor(tmp_path, broker.url, db_url, topic_prefix)
    sim = run_sim(tmp_path, broker.url, topic_prefix, "--devices", "50", "--rate", "4",
                  "--fixes", "40", "--sos-every", "0.2", "--drain-timeout", "90")  # fmt: skip
    try:
        wait_for(lambda: count(db_url, "SELECT count(*) FROM alarms") >= 3, 30, "first alarms")
        assert ingestor.proc is not None
        store_processes = descendants(ingestor.proc.pid)
        assert len(store_processes) == 1  # the main lane's store process
        ingestor.kill()  # SIGKILL mid-stream: unacked messages stay with the broker
        # ... and its store process, which ignores SIGTERM, follows it by itself.
        wait_for(lambda: not any(alive(p) for p in store_processes), 10, "store process gone")
        stored_before = count(db_url, "SELECT count(*) FROM positions")
        time.sleep(2)  # watches keep publishing to a session with nobody at home
        ingestor = start_ingestor(tmp_path, broker.url, db_url, topic_prefix)
        assert sim.wait(120) == 0, sim.log()[-3000:]
    finally:
        sim.stop()
    s = summary(tmp_path)
    assert s["totals"]["alarms_pressed"] >= 10
    assert s["unreceipted_alarms"] == []
    published = published_keys(s)
    wait_for(lambda: len(stored_keys(db_url)) >= len(published), 30, "every fix stored")
    ingestor.stop()
    assert sorted(stored_keys(db_url)) == sorted(published)
    assert stored_before < len(published)  # the kill really happened mid-stream
    assert "session present: True" in ingestor.log()  # the backlog came from the session
    pressed = {(d, a["seq"]) for d, dev in s["devices"].items() for a in dev["alarms"]}
    with psycopg.connect(db_url) as conn:
        alarms = [(d, q) for d, q in conn.execute("SELECT device_id, seq FROM alarms")]
    assert sorted(alarms) == sorted(pressed)  # every alarm, exactly once


@pytest.mark.fault
def test_two_replicas_on_a_shared_subscription_store_every_fix_once(
    tmp_path: Path, broker: MosquittoProcess, db_url: str, topic_prefix: str
) -> None:
    with psycopg.connect(db_url) as conn:
        seed_demo(conn, 12)
    replicas = [
        start_ingestor(tmp_path, broker.url, db_url, topic_prefix, replica=n) for n in (1, 2)
    ]
    try:
        sim = run_sim(tmp_path, broker.url, topic_prefix, "--devices", "12", "--rate", "10",
                      "--fixes", "50", "--sos-every", "0.5")  # fmt: skip
        assert sim.wait(90) == 0, sim.log()[-3000:]
        published = published_keys(summary(tmp_path))
        wait_for(lambda: len(stored_keys(db_url)) >= len(published), 30, "every fix stored")
    finally:
        for r in replicas:
            r.stop()
    assert sorted(stored_keys(db_url)) == sorted(published)
    shares = []
    for r in replicas:
        final = re.findall(r"stopped: Counters\(messages=(\d+), fixes_new=(\d+)", r.log())
        assert final, r.log()[-2000:]
        shares.append(int(final[-1][1]))
    assert sum(shares) == len(published)
    assert min(shares) > 0.2 * len(published)  # both replicas really shared the work
