"""A busy ingestor sends no keep-alive pings: its PUBACKs are traffic.

Why it matters: Mosquitto answers a PINGREQ only after every message it already holds for
that client, so behind a backlog the PINGRESP can come later than the keep-alive, paho then
drops the connection, and the broker redelivers the whole in-flight window (seen in the
ingest benchmark: a reconnect and 417 duplicates in one run). paho 2.2 itself pings every
keep-alive however many PUBACKs it writes (services/mqtt_url.py, ``note_packets_sent``).
"""

from __future__ import annotations

import re
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg

from services.mqtt_url import parse_mqtt_url
from services.protocol import Fix, Topics, UplinkKind
from services.storage.provisioning import demo_device_id, seed_demo
from tests.support.broker import MosquittoProcess
from tests.support.stack import count, start_ingestor, wait_for

KEEPALIVE_S = 1
STREAM_S = 5.0
RATE = 200  # fixes a second, from 20 watches


def test_a_busy_ingestor_sends_no_pings_while_it_acknowledges(
    tmp_path: Path, db_url: str, topic_prefix: str
) -> None:
    broker = MosquittoProcess(tmp_path / "mosquitto")
    broker.conf_path.write_text(broker.conf_path.read_text() + "log_type debug\n")
    broker.start()
    try:
        with psycopg.connect(db_url) as conn:
            seed_demo(conn, 20)
        ingestor = start_ingestor(
            tmp_path, broker.url, db_url, topic_prefix,
            mqtt_keepalive_s=KEEPALIVE_S, device_rate_per_s=0, ingestor_batch_size=20,
        )  # fmt: skip
        target = parse_mqtt_url(broker.url)
        pub = target.client(f"stream-{uuid.uuid4().hex[:6]}")
        pub.connect(target.host, target.port)
        pub.loop_start()
        topics = Topics(topic_prefix)
        t0 = datetime.now(UTC) - timedelta(minutes=10)
        sent = 0
        start = time.monotonic()
        try:
            while time.monotonic() - start < STREAM_S:
                d = sent % 20 + 1
                fix = Fix(seq=sent, t=t0 + timedelta(milliseconds=sent), lat=31.2, lon=121.4,
                          acc=10)  # fmt: skip
                pub.publish(topics.uplink(demo_device_id(d), UplinkKind.LOC),
                            fix.model_dump_json(), qos=1)  # fmt: skip
                sent += 1
                time.sleep(1 / RATE)
            stored = "SELECT count(*) FROM positions"
            wait_for(lambda: count(db_url, stored) == sent, 20, "every fix stored")
        finally:
            pub.loop_stop()
            pub.disconnect()
            ingestor.stop()
        ingestor_log = ingestor.log()
    finally:
        broker.stop()  # flushes its log
    log = broker.log_path.read_text(errors="replace")
    main_lane = f"{topic_prefix}-ingestor-1"
    lane = re.escape(main_lane)
    # Mosquitto stamps each line with its epoch second: the pings that count are those sent
    # while PUBACKs were flowing (an idle second before or after the stream may ping).
    pubacks = [int(t) for t in re.findall(rf"(?m)^(\d+): Received PUBACK from {lane} \(Mid", log)]
    pings = [int(t) for t in re.findall(rf"(?m)^(\d+): Received PINGREQ from {lane}$", log)]
    busy = [t for t in pings if pubacks[0] < t < pubacks[-1]]
    # The alarm lane, idle, pings as it should: the check sees the pings that are sent.
    idle_pings = re.findall(rf"(?m)^\d+: Received PINGREQ from {lane}-alarms$", log)
    assert len(pubacks) >= sent and pubacks[-1] - pubacks[0] >= STREAM_S - 1
    assert idle_pings, "the idle alarm lane should have pinged (is debug logging on?)"
    assert busy == [], f"{len(busy)} PINGREQ while acknowledging {sent} messages"
    assert "Keep alive timeout" not in ingestor_log
