"""Helpers the integration tests share: start an ingestor, publish as a watch, read tables."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from pathlib import Path

import httpx
import paho.mqtt.client as mqtt
import psycopg
from paho.mqtt.enums import CallbackAPIVersion

from services.mqtt_url import parse_mqtt_url
from services.protocol import Topics, UplinkKind
from tests.support.procs import AnxinProcess, anxin_env


def wait_for(predicate: Callable[[], bool], timeout: float, what: str, every: float = 0.1) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def start_ingestor(
    tmp: Path, mqtt_url: str, db_url: str, prefix: str, replica: int = 1, **extra: str | int
) -> AnxinProcess:
    """Start ``anxin ingest`` and return once its subscriptions are in place."""
    env = anxin_env(
        mqtt_url=mqtt_url,
        database_url=db_url,
        topic_prefix=prefix,
        ingestor_client_id=f"{prefix}-ingestor-{replica}",
        **extra,
    )
    proc = AnxinProcess(["ingest"], env, tmp / f"ingestor-{replica}.log").start()
    wait_for(lambda: main_lane_subscribed(proc.log()), 20, f"ingestor {replica} to subscribe")
    return proc


def api_up(url: str) -> bool:
    """Whether an ``anxin api`` at ``url`` answers its health check."""
    try:
        return httpx.get(url + "/healthz", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def main_lane_subscribed(log: str) -> bool:
    """The main lane subscribes last (after the alarm lane): then every uplink has a session."""
    return "(fixes lane)" in log or "(all lane)" in log


def count(db_url: str, sql: str, params: tuple = ()) -> int:
    with psycopg.connect(db_url) as conn:
        row = conn.execute(sql, params).fetchone()  # type: ignore[arg-type]
        return int(row[0]) if row else 0


class Watch:
    """A bare MQTT client publishing as one device, for hand-made payloads."""

    def __init__(self, mqtt_url: str, prefix: str, device_id: str) -> None:
        self.topics = Topics(prefix)
        self.device_id = device_id
        target = parse_mqtt_url(mqtt_url)
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=f"test-{device_id}-{uuid.uuid4().hex[:6]}",
            protocol=mqtt.MQTTv5,
        )
        self.received: list[bytes] = []
        self.client.on_message = lambda c, u, m: self.received.append(m.payload)
        self.client.connect(target.host, target.port)
        self.client.loop_start()
        self.client.subscribe(self.topics.command(device_id), qos=1)

    def publish(self, kind: UplinkKind, payload: bytes | str, qos: int = 1) -> None:
        info = self.client.publish(self.topics.uplink(self.device_id, kind), payload, qos=qos)
        info.wait_for_publish(10)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
