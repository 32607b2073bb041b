"""Webhook channel: POST the alert as signed JSON to a URL a contact (or a care service) runs.

The receiver must be able to trust what it gets and drop repeats, so every request carries
``Anxin-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">`` made with the
webhook's own secret, and ``Idempotency-Key`` (also the body's ``id``). ``sign`` and ``verify``
are pure so a receiver written in Python can use them as they are (docs/notifications.md).

Status policy (docs/notifications.md): 2xx delivered; 410 Gone permanent (the receiver says
the hook no longer exists); everything else, 404 and other 4xx included, is retried by the
notifier, because receivers are small servers that return 404/401/502 while they are being
redeployed or their secret is rotated, and an SOS lost to a deploy costs more than a few
retries. Redirects are not followed: the signed alert goes only to the configured URL.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import time
from datetime import date
from typing import Any

import httpx

from services.notifier.channels.base import Delivery, Outcome

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "Anxin-Signature"
USER_AGENT = "Anxin-Notifier/1"
PERMANENT_STATUS = frozenset({410})


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The ``Anxin-Signature`` header value for ``body`` sent at ``timestamp``.

    The timestamp is inside the MAC so a captured request cannot be replayed later with a
    fresh time (``verify`` refuses old ones)."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={mac.hexdigest()}"


def verify(secret: str, header: str, body: bytes, now: float, tolerance_s: float = 300) -> bool:
    """Whether ``header`` (the ``Anxin-Signature`` value) signs ``body`` with ``secret`` and
    was made within ``tolerance_s`` of ``now`` (unix seconds, e.g. ``time.time()``).

    For receivers. ``body`` must be the raw request bytes, before any JSON parsing. Several
    ``v1=`` entries are accepted (any one may match) so a sender can sign with an old and a
    new secret while a secret is rotated. The comparison is constant-time."""
    timestamp: int | None = None
    candidates: list[str] = []
    for part in header.split(","):
        name, _, value = part.strip().partition("=")
        if name == "t":
            try:
                timestamp = int(value)
            except ValueError:
                return False
        elif name == "v1":
            candidates.append(value)
    if timestamp is None or not candidates or abs(now - timestamp) > tolerance_s:
        return False
    expected = sign(secret, timestamp, body).rpartition("v1=")[2]
    # Check every candidate, so the time taken does not say which one matched.
    matched = False
    for candidate in candidates:
        matched |= hmac.compare_digest(expected.encode(), candidate.encode())
    return matched


def _json_default(value: Any) -> str:
    """The alert dict may hold datetimes (the API shows them as ISO strings; so do we)."""
    if isinstance(value, date):  # a datetime is a date too
        return value.isoformat()
    return str(value)


def request_body(delivery: Delivery) -> bytes:
    """The JSON the receiver gets; ``id`` repeats the Idempotency-Key for receivers that only
    look at the body."""
    message = delivery.message
    payload = {
        "id": delivery.idempotency_key,
        "attempt": delivery.attempt,
        "alert": delivery.alert,
        "message": {"title": message.title, "body": message.body, "url": message.url},
    }
    return json.dumps(payload, ensure_ascii=False, default=_json_default).encode()


class WebhookChannel:
    """Sends one delivery per ``send``. One client (its TLS setup is made once), but a new
    connection per request: alerts are rare, and a kept-alive connection to a receiver that
    has restarted since would only fail the next alert."""

    kind = "webhook"

    def __init__(self, timeout_s: float) -> None:
        self.timeout_s = timeout_s
        self._client = httpx.Client(
            timeout=timeout_s,
            follow_redirects=False,
            limits=httpx.Limits(max_keepalive_connections=0),
        )

    def send(self, delivery: Delivery) -> Outcome:
        """POST once; never raises (a failure of the far end is an ``Outcome``)."""
        to = delivery.to
        if not to.secret:
            # An unsigned alert could not be told from a forged one; retrying cannot fix it.
            return Outcome(False, "webhook has no signing secret", permanent=True)
        body = request_body(delivery)
        headers = {
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
            "Idempotency-Key": delivery.idempotency_key,
            # Signed per attempt: a retry ten minutes later must not look like a replay.
            SIGNATURE_HEADER: sign(to.secret, int(time.time()), body),
        }
        try:
            response = self._client.post(to.address, content=body, headers=headers)
        except httpx.TimeoutException:
            return Outcome(False, f"timed out after {self.timeout_s:g} s")
        except (httpx.InvalidURL, httpx.UnsupportedProtocol) as exc:
            return Outcome(False, f"webhook URL is not usable: {exc}", permanent=True)
        except httpx.HTTPError as exc:
            return Outcome(False, f"{type(exc).__name__}: {exc}")
        except Exception as exc:  # never raise into the notifier's loop
            log.exception("webhook send to %s failed unexpectedly", to.address)
            return Outcome(False, f"{type(exc).__name__}: {exc}")
        return outcome_of(response)


def outcome_of(response: httpx.Response) -> Outcome:
    """The status policy above, in one place."""
    status = response.status_code
    if 200 <= status < 300:
        return Outcome(True, f"HTTP {status}", status)
    if 300 <= status < 400:
        where = response.headers.get("Location", "?")
        detail = f"HTTP {status} redirect to {where} not followed; update the webhook URL"
        return Outcome(False, detail, status)
    detail = f"HTTP {status} {response.reason_phrase}: {response.text[:200]}".rstrip(": ")
    return Outcome(False, detail, status, permanent=status in PERMANENT_STATUS)
