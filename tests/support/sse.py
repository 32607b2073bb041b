"""A Server-Sent Events client for tests: reads a stream in a thread and keeps the events."""

from __future__ import annotations

import contextlib
import http.client
import json
import socket
import threading
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit


@dataclass(frozen=True)
class SseEvent:
    id: int | None
    type: str
    data: Any
    at: float  # time.monotonic() when it arrived


class SseClient:
    """Over http.client so that ``close`` can shut the socket under a blocked read: the
    reader stops at once, as when a phone loses signal (httpx cannot be interrupted so)."""

    def __init__(self, url: str, token: str, last_event_id: int | None = None) -> None:
        parts = urlsplit(url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        self.path = parts.path + (f"?{parts.query}" if parts.query else "")
        self.headers = {"Authorization": f"Bearer {token}", "Accept": "text/event-stream"}
        if last_event_id is not None:
            self.headers["Last-Event-ID"] = str(last_event_id)
        self.events: list[SseEvent] = []
        self.connected = threading.Event()
        self.status: int | None = None
        self._stop = threading.Event()
        self._conn = http.client.HTTPConnection(self.host, self.port, timeout=30)
        self._thread = threading.Thread(target=self._read, daemon=True)

    def start(self) -> SseClient:
        self._thread.start()
        if not self.connected.wait(10):
            raise AssertionError(f"SSE stream {self.path} did not open")
        return self

    def close(self) -> None:
        self._stop.set()
        sock = self._conn.sock
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        self._thread.join(10)
        self._conn.close()

    def of_type(self, kind: str) -> list[SseEvent]:
        return [e for e in self.events if e.type == kind]

    def _read(self) -> None:
        try:
            self._conn.request("GET", self.path, headers=self.headers)
            response = self._conn.getresponse()
            self.status = response.status
            self._conn.sock.settimeout(None)  # type: ignore[union-attr]
            self.connected.set()
            fields: dict[str, str] = {}
            while not self._stop.is_set():
                raw = response.fp.readline()  # type: ignore[union-attr]
                if not raw:
                    return
                line = raw.decode().rstrip("\r\n")
                if line == "":
                    if "data" in fields:
                        self.events.append(
                            SseEvent(
                                int(fields["id"]) if "id" in fields else None,
                                fields.get("event", "message"),
                                json.loads(fields["data"]),
                                time.monotonic(),
                            )
                        )
                    fields = {}
                elif not line.startswith(":"):
                    name, _, value = line.partition(":")
                    fields[name] = value.removeprefix(" ")
        except (OSError, ValueError, AttributeError):
            if not self._stop.is_set():
                raise
