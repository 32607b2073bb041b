"""Real far ends for the notifier's channels, on this machine: a stdlib HTTP server (webhook
receiver or push service) and an aiosmtpd mail relay. They check what a real one would."""

from __future__ import annotations

import email
import email.policy
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email.message import EmailMessage
from http.client import HTTPMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from aiosmtpd.smtp import SMTP, Envelope, Session

from services.notifier.channels.webhook import verify


@dataclass
class Received:
    path: str
    headers: HTTPMessage  # case-insensitive, as HTTP headers are
    body: bytes
    signature_ok: bool | None = None


@dataclass
class FarEnd:
    url: str
    status: int = 200
    delay_s: float = 0.0
    secret: str | None = None  # set: behave as a webhook receiver that checks signatures
    headers: dict[str, str] = field(default_factory=dict)
    requests: list[Received] = field(default_factory=list)
    statuses: list[int] = field(default_factory=list)  # answered first, one per request
    delays: list[float] = field(default_factory=list)  # likewise, before answering


@contextmanager
def http_far_end(**kwargs: Any) -> Iterator[FarEnd]:
    far = FarEnd(url="", **kwargs)

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            got = Received(self.path, self.headers, body)
            status = far.statuses.pop(0) if far.statuses else far.status
            delay = far.delays.pop(0) if far.delays else far.delay_s
            if far.secret is not None:
                header = self.headers.get("Anxin-Signature", "")
                got.signature_ok = verify(far.secret, header, body, now=time.time())
                status = status if got.signature_ok else 401
            far.requests.append(got)
            time.sleep(delay)
            self.send_response(status)
            for name, value in far.headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    far.url = f"http://127.0.0.1:{server.server_port}"
    thread = threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    try:
        yield far
    finally:
        server.shutdown()
        server.server_close()


class RecordingRelay:
    """An aiosmtpd handler: keeps what it accepts, or refuses recipients with ``refuse``."""

    def __init__(self) -> None:
        self.envelopes: list[Envelope] = []
        self.refuse: str | None = None

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list
    ) -> str:
        if self.refuse:
            return self.refuse
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.envelopes.append(envelope)
        return "250 Message accepted"

    def messages(self) -> list[EmailMessage]:
        return [
            email.message_from_bytes(e.original_content or b"", policy=email.policy.default)
            for e in self.envelopes
        ]
