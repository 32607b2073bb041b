"""Publisher processes: a few long-lived workers, each one MQTT connection publishing for many
devices, reused by every phase of a run (broker ceiling, ingest, batches) so that all phases
are driven by exactly the same publishers.

Protocol on each worker's pipe (all waits are bounded):
    main → worker  ("prepare", spec)   build the payloads, connect           → ("ready", n)
    main → worker  ("go",)             publish them all, as fast as PUBACKs come back
                                       (or paced at ``spec.rate`` messages/s)
                                                                              → ("done", stats)
    main → worker  ("exit",)
Any failure is answered with ("error", text).
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import os
import threading
import time
import traceback
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from bench.payloads import Workload, messages_for
from bench.procstat import cpu_seconds

CONNECT_TIMEOUT_S = 10.0
PACE_SLACK_S = 0.001  # a paced publisher sleeps only when this far ahead of its schedule


@dataclass(frozen=True)
class PublishSpec:
    host: str
    port: int
    client_id: str
    qos: int
    workload: Workload
    publishers: int
    window: int  # most messages published and not yet acknowledged (QoS 1)
    timeout_s: float  # the whole publish must end within this
    rate: float | None = None  # messages/s of this publisher, paced; None: as fast as acked


def mqtt_client(client_id: str, **kwargs: Any) -> mqtt.Client:
    return mqtt.Client(
        CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5, **kwargs
    )


def wait_connected(client: mqtt.Client, timeout: float = CONNECT_TIMEOUT_S) -> None:
    """Block until the (looping) client is connected, or raise."""
    deadline = time.monotonic() + timeout
    while not client.is_connected():
        if time.monotonic() >= deadline:
            raise TimeoutError(f"MQTT client {client._client_id!r} did not connect")
        time.sleep(0.01)


class _Publisher:
    """One connection, the payloads of one phase, and a window of unacknowledged messages."""

    def __init__(self, spec: PublishSpec, worker: int) -> None:
        self.spec = spec
        self.messages = list(messages_for(spec.workload, worker, spec.publishers))
        self.acked = 0
        self.last_ack = 0.0
        self.all_acked = threading.Event()
        self.window = threading.Semaphore(spec.window)
        self.client = mqtt_client(spec.client_id)
        self.client.max_queued_messages_set(0)
        self.client.on_publish = self._on_publish
        self.client.connect(spec.host, spec.port, keepalive=60)
        self.client.loop_start()
        try:
            wait_connected(self.client)
        except BaseException:
            self.close()
            raise

    def _on_publish(self, client, userdata, mid, reason_code, properties) -> None:
        self.acked += 1
        self.last_ack = time.monotonic()
        self.window.release()
        if self.acked == len(self.messages):
            self.all_acked.set()

    def run(self) -> dict[str, Any]:
        """Publish everything; return once the broker has acknowledged it all."""
        if not self.messages:
            self.all_acked.set()
        cpu0 = cpu_seconds(os.getpid())
        deadline = time.monotonic() + self.spec.timeout_s
        first = time.monotonic()
        interval = 1.0 / self.spec.rate if self.spec.rate else 0.0
        for i, (topic, payload, _) in enumerate(self.messages):
            if interval:
                # Message i is due at first + i × interval; sleeping only when more than
                # PACE_SLACK_S ahead sends small bursts, a few per millisecond at most.
                ahead = first + i * interval - time.monotonic()
                if ahead > PACE_SLACK_S:
                    time.sleep(ahead)
            if not self.window.acquire(timeout=max(0.0, deadline - time.monotonic())):
                raise TimeoutError("publisher: the broker stopped acknowledging")
            self.client.publish(topic, payload, qos=self.spec.qos)
        last_publish = time.monotonic()
        if not self.all_acked.wait(max(0.0, deadline - time.monotonic())):
            raise TimeoutError(f"publisher: {self.acked} of {len(self.messages)} acknowledged")
        return {
            "messages": len(self.messages),
            "fixes": sum(n for _, _, n in self.messages),
            "acked": self.acked,
            "first_publish": first,
            "last_publish": last_publish,
            "last_ack": self.last_ack,
            "cpu_s": round(cpu_seconds(os.getpid()) - cpu0, 3),
            "payload_bytes": sum(len(p) for _, p, _ in self.messages),
        }

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def worker_main(worker: int, pipe: Connection) -> None:
    pub: _Publisher | None = None
    while True:
        if not pipe.poll(900):
            return  # the main process is gone or stuck: do not linger
        cmd = pipe.recv()
        try:
            if cmd[0] == "exit":
                return
            if cmd[0] == "prepare":
                pub = _Publisher(cmd[1], worker)
                pipe.send(("ready", len(pub.messages)))
            elif cmd[0] == "go":
                assert pub is not None, "go before prepare"
                try:
                    result = pub.run()
                finally:
                    pub.close()
                    pub = None
                pipe.send(("done", result))
        except Exception:
            if pub is not None:
                pub.close()
                pub = None
            pipe.send(("error", traceback.format_exc()))


class PublisherPool:
    """``n`` publisher processes (spawned, so they share nothing with the main process)."""

    def __init__(self, n: int) -> None:
        ctx = mp.get_context("spawn")
        self.pipes: list[Connection] = []
        self.procs: list[mp.process.BaseProcess] = []
        for i in range(n):
            parent, child = ctx.Pipe()
            proc = ctx.Process(target=worker_main, args=(i, child), name=f"bench-pub-{i}")
            proc.daemon = True
            proc.start()
            self.pipes.append(parent)
            self.procs.append(proc)

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self.procs if p.pid is not None]

    def _gather(self, expect: str, timeout: float) -> list[Any]:
        deadline = time.monotonic() + timeout
        out = []
        for i, pipe in enumerate(self.pipes):
            if not pipe.poll(max(0.0, deadline - time.monotonic())):
                raise TimeoutError(f"publisher {i} did not answer {expect!r} in {timeout:.0f} s")
            kind, value = pipe.recv()
            if kind != expect:
                raise RuntimeError(f"publisher {i}: {kind}: {value}")
            out.append(value)
        return out

    def prepare(self, specs: list[PublishSpec], timeout: float = 120) -> list[int]:
        for pipe, spec in zip(self.pipes, specs, strict=True):
            pipe.send(("prepare", spec))
        return self._gather("ready", timeout)

    def go(self) -> None:
        for pipe in self.pipes:
            pipe.send(("go",))

    def results(self, timeout: float) -> list[dict[str, Any]]:
        return self._gather("done", timeout)

    def close(self) -> None:
        for pipe in self.pipes:
            with contextlib.suppress(OSError):
                pipe.send(("exit",))
        for proc in self.procs:
            proc.join(5)
            if proc.is_alive():
                proc.kill()
                proc.join(5)
