"""The delivery channels against real far ends on this machine: a stdlib HTTP server as the
webhook receiver and as the push service, aiosmtpd as the mail relay. Nothing of ours is
mocked; the receivers check what a real one would (signature, decryption, VAPID JWT)."""

from __future__ import annotations

import base64
import json
import os
import socket
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import http_ece
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from py_vapid import jwt as vapid_jwt

from services.notifier import vapid
from services.notifier.channels.base import Address, Delivery, Message, Outcome
from services.notifier.channels.email import EmailChannel
from services.notifier.channels.webhook import WebhookChannel, sign, verify
from services.notifier.channels.webpush import WebPushChannel, topic
from tests.support.far_ends import RecordingRelay, http_far_end

SECRET = "whsec-test-1"
ALERT: dict[str, Any] = {
    "alert_id": 12,
    "wearer_name": "Wang Fang",
    "kind": "sos_silent",
    "severity": "critical",
    "t": "2026-11-25T06:04:58+00:00",
}


def delivery(to: Address, key: str = "12:1:7", **message: str) -> Delivery:
    return Delivery(
        outbox_id=7,
        idempotency_key=key,
        attempt=1,
        to=to,
        contact_name="Li Wei",
        message=Message(
            title=message.get("title", "Silent SOS: Wang Fang"),
            body=message.get("body", "Silent SOS — do not call the watch."),
            url="http://app.example/#/alerts/12",
        ),
        alert=dict(ALERT),
    )


def free_port() -> int:
    """A port nothing listens on (connections to it are refused)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---------------------------------------------------------------------------------------------
# An HTTP far end: the webhook receiver or the push service.


# ---------------------------------------------------------------------------------------------
# Webhook


def test_webhook_delivers_signed_json_the_receiver_verifies() -> None:
    with http_far_end(secret=SECRET) as far:
        outcome = WebhookChannel(timeout_s=2).send(
            delivery(Address("webhook", f"{far.url}/hooks/anxin", secret=SECRET))
        )
    assert outcome == Outcome(True, "HTTP 200", 200)
    [got] = far.requests
    assert got.path == "/hooks/anxin"
    assert got.signature_ok is True
    assert got.headers["Idempotency-Key"] == "12:1:7"
    assert got.headers["Content-Type"] == "application/json"
    assert got.headers["User-Agent"] == "Anxin-Notifier/1"
    sent = json.loads(got.body)
    assert sent["id"] == "12:1:7"
    assert sent["attempt"] == 1
    assert sent["alert"] == ALERT
    assert sent["message"]["title"] == "Silent SOS: Wang Fang"
    assert sent["message"]["url"] == "http://app.example/#/alerts/12"


def test_webhook_signed_with_the_wrong_secret_is_refused_by_the_receiver() -> None:
    with http_far_end(secret=SECRET) as far:
        outcome = WebhookChannel(timeout_s=2).send(
            delivery(Address("webhook", far.url, secret="someone-else"))
        )
    assert far.requests[0].signature_ok is False
    assert (outcome.ok, outcome.status_code, outcome.permanent) == (False, 401, False)


def test_verify_refuses_a_tampered_body_an_old_timestamp_and_garbage() -> None:
    body = b'{"id": "k", "alert": {"kind": "fall"}}'
    now = 1_800_000_000
    header = sign(SECRET, now, body)
    assert verify(SECRET, header, body, now=now + 299)
    assert not verify(SECRET, header, body.replace(b"fall", b"none"), now=now)
    assert not verify("other", header, body, now=now)
    assert not verify(SECRET, header, body, now=now + 301)  # a replay, five minutes later
    assert not verify(SECRET, header, body, now=now - 301)  # from the future
    assert not verify(SECRET, sign(SECRET, now - 3600, body), body, now=now)
    for garbage in ("", "t=abc,v1=00", f"t={now}", "v1=" + "0" * 64, f"t={now},v1="):
        assert not verify(SECRET, garbage, body, now=now)


def test_verify_accepts_either_signature_while_a_secret_is_rotated() -> None:
    body, now = b"{}", 1_800_000_000
    old = sign("old-secret", now, body)
    both = f"{old},v1={sign('new-secret', now, body).rpartition('v1=')[2]}"
    assert verify("new-secret", both, body, now=now)
    assert verify("old-secret", both, body, now=now)
    assert not verify("third", both, body, now=now)


@pytest.mark.parametrize(
    ("status", "permanent"),
    [
        (500, False),
        (503, False),
        (429, False),
        (408, False),
        (404, False),
        (401, False),
        (410, True),
    ],
)
def test_webhook_only_410_stops_retries(status: int, permanent: bool) -> None:
    with http_far_end(status=status) as far:
        outcome = WebhookChannel(timeout_s=2).send(
            delivery(Address("webhook", far.url, secret=SECRET))
        )
    assert (outcome.ok, outcome.status_code, outcome.permanent) == (False, status, permanent)


def test_webhook_redirect_is_not_followed() -> None:
    with http_far_end(status=301, headers={"Location": "http://elsewhere.invalid/"}) as far:
        outcome = WebhookChannel(timeout_s=2).send(
            delivery(Address("webhook", far.url, secret=SECRET))
        )
    assert len(far.requests) == 1
    assert not outcome.ok and not outcome.permanent
    assert "elsewhere.invalid" in outcome.detail


def test_webhook_connection_refused_is_retryable_and_does_not_raise() -> None:
    to = Address("webhook", f"http://127.0.0.1:{free_port()}/", secret=SECRET)
    outcome = WebhookChannel(timeout_s=2).send(delivery(to))
    assert not outcome.ok and not outcome.permanent
    assert outcome.status_code is None
    assert "Connect" in outcome.detail


def test_webhook_timeout_is_retryable() -> None:
    with http_far_end(delay_s=1.0) as far:
        started = time.monotonic()
        outcome = WebhookChannel(timeout_s=0.2).send(
            delivery(Address("webhook", far.url, secret=SECRET))
        )
    assert time.monotonic() - started < 0.9
    assert not outcome.ok and not outcome.permanent
    assert "timed out" in outcome.detail


def test_webhook_without_a_secret_or_with_a_bad_url_fails_permanently() -> None:
    channel = WebhookChannel(timeout_s=1)
    unsigned = channel.send(delivery(Address("webhook", "http://127.0.0.1:9/")))
    assert unsigned.permanent and "secret" in unsigned.detail
    bad_url = channel.send(delivery(Address("webhook", "ftp://example.invalid/", secret="s")))
    assert bad_url.permanent and not bad_url.ok


# ---------------------------------------------------------------------------------------------
# E-mail


def email_channel(port: int) -> EmailChannel:
    return EmailChannel(
        host="127.0.0.1",
        port=port,
        sender="Anxin <alerts@anxin.invalid>",
        user=None,
        password=None,
        starttls=False,
        timeout_s=2,
    )


def test_email_reaches_the_relay_with_recipient_subject_and_alert_header(
    smtp_relay: tuple[RecordingRelay, int],
) -> None:
    handler, port = smtp_relay
    outcome = email_channel(port).send(delivery(Address("email", "li.wei@example.org")))
    assert outcome.ok, outcome.detail
    [envelope] = handler.envelopes
    assert envelope.rcpt_tos == ["li.wei@example.org"]
    assert envelope.mail_from == "alerts@anxin.invalid"
    [mail] = handler.messages()
    assert mail["To"].addresses[0].addr_spec == "li.wei@example.org"
    assert mail["Subject"] == "Silent SOS: Wang Fang"
    assert mail["X-Anxin-Alert"] == "12"
    assert mail["Message-ID"].endswith("@anxin>")
    text = mail.get_content()
    assert "do not call the watch" in text
    assert "http://app.example/#/alerts/12" in text


def test_email_sent_twice_for_one_key_has_one_message_id(
    smtp_relay: tuple[RecordingRelay, int],
) -> None:
    handler, port = smtp_relay
    channel = email_channel(port)
    to = Address("email", "li.wei@example.org")
    for key in ("alert-12.contact-3", "alert-12.contact-3", "alert-12.contact-4"):
        assert channel.send(delivery(to, key=key)).ok
    first, again, other = (m["Message-ID"] for m in handler.messages())
    assert first == again == "<alert-12.contact-3@anxin>"
    assert other != first


def test_email_keys_that_are_no_message_id_are_hashed_stably(
    smtp_relay: tuple[RecordingRelay, int],
) -> None:
    handler, port = smtp_relay
    channel = email_channel(port)
    for _ in range(2):
        assert channel.send(delivery(Address("email", "a@example.org"), key="12:1 7/x")).ok
    first, again = (m["Message-ID"] for m in handler.messages())
    assert first == again
    assert " " not in first and first.endswith("@anxin>")


def test_email_chinese_subject_and_body_survive(smtp_relay: tuple[RecordingRelay, int]) -> None:
    handler, port = smtp_relay
    outcome = email_channel(port).send(
        delivery(
            Address("email", "li.wei@example.org"),
            title="静默求助：王芳",
            body="静默求助——请勿拨打手表。\n最后位置 12 分钟前，精度 300 米",
        )
    )
    assert outcome.ok, outcome.detail
    [mail] = handler.messages()
    assert mail["Subject"] == "静默求助：王芳"
    assert "最后位置 12 分钟前，精度 300 米" in mail.get_content()


@pytest.mark.parametrize(
    ("reply", "permanent"),
    [("550 5.1.1 No such user", True), ("451 4.3.0 Try again later", False)],
)
def test_email_refusal_5xx_is_permanent_4xx_is_retried(
    smtp_relay: tuple[RecordingRelay, int], reply: str, permanent: bool
) -> None:
    handler, port = smtp_relay
    handler.refuse = reply
    outcome = email_channel(port).send(delivery(Address("email", "nobody@example.org")))
    assert not outcome.ok
    assert outcome.permanent is permanent
    assert outcome.status_code == int(reply[:3])
    assert handler.envelopes == []


def test_email_connection_refused_is_retryable() -> None:
    outcome = email_channel(free_port()).send(delivery(Address("email", "a@example.org")))
    assert not outcome.ok and not outcome.permanent
    assert "Refused" in outcome.detail


def test_email_to_a_malformed_address_fails_permanently() -> None:
    outcome = email_channel(free_port()).send(delivery(Address("email", "a@b\r\nBcc: x@y")))
    assert not outcome.ok and outcome.permanent


# ---------------------------------------------------------------------------------------------
# Web Push


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@dataclass
class Browser:
    """A browser's push subscription: its key pair and auth secret."""

    private_key: ec.EllipticCurvePrivateKey
    auth: bytes

    @classmethod
    def new(cls) -> Browser:
        return cls(ec.generate_private_key(ec.SECP256R1()), os.urandom(16))

    def keys(self) -> dict[str, str]:
        point = self.private_key.public_key().public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
        )
        return {"p256dh": b64url(point), "auth": b64url(self.auth)}

    def decrypt(self, body: bytes) -> dict[str, Any]:
        plain = http_ece.decrypt(
            body, private_key=self.private_key, auth_secret=self.auth, version="aes128gcm"
        )
        return json.loads(plain)


SUBJECT = "mailto:alerts@anxin.invalid"


def test_webpush_is_encrypted_for_the_browser_and_signed_with_our_vapid_key() -> None:
    private, public = vapid.generate_keys()
    browser = Browser.new()
    with http_far_end(status=201) as push_service:
        endpoint = f"{push_service.url}/wpush/v2/abc123"
        outcome = WebPushChannel(private, SUBJECT, timeout_s=2).send(
            delivery(Address("webpush", endpoint, keys=browser.keys()), key="12:1:9")
        )
    assert outcome == Outcome(True, "HTTP 201", 201)
    [got] = push_service.requests
    assert got.path == "/wpush/v2/abc123"
    assert browser.decrypt(got.body) == {
        "title": "Silent SOS: Wang Fang",
        "body": "Silent SOS — do not call the watch.",
        "url": "http://app.example/#/alerts/12",
        "alert_id": 12,
        "severity": "critical",
        "kind": "sos_silent",
        "id": "12:1:9",
    }
    assert got.headers["Content-Encoding"] == "aes128gcm"
    assert got.headers["TTL"] == "3600"
    assert got.headers["Urgency"] == "high"
    assert got.headers["Topic"] == topic("12:1:9")
    scheme, _, params = got.headers["Authorization"].partition(" ")
    assert scheme == "vapid"
    parts = dict(p.split("=", 1) for p in params.split(","))
    assert parts["k"] == public
    claims = vapid_jwt.decode(parts["t"], parts["k"])  # raises unless signed by that key
    assert claims["aud"] == push_service.url
    assert claims["sub"] == SUBJECT
    assert claims["exp"] > time.time()


def test_webpush_of_a_non_critical_alert_is_not_urgent() -> None:
    private, _ = vapid.generate_keys()
    browser = Browser.new()
    with http_far_end(status=201) as push_service:
        to = Address("webpush", f"{push_service.url}/p", keys=browser.keys())
        low = replace(delivery(to), alert={**ALERT, "severity": "low"})
        assert WebPushChannel(private, SUBJECT, timeout_s=2).send(low).ok
    assert "Urgency" not in push_service.requests[0].headers
    assert browser.decrypt(push_service.requests[0].body)["severity"] == "low"


@pytest.mark.parametrize("status", [404, 410])
def test_webpush_to_a_gone_subscription_fails_permanently(status: int) -> None:
    private, _ = vapid.generate_keys()
    with http_far_end(status=status) as push_service:
        to = Address("webpush", f"{push_service.url}/p", keys=Browser.new().keys())
        outcome = WebPushChannel(private, SUBJECT, timeout_s=2).send(delivery(to))
    assert (outcome.ok, outcome.permanent, outcome.status_code) == (False, True, status)
    assert "subscription is gone" in outcome.detail


@pytest.mark.parametrize(("status", "permanent"), [(500, False), (429, False), (403, True)])
def test_webpush_retries_server_trouble_not_refusals(status: int, permanent: bool) -> None:
    private, _ = vapid.generate_keys()
    with http_far_end(status=status) as push_service:
        to = Address("webpush", f"{push_service.url}/p", keys=Browser.new().keys())
        outcome = WebPushChannel(private, SUBJECT, timeout_s=2).send(delivery(to))
    assert (outcome.ok, outcome.permanent, outcome.status_code) == (False, permanent, status)


def test_webpush_connection_refused_and_timeout_are_retryable() -> None:
    private, _ = vapid.generate_keys()
    keys = Browser.new().keys()
    channel = WebPushChannel(private, SUBJECT, timeout_s=0.2)
    refused = channel.send(
        delivery(Address("webpush", f"http://127.0.0.1:{free_port()}/p", keys=keys))
    )
    assert not refused.ok and not refused.permanent
    with http_far_end(status=201, delay_s=1.0) as push_service:
        slow = channel.send(delivery(Address("webpush", f"{push_service.url}/p", keys=keys)))
    assert not slow.ok and not slow.permanent and "timed out" in slow.detail


@pytest.mark.parametrize("key", [None, "", "not a key"])
def test_webpush_without_a_usable_vapid_key_fails_permanently_saying_why(
    key: str | None,
) -> None:
    to = Address("webpush", "http://127.0.0.1:9/p", keys=Browser.new().keys())
    outcome = WebPushChannel(key, SUBJECT, timeout_s=1).send(delivery(to))
    assert not outcome.ok and outcome.permanent
    assert "VAPID" in outcome.detail


def test_webpush_to_a_malformed_subscription_fails_permanently() -> None:
    private, _ = vapid.generate_keys()
    channel = WebPushChannel(private, SUBJECT, timeout_s=1)
    no_keys = channel.send(delivery(Address("webpush", "http://127.0.0.1:9/p")))
    assert no_keys.permanent and "keys" in no_keys.detail
    bad = Address("webpush", "http://127.0.0.1:9/p", keys={"p256dh": "AAAA", "auth": "AAAA"})
    outcome = channel.send(delivery(bad))
    assert not outcome.ok and outcome.permanent


def test_webpush_with_a_bad_subject_or_endpoint_fails_permanently() -> None:
    private, _ = vapid.generate_keys()
    keys = Browser.new().keys()
    to = Address("webpush", "http://127.0.0.1:9/p", keys=keys)
    bad_subject = WebPushChannel(private, "alerts at anxin", timeout_s=1).send(delivery(to))
    assert bad_subject.permanent and "subject" in bad_subject.detail
    no_url = Address("webpush", "not a url", keys=keys)
    bad_endpoint = WebPushChannel(private, SUBJECT, timeout_s=1).send(delivery(no_url))
    assert bad_endpoint.permanent and "endpoint" in bad_endpoint.detail


def test_vapid_keys_round_trip_in_every_form_the_settings_accept() -> None:
    private, public = vapid.generate_keys()
    point = base64.urlsafe_b64decode(public + "==")
    assert len(point) == 65 and point[0] == 4  # what applicationServerKey wants
    assert len(base64.urlsafe_b64decode(private + "=")) == 32
    assert vapid.public_key(private) == public
    pem = vapid.load(private).private_pem().decode()
    assert pem.startswith("-----BEGIN PRIVATE KEY-----")
    assert vapid.public_key(pem) == public
    with pytest.raises(ValueError):
        vapid.load("not a key")


def test_the_receiver_example_in_the_docs_verifies_what_the_channel_sends() -> None:
    doc = (Path(__file__).parent.parent / "docs" / "notifications.md").read_text()
    example = doc.split("```python\n")[1].split("```")[0]
    namespace: dict[str, Any] = {}
    exec(example, namespace)
    anxin_signature_ok = namespace["anxin_signature_ok"]
    with http_far_end() as far:
        WebhookChannel(timeout_s=2).send(delivery(Address("webhook", far.url, secret=SECRET)))
    [got] = far.requests
    header = got.headers["Anxin-Signature"]
    assert anxin_signature_ok(SECRET, header, got.body)
    assert not anxin_signature_ok("other", header, got.body)
    assert not anxin_signature_ok(SECRET, header, got.body + b" ")
    assert not anxin_signature_ok(SECRET, sign(SECRET, int(time.time()) - 600, got.body), got.body)
