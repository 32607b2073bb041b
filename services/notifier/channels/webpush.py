"""Web Push channel: an encrypted push (RFC 8291) to a browser subscription, signed with our
VAPID key (RFC 8292), through whatever push service the browser chose (FCM, Mozilla, Apple).

The payload is small JSON the service worker shows as a notification (title, body, url) plus
what it needs to group and deduplicate (alert id, kind, severity, idempotency key). The
``Topic`` header is derived from the idempotency key, so a repeat of a delivery that is still
queued at the push service (the phone is off) replaces it instead of showing twice.

Status policy: 2xx delivered. 404 and 410 are permanent and mean the subscription is gone
(the browser unsubscribed or it expired): the notifier may remove it, and only on these two.
400, 401, 403 and 413 are permanent too: the push services are large, stable servers whose
refusal of this key or this payload does not change on retry (403 usually means the
subscription was made for another VAPID key). 408, 429, 5xx, timeouts and connection errors
are retried.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
from typing import Any
from urllib.parse import urlsplit

import requests
from py_vapid import Vapid, VapidException
from pywebpush import WebPushException, webpush

from services.notifier import vapid
from services.notifier.channels.base import Delivery, Outcome

log = logging.getLogger(__name__)

TTL_S = 3600  # a push the phone has not fetched within an hour is stale; the app shows all
GONE_STATUS = frozenset({404, 410})
PERMANENT_STATUS = GONE_STATUS | {400, 401, 403, 413}


def topic(idempotency_key: str) -> str:
    """A push ``Topic`` (at most 32 URL-safe base64 characters) for a delivery."""
    digest = hashlib.sha256(idempotency_key.encode()).digest()
    return base64.urlsafe_b64encode(digest).decode()[:32]


def payload(delivery: Delivery) -> dict[str, Any]:
    """What the service worker receives (decrypted) in its ``push`` event."""
    alert = delivery.alert
    return {
        "title": delivery.message.title,
        "body": delivery.message.body,
        "url": delivery.message.url,
        "alert_id": alert.get("alert_id"),
        "severity": alert.get("severity"),
        "kind": alert.get("kind"),
        "id": delivery.idempotency_key,
    }


def _status_outcome(status: int, text: str) -> Outcome:
    if 200 <= status < 300:
        return Outcome(True, f"HTTP {status}", status)
    if status in GONE_STATUS:
        detail = (
            f"HTTP {status}: the push subscription is gone (unsubscribed or expired);"
            " remove it, the browser must subscribe again"
        )
        return Outcome(False, detail, status, permanent=True)
    detail = f"HTTP {status}: {text[:200]}".rstrip(": ")
    return Outcome(False, detail, status, permanent=status in PERMANENT_STATUS)


class WebPushChannel:
    kind = "webpush"

    def __init__(self, vapid_private_key: str | None, subject: str, timeout_s: float) -> None:
        """A key that is missing or unreadable does not stop the notifier (e-mail and
        webhooks still matter): each push then fails permanently, saying why."""
        self.subject = subject
        self.timeout_s = timeout_s
        self._vapid: Vapid | None = None
        self._key_problem = "no VAPID key configured (ANXIN_VAPID_PRIVATE_KEY): Web Push is off"
        if vapid_private_key:
            try:
                self._vapid = vapid.load(vapid_private_key)
            except ValueError as exc:
                self._key_problem = f"ANXIN_VAPID_PRIVATE_KEY is unusable: {exc}"
                log.error("%s", self._key_problem)

    def send(self, delivery: Delivery) -> Outcome:
        """Push once; never raises."""
        if self._vapid is None:
            return Outcome(False, self._key_problem, permanent=True)
        to = delivery.to
        endpoint = urlsplit(to.address)
        if endpoint.scheme not in ("https", "http") or not endpoint.netloc:
            return Outcome(False, "push endpoint is not an http(s) URL", permanent=True)
        if not to.keys or not to.keys.get("p256dh") or not to.keys.get("auth"):
            return Outcome(False, "push subscription has no p256dh/auth keys", permanent=True)
        headers = {"Topic": topic(delivery.idempotency_key)}
        if delivery.alert.get("severity") == "critical":
            headers["Urgency"] = "high"  # wake the phone now, even on battery saver
        try:
            response = webpush(
                subscription_info={"endpoint": to.address, "keys": dict(to.keys)},
                data=json.dumps(payload(delivery), ensure_ascii=False, default=str),
                vapid_private_key=self._vapid,
                vapid_claims={"sub": self.subject},  # a fresh dict: pywebpush adds aud, exp
                timeout=self.timeout_s,
                ttl=TTL_S,
                headers=headers,
            )
        except WebPushException as exc:
            if exc.status_code is None:  # refused before sending: bad keys or endpoint
                return Outcome(False, f"push subscription refused: {exc.message}", permanent=True)
            return _status_outcome(exc.status_code, getattr(exc.response, "text", ""))
        except requests.Timeout:
            return Outcome(False, f"timed out after {self.timeout_s:g} s")
        except requests.RequestException as exc:
            return Outcome(False, f"{type(exc).__name__}: {exc}")
        except VapidException as exc:
            return Outcome(
                False, f"VAPID claims refused (subject {self.subject!r}): {exc}", permanent=True
            )
        except (ValueError, TypeError) as exc:
            # The subscription's keys are not a P-256 point / 16 bytes: it never will be.
            return Outcome(False, f"push subscription is malformed: {exc}", permanent=True)
        except Exception as exc:  # never raise into the notifier's loop
            log.exception("push to %s failed unexpectedly", to.address)
            return Outcome(False, f"{type(exc).__name__}: {exc}")
        if isinstance(response, str):  # only with curl=True, which we never ask for
            return Outcome(False, "pywebpush returned no response")
        return _status_outcome(response.status_code, response.text)
