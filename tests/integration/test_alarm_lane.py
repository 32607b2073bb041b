"""An SOS does not queue behind location fixes: the ingestor takes alarms on a connection of
their own (the alarm lane), so one pressed during a backlog is stored before the backlog is."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import paho.mqtt.client as mqtt
import psycopg
from paho.mqtt.enums import CallbackAPIVersion

from services.mqtt_url import parse_mqtt_url
from services.protocol import Alarm, Fix, Topics, UplinkKind
from services.storage.provisioning import demo_device_id, seed_demo
from tests.support.broker import MosquittoProcess
from tests.support.stack import count, start_ingestor, wait_for

DEVICES, FIXES_EACH = 100, 200


def _publisher(url: str) -> mqtt.Client:
    target = parse_mqtt_url(url)
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"bulk-{uuid.uuid4().hex[:6]}",
                         protocol=mqtt.MQTTv5)  # fmt: skip
    client.max_inflight_messages_set(1000)
    client.connect(target.host, target.port)
    client.loop_start()
    return client


def test_an_sos_pressed_during_a_backlog_of_fixes_is_stored_before_the_backlog(
    tmp_path: Path, broker: MosquittoProcess, db_url: str, topic_prefix: str
) -> None:
    with psycopg.connect(db_url) as conn:
        seed_demo(conn, DEVICES)
    settings = {"device_rate_per_s": 0}  # a backlog, not a flood: nothing limited
    ingestor = start_ingestor(tmp_path, broker.url, db_url, topic_prefix, **settings)
    ingestor.stop()  # both lanes' sessions now queue for it in the broker
    topics = Topics(topic_prefix)
    bulk = _publisher(broker.url)
    t0 = datetime.now(UTC) - timedelta(hours=1)
    infos = []
    for i in range(FIXES_EACH):
        for d in range(1, DEVICES + 1):
            fix = Fix(seq=i, t=t0 + timedelta(seconds=i), lat=31.2, lon=121.4, acc=10)
            infos.append(bulk.publish(topics.uplink(demo_device_id(d), UplinkKind.LOC),
                                      fix.model_dump_json(), qos=1))  # fmt: skip
    for info in infos:
        info.wait_for_publish(60)
    total = DEVICES * FIXES_EACH

    ingestor = start_ingestor(tmp_path, broker.url, db_url, topic_prefix, **settings)
    try:
        sos = Alarm(seq=10_000, t=datetime.now(UTC), type="sos", mode="silent")
        bulk.publish(topics.uplink("w00042", UplinkKind.ALARM), sos.model_dump_json(),
                     qos=1).wait_for_publish(10)  # fmt: skip
        pressed = time.monotonic()
        wait_for(lambda: count(db_url, "SELECT count(*) FROM alarms") == 1, 30, "the SOS")
        stored_by_then = count(db_url, "SELECT count(*) FROM positions")
        sos_s = time.monotonic() - pressed
        wait_for(lambda: count(db_url, "SELECT count(*) FROM positions") == total, 120,
                 "the backlog")  # fmt: skip
        backlog_s = time.monotonic() - pressed
    finally:
        ingestor.stop()
        bulk.loop_stop()
    assert stored_by_then < total, (sos_s, backlog_s)  # the SOS did not wait for the backlog
    assert count(db_url, "SELECT count(*) FROM alerts WHERE kind = 'sos_silent'") == 1
    assert "(alarms lane)" in ingestor.log()
