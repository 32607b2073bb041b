"""The broker-ceiling subscriber: receives and acknowledges, nothing else.

It subscribes the way the ingestor does (MQTT 5, a persistent session, manual acknowledgement,
a large ``ReceiveMaximum``, the shared-subscription filters), so the gap between its rate and
the ingestor's is the cost of the ingestor's own work. It runs in its own process and ends its
session when done, so the broker keeps nothing for it in the phases that follow.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import threading
import time
import traceback
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from bench.procstat import cpu_seconds
from bench.publish import mqtt_client, wait_connected
from services.protocol import Topics


@dataclass(frozen=True)
class SinkSpec:
    host: str
    port: int
    client_id: str
    prefix: str
    group: str
    qos: int
    expected: int
    receive_maximum: int
    timeout_s: float  # for the whole receive, from "go"
    idle_s: float  # give up this long after the last message (QoS 0 may lose some)


class _Sink:
    def __init__(self, spec: SinkSpec) -> None:
        self.spec = spec
        self.count = 0
        self.duplicates = 0
        self.first_rx = 0.0
        self.last_rx = 0.0
        self.done = threading.Event()
        self.subscribed = threading.Event()
        self.refused: list[str] = []
        self.client = mqtt_client(spec.client_id, manual_ack=spec.qos > 0)
        self.client.max_queued_messages_set(0)
        self.client.on_message = self._on_message
        self.client.on_subscribe = self._on_subscribe
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = 3600
        props.ReceiveMaximum = spec.receive_maximum
        self.client.connect(spec.host, spec.port, keepalive=60, clean_start=False, properties=props)
        self.client.loop_start()
        try:
            wait_connected(self.client)
            filters = Topics(spec.prefix).shared_uplink_filters(spec.group)
            self.filters = filters
            self.client.subscribe([(f, spec.qos) for f in filters])
            if not self.subscribed.wait(10) or self.refused:
                raise RuntimeError(f"sink: subscription failed: {self.refused or 'timeout'}")
        except BaseException:
            self.client.loop_stop()
            raise

    def _on_subscribe(self, client, userdata, mid, reason_codes, properties) -> None:
        self.refused = [str(rc) for rc in reason_codes if rc.is_failure]
        self.subscribed.set()

    def _on_message(self, client: mqtt.Client, userdata, msg: mqtt.MQTTMessage) -> None:
        now = time.monotonic()
        if self.count == 0:
            self.first_rx = now
        self.count += 1
        self.last_rx = now
        if msg.dup:
            self.duplicates += 1
        if msg.qos > 0:
            client.ack(msg.mid, msg.qos)
        if self.count >= self.spec.expected:
            self.done.set()

    def run(self) -> dict[str, Any]:
        cpu0 = cpu_seconds(os.getpid())
        deadline = time.monotonic() + self.spec.timeout_s
        while not self.done.wait(0.2):
            now = time.monotonic()
            if now >= deadline:
                break
            if self.count and now - self.last_rx > self.spec.idle_s:
                break
        return {
            "received": self.count,
            "duplicates": self.duplicates,
            "first_rx": self.first_rx,
            "last_rx": self.last_rx,
            "cpu_s": round(cpu_seconds(os.getpid()) - cpu0, 3),
        }

    def close(self) -> None:
        """Leave: unsubscribe and end the session, so the broker queues nothing more for us."""
        try:
            if self.client.is_connected():
                self.client.unsubscribe(self.filters)
                props = Properties(PacketTypes.DISCONNECT)
                props.SessionExpiryInterval = 0
                self.client.disconnect(properties=props)
        finally:
            self.client.loop_stop()


def sink_main(spec: SinkSpec, pipe: Connection) -> None:
    sink: _Sink | None = None
    try:
        sink = _Sink(spec)
        pipe.send(("ready", None))
        if not pipe.poll(300):
            return
        pipe.recv()  # "go"
        pipe.send(("done", sink.run()))
    except Exception:
        pipe.send(("error", traceback.format_exc()))
    finally:
        if sink is not None:
            sink.close()


class SinkProcess:
    def __init__(self, spec: SinkSpec) -> None:
        ctx = mp.get_context("spawn")
        self.pipe, child = ctx.Pipe()
        self.proc = ctx.Process(target=sink_main, args=(spec, child), name="bench-sink")
        self.proc.daemon = True
        self.proc.start()

    def _answer(self, expect: str, timeout: float) -> Any:
        if not self.pipe.poll(timeout):
            raise TimeoutError(f"sink did not answer {expect!r} in {timeout:.0f} s")
        kind, value = self.pipe.recv()
        if kind != expect:
            raise RuntimeError(f"sink: {kind}: {value}")
        return value

    def ready(self, timeout: float = 30) -> None:
        self._answer("ready", timeout)

    def go(self) -> None:
        self.pipe.send(("go",))

    def result(self, timeout: float) -> dict[str, Any]:
        return self._answer("done", timeout)

    def close(self) -> None:
        self.proc.join(10)
        if self.proc.is_alive():
            self.proc.kill()
            self.proc.join(5)
