"""Embedded MQTT 5 broker for `anxin demo`: rumqttd 0.20, as bundled in the iotcore 0.4.0 wheel.

rumqttd has no shutdown API, so it runs in a child Python process (iotcore's own
``iotcore._serve`` entry point, pinned with the wheel) that we can terminate. We start that
child ourselves instead of using ``iotcore.Broker`` so that its output goes to a log file we can
show when startup fails, and so that it gets its own session (Ctrl-C in the terminal then only
reaches `anxin demo`, which stops the broker in order). The child exits by itself when our end
of its stdin pipe closes, i.e. when this process dies for any reason, even SIGKILL (better than
PR_SET_PDEATHSIG, which fires when the *thread* that started the child ends).

rumqttd limits that matter to Anxin (measured, see docs/embedded.md): at most 100 unacked QoS 1
messages in flight per subscriber whatever its ReceiveMaximum; PUBACKs must come in delivery
order (else it drops the connection); the last member of a $share group leaving a persistent
session with unacked messages crashes its router; sessions live in memory only and never expire;
messages are kept per subscription filter in memory, the oldest dropped past the limits below.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import IO, NoReturn

# Same bootstrap as iotcore.Broker: drop the working directory from sys.path so a local
# directory called `iotcore` cannot shadow the package.
_CHILD = (
    "import sys; sys.path[:] = [p for p in sys.path if p not in ('', '.')]; "
    "from iotcore._serve import main; main()"
)

MAX_PAYLOAD = 4 * 1024 * 1024  # the ingestor dead-letters big payloads itself, so deliver them
SEGMENT_SIZE = 8 * 1024 * 1024  # per subscription filter, kept in memory: 16 x 8 MiB = 128 MiB,
SEGMENT_COUNT = 16  # i.e. ~400k 300-byte fixes queued for an absent ingestor

# Going over max_connections wedges rumqttd 0.20's listener for good (a poisoned mutex), so the
# limit is far above what a demo uses. connection_timeout_ms is a u16 in rumqttd (max 65535).
# dynamic_filters = false: a publish nobody subscribed to is dropped instead of being kept in
# memory in a log of its own.
_CONFIG = """\
id = 0

[router]
id = 0
max_connections = 10000
max_outgoing_packet_count = 1000
max_segment_size = {segment_size}
max_segment_count = {segment_count}
shared_subscriptions_strategy = "roundrobin"

[v5.1]
name = "anxin-v5"
listen = "127.0.0.1:{port}"
next_connection_delay_ms = 0

[v5.1.connections]
connection_timeout_ms = 60000
max_payload_size = {max_payload}
max_inflight_count = 500
dynamic_filters = false
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class EmbeddedBroker:
    """rumqttd with one MQTT 5 listener on 127.0.0.1; files (config, log) go in ``data_dir``."""

    def __init__(self, data_dir: Path, port: int = 0) -> None:
        self.data_dir = Path(data_dir)
        self.config_path = self.data_dir / "rumqttd.toml"
        self.log_path = self.data_dir / "rumqttd.log"
        self._requested_port = port
        self.port = port
        self._process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def url(self) -> str:
        if self._process is None:
            raise RuntimeError("EmbeddedBroker is not started")
        return f"mqtt://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        return None if self._process is None else self._process.pid

    def start(self, timeout: float = 10.0) -> EmbeddedBroker:
        """Start rumqttd and return once its port accepts connections."""
        if self._process is not None:
            return self
        from iotcore import IotCoreBroker  # imported late: `anxin` without a demo never needs it

        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.port = self._requested_port or _free_port()
        self.config_path.write_text(
            _CONFIG.format(
                port=self.port,
                max_payload=MAX_PAYLOAD,
                segment_size=SEGMENT_SIZE,
                segment_count=SEGMENT_COUNT,
            )
        )
        # rumqttd would only log a bind failure and keep running; fail here, clearly, instead.
        IotCoreBroker(config_path=str(self.config_path)).check_ports()
        self._log = self.log_path.open("wb")
        self._process = subprocess.Popen(
            [sys.executable, "-c", _CHILD, json.dumps({"config_path": str(self.config_path)})],
            stdin=subprocess.PIPE,  # the child exits when this pipe closes: we died
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env={**os.environ, "IOTCORE_LOG_LEVEL": "INFO"},
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                self._fail(f"exited with code {self._process.returncode}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return self
            except OSError:
                time.sleep(0.02)
        self._fail(f"did not accept connections on port {self.port} within {timeout}s")

    def _fail(self, reason: str) -> NoReturn:
        self.stop()
        log = self.log_path.read_text(errors="replace")[-4000:]
        raise RuntimeError(f"embedded MQTT broker {reason}; {self.log_path}:\n{log}")

    def stop(self, timeout: float = 5.0) -> None:
        """Terminate the broker (SIGTERM, then SIGKILL) and wait for it. Safe to call twice."""
        process, self._process = self._process, None
        if process is not None:
            if process.poll() is None:  # not reaped yet, so its pid (== pgid) is still ours
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout)
            if process.stdin is not None:
                process.stdin.close()
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> EmbeddedBroker:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
