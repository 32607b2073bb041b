"""Hostile input through the real broker and ingestor: odd topics, odd strings, numbers that
are not numbers, deep nesting, oversize payloads, and one watch flooding the others. Each bad
message is dead-lettered with a reason, nothing is silently dropped, the ingestor keeps
running, and the API can still read everything that was stored.
(test_ingest_payloads.py has the plain cases: not JSON, wrong types, lat 91, NaN, 1 MB.)"""

from __future__ import annotations

import json
import re
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import paho.mqtt.client as mqtt
import psycopg
from fastapi.testclient import TestClient
from paho.mqtt.enums import CallbackAPIVersion

from services.api.app import create_app
from services.protocol import MAX_BATCH_ITEMS, Alarm, Fix, Topics, UplinkKind
from services.settings import Settings
from services.storage.provisioning import seed_demo
from tests.integration.test_telemetry_path import published_keys, run_sim, summary
from tests.support.broker import MosquittoProcess
from tests.support.procs import AnxinProcess
from tests.support.stack import Watch, count, start_ingestor, wait_for

NOW = datetime.now(UTC)


def good_fix(seq: int, **over: object) -> dict:
    fix = json.loads(Fix(seq=seq, t=NOW - timedelta(seconds=10), lat=31.2, lon=121.4,
                         acc=10).model_dump_json())  # fmt: skip
    return fix | over


def raw_fix(seq: int, field: str, token: str) -> bytes:
    """A fix whose ``field`` is the literal JSON text ``token`` (e.g. a bare Infinity)."""
    text = json.dumps(good_fix(seq, **{field: "@@"}))
    return text.replace('"@@"', token).encode()


def publish_raw(broker: MosquittoProcess, topic: str, payload: bytes) -> None:
    """Publish on any topic, as a misbehaving client would (not through ``Watch``)."""
    client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    client.connect("127.0.0.1", broker.port)
    client.loop_start()
    try:
        client.publish(topic, payload, qos=1).wait_for_publish(10)
    finally:
        client.disconnect()
        client.loop_stop()


def test_hostile_payloads_are_dead_lettered_with_reasons_and_ingest_goes_on(
    stack: tuple[AnxinProcess, str], broker: MosquittoProcess, topic_prefix: str
) -> None:
    ingestor, db_url = stack
    nested = 30_000  # deep, and still under the size limit
    bad: dict[str, tuple[UplinkKind, bytes, str]] = {
        "Infinity": (UplinkKind.LOC, raw_fix(1, "lat", "Infinity"), "lat: Input should be a finit"),
        "-Infinity": (UplinkKind.LOC, raw_fix(2, "lon", "-Infinity"), "lon: Input should be"),
        "1e999": (UplinkKind.LOC, raw_fix(3, "acc", "1e999"), "acc: Input should be a finite"),
        "lon 181": (UplinkKind.LOC, json.dumps(good_fix(4, lon=181)).encode(),
                    "lon: Input should be less than or equal to 180"),
        "lat -90.5": (UplinkKind.LOC, json.dumps(good_fix(5, lat=-90.5)).encode(),
                      "lat: Input should be greater than or equal to -90"),
        "acc 0": (UplinkKind.LOC, json.dumps(good_fix(6, acc=0)).encode(),
                  "acc: Input should be greater than 0"),
        "hdg 360": (UplinkKind.LOC, json.dumps(good_fix(7, hdg=360)).encode(),
                    "hdg: Input should be less than 360"),
        "SQL in src": (UplinkKind.LOC, json.dumps(good_fix(8, src="gps'; DROP TABLE positions;--"))
                       .encode(), "src: Input should be 'gps', 'wifi' or 'cell'"),
        "RTL override in src": (UplinkKind.LOC, json.dumps(good_fix(9, src="\u202espg")).encode(),
                                "src: Input should be"),
        "NUL in an ack": (UplinkKind.ACK, json.dumps({"v": 1, "seq": 10, "t": NOW.isoformat(),
                                                      "cmd": "c\u0000", "ok": True}).encode(),
                          "cmd: text may not contain NUL"),
        "lone surrogate": (UplinkKind.ACK, b'{"v":1,"seq":11,"t":"' + NOW.isoformat().encode()
                           + b'","cmd":"\\ud800","ok":true}', "not valid JSON"),
        "invalid UTF-8": (UplinkKind.LOC, b'{"v":1,"seq":12,"src":"\xff\xfe"}', "not valid JSON"),
        "deep arrays": (UplinkKind.LOC, b"[" * nested + b"]" * nested, "recursion limit"),
        "deep objects": (UplinkKind.BATCH, b'{"a":' * nested + b"1" + b"}" * nested,
                         "recursion limit"),
        "one byte over": (UplinkKind.LOC, b" " * (256 * 1024 - 1) + b"{}",
                          "payload of 262145 bytes exceeds the 262144-byte limit"),
        "a batch too long": (UplinkKind.BATCH, json.dumps(
            {"v": 1, "fixes": [good_fix(100)] * (MAX_BATCH_ITEMS + 1)}).encode(),
            "fixes: List should have at most 1000 items"),
    }  # fmt: skip
    watch = Watch(broker.url, topic_prefix, "w00002")
    try:
        for kind, payload, _ in bad.values():
            watch.publish(kind, payload)
        # SQL-looking text where text is allowed is data, kept verbatim, not executed.
        sqlish = "x'); DROP TABLE positions; --"
        ack = {"v": 1, "seq": 20, "t": NOW.isoformat(), "cmd": sqlish[:64], "ok": False,
               "detail": "Robert'); DROP TABLE devices;-- 🆘 \u202e"}  # fmt: skip
        watch.publish(UplinkKind.ACK, json.dumps(ack))
        # An SOS whose clock says year 1 (1 BC in UTC) is kept, at a time that can be read back.
        watch.publish(UplinkKind.ALARM, json.dumps(
            {"v": 1, "seq": 21, "t": "0001-01-01T00:00:00+14:00", "type": "sos"}))  # fmt: skip
        watch.publish(UplinkKind.LOC, json.dumps(good_fix(22)))  # and life goes on
        wait_for(lambda: count(db_url, "SELECT count(*) FROM positions") == 1, 15, "the good fix")
        wait_for(lambda: count(db_url, "SELECT count(*) FROM dead_letters") == len(bad), 15,
                 "every letter")  # fmt: skip
        wait_for(lambda: count(db_url, "SELECT count(*) FROM alarms") == 1, 15, "the alarm")
    finally:
        watch.close()
    topic = Topics(topic_prefix)
    with psycopg.connect(db_url) as conn:
        letters = conn.execute("SELECT payload, reason, device_id, topic FROM dead_letters")
        by_payload = {bytes(p): (r, d, t) for p, r, d, t in letters.fetchall()}
        acks = conn.execute("SELECT cmd, detail FROM command_acks").fetchall()
        tables = conn.execute("SELECT count(*) FROM pg_tables WHERE tablename IN"
                              " ('positions', 'devices')").fetchone()  # fmt: skip
    for name, (kind, payload, needle) in bad.items():
        reason, device, stored_topic = by_payload[payload]  # kept byte for byte
        assert needle in reason, (name, reason)
        assert device == "w00002" and stored_topic == topic.uplink("w00002", kind)
    assert acks == [(ack["cmd"], ack["detail"])]
    assert tables == (2,)
    assert ingestor.proc is not None and ingestor.proc.poll() is None
    settings = Settings(database_url=db_url, api_token="t0ken")
    with TestClient(create_app(settings)) as client:  # what was stored can be read back
        client.headers["Authorization"] = "Bearer t0ken"
        events = client.get("/v1/wearers/wearer-w00002/events")
        assert events.status_code == 200, events.text
        [sos] = events.json()
        assert sos["kind"] == "alarm_sos" and sos["t"].startswith("0001-01-02")
        assert client.get("/v1/wearers/wearer-w00002/location").status_code == 200


ODD_DEVICE_IDS = [
    "wätch",  # not ASCII
    "w00001\u200b",  # a zero-width space: looks like a real device
    "w\u202e10000",  # right-to-left override
    "🆘",
    "w00001'; DROP TABLE devices;--",
    "x" * 65,  # one longer than an id may be
    "-w00001",  # must start with a letter or digit
    "w 00001",
]


def test_odd_device_ids_in_topics_are_refused_and_kept(
    stack: tuple[AnxinProcess, str], broker: MosquittoProcess, topic_prefix: str
) -> None:
    ingestor, db_url = stack
    payload = json.dumps(good_fix(1)).encode()
    topics = [f"{topic_prefix}/v1/dev/{device}/loc" for device in ODD_DEVICE_IDS]
    for topic in topics:
        publish_raw(broker, topic, payload)
    wait_for(lambda: count(db_url, "SELECT count(*) FROM dead_letters") == len(topics), 15,
             "the letters")  # fmt: skip
    with psycopg.connect(db_url) as conn:
        rows = conn.execute("SELECT topic, device_id, payload, reason FROM dead_letters")
        letters = {t: (d, bytes(p), r) for t, d, p, r in rows.fetchall()}
    assert set(letters) == set(topics)  # each kept under the topic it came on, unicode intact
    for device_id, kept, reason in letters.values():
        assert device_id is None and kept == payload
        assert reason == "topic is not an uplink topic of protocol v1"
    assert count(db_url, "SELECT count(*) FROM positions") == 0
    assert ingestor.proc is not None and ingestor.proc.poll() is None


# -- one watch flooding the others -------------------------------------------------------------


def test_a_flooding_watch_is_limited_counted_and_dead_lettered_while_the_others_are_stored(
    tmp_path: Path, broker: MosquittoProcess, db_url: str, topic_prefix: str
) -> None:
    """w00001 publishes 2,000 fixes as fast as the broker takes them (a firmware loop), and an
    SOS in the middle; 20 ordinary watches publish one fix a second. Limit: the defaults, 60
    at once and 5 a second (ANXIN_DEVICE_BURST, ANXIN_DEVICE_RATE_PER_S)."""
    flood = 2000
    with psycopg.connect(db_url) as conn:
        seed_demo(conn, 21)
    ingestor = start_ingestor(tmp_path, broker.url, db_url, topic_prefix)
    sim = run_sim(tmp_path, broker.url, topic_prefix, "--devices", "20", "--first-index", "2",
                  "--rate", "1", "--fixes", "8", "--drain-timeout", "60")  # fmt: skip
    flooder = Watch(broker.url, topic_prefix, "w00001")
    try:
        time.sleep(2)  # the ordinary watches are under way
        started = time.monotonic()
        infos = []
        for seq in range(flood):
            fix = Fix(seq=seq, t=datetime.now(UTC), lat=31.2, lon=121.4, acc=10)
            topic = flooder.topics.uplink("w00001", UplinkKind.LOC)
            infos.append(flooder.client.publish(topic, fix.model_dump_json(), qos=1))
            if seq == flood // 2:
                sos = Alarm(seq=10_000, t=datetime.now(UTC), type="sos", mode="silent")
                flooder.publish(UplinkKind.ALARM, sos.model_dump_json())
        for info in infos:
            info.wait_for_publish(30)
        flood_s = time.monotonic() - started
        assert sim.wait(60) == 0, sim.log()[-3000:]
        published = published_keys(summary(tmp_path))
        normal = "SELECT count(*) FROM positions WHERE device_id <> 'w00001'"
        wait_for(lambda: count(db_url, normal) == len(published), 20, "every ordinary fix")
        limited = "SELECT count(*) FROM dead_letters WHERE reason LIKE 'rate_limited%%'"
        flooder_rows = "SELECT count(*) FROM positions WHERE device_id = 'w00001'"
        wait_for(lambda: count(db_url, flooder_rows) + count(db_url, limited) == flood, 20,
                 "every flooded fix stored or dead-lettered")  # fmt: skip
    finally:
        flooder.close()
        sim.stop()
        ingestor.stop()
    stored, dead = count(db_url, flooder_rows), count(db_url, limited)
    assert stored + dead == flood  # counts add up: nothing silently dropped
    assert 60 <= stored <= 60 + 5 * (flood_s + 2)  # the burst, then 5 a second
    assert dead >= flood - 60 - 5 * (flood_s + 2)
    assert count(db_url, "SELECT count(*) FROM dead_letters") == dead  # nobody else limited
    assert count(db_url, "SELECT count(*) FROM alarms WHERE device_id = 'w00001'") == 1
    assert len(published) == 20 * 8
    log = ingestor.log()
    final = re.findall(r"stopped: Counters\(.*rate_limited=(\d+)", log)
    assert final and int(final[-1]) == dead
    assert re.search(r"flood limit: \d+ messages from 1 devices .*\(w00001 ×\d+\)", log)
