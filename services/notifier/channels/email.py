"""E-mail channel: one plain-text mail per delivery through the configured SMTP relay.

Only the standard library (smtplib, email): the relay does the hard part (queueing, DKIM,
retries towards the recipient's server). What this adds is recognisability: the Message-ID
is derived from the idempotency key, so a delivery sent twice (at-least-once) arrives as the
same message and mail clients and filters can fold the repeat; ``X-Anxin-Alert`` carries the
alert id for people who sort their mail.

Status policy: an SMTP 5xx reply is permanent (the relay refuses this mail or this address,
or our login; sending again gets the same answer), a 4xx reply and any connection problem
are retried.
"""

from __future__ import annotations

import hashlib
import logging
import re
import smtplib
import ssl
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.headerregistry import Address as MailAddress
from email.message import EmailMessage
from email.utils import format_datetime
from typing import ClassVar

from services.notifier.channels.base import Delivery, Outcome

log = logging.getLogger(__name__)

MESSAGE_ID_DOMAIN = "anxin"
_DOT_ATOM = re.compile(r"[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*")


def message_id(idempotency_key: str) -> str:
    """``<key@anxin>`` when the key is a valid Message-ID left part, otherwise a hash of it:
    either way the same key always gives the same Message-ID."""
    left = idempotency_key
    if not _DOT_ATOM.fullmatch(left) or len(left) > 64:
        left = hashlib.sha256(idempotency_key.encode()).hexdigest()[:40]
    return f"<{left}@{MESSAGE_ID_DOMAIN}>"


def build_message(delivery: Delivery, sender: str, now: datetime | None = None) -> EmailMessage:
    """The mail for one delivery (pure, so its headers can be checked without a relay)."""
    message = delivery.message
    mail = EmailMessage()
    mail["From"] = sender
    mail["To"] = MailAddress(display_name=delivery.contact_name, addr_spec=delivery.to.address)
    mail["Subject"] = message.title
    mail["Date"] = format_datetime(now or datetime.now(UTC))
    mail["Message-ID"] = message_id(delivery.idempotency_key)
    mail["X-Anxin-Alert"] = str(delivery.alert.get("alert_id", ""))
    # RFC 3834: out-of-office replies must not answer an alert (nobody reads them).
    mail["Auto-Submitted"] = "auto-generated"
    text = message.body if not message.url else f"{message.body}\n\n{message.url}"
    mail.set_content(text + "\n")
    return mail


def _refusal(code: int, text: bytes | str) -> Outcome:
    reply = text.decode(errors="replace") if isinstance(text, bytes) else text
    return Outcome(False, f"SMTP {code} {reply}".strip(), code, permanent=500 <= code < 600)


@dataclass(frozen=True, slots=True)
class EmailChannel:
    """The relay's coordinates; a new SMTP connection per mail (alerts are rare, and a held
    connection would be dropped by the relay between them anyway)."""

    kind: ClassVar[str] = "email"

    host: str
    port: int
    sender: str
    user: str | None
    password: str | None = field(repr=False)  # a logged channel must not show it
    starttls: bool
    timeout_s: float

    def send(self, delivery: Delivery) -> Outcome:
        """Hand the mail to the relay once; never raises."""
        try:
            mail = build_message(delivery, self.sender)
        except (ValueError, TypeError, IndexError) as exc:
            # A malformed address or a header with a line break: the same every time.
            return Outcome(False, f"cannot build the mail: {exc}", permanent=True)
        try:
            with smtplib.SMTP(self.host, self.port, timeout=self.timeout_s) as smtp:
                if self.starttls:
                    smtp.starttls(context=ssl.create_default_context())
                if self.user:
                    smtp.login(self.user, self.password or "")
                smtp.send_message(mail)
        except smtplib.SMTPRecipientsRefused as exc:
            code, text = next(iter(exc.recipients.values()), (550, b"recipient refused"))
            return _refusal(code, text)
        except smtplib.SMTPResponseException as exc:
            return _refusal(exc.smtp_code, exc.smtp_error)
        except smtplib.SMTPNotSupportedError as exc:
            return Outcome(False, f"relay does not support it: {exc}", permanent=True)
        except (smtplib.SMTPException, OSError) as exc:  # refused, reset, timed out, TLS
            return Outcome(False, f"{type(exc).__name__}: {exc}".rstrip(": "))
        except Exception as exc:  # never raise into the notifier's loop
            log.exception("mail to %s failed unexpectedly", delivery.to.address)
            return Outcome(False, f"{type(exc).__name__}: {exc}")
        return Outcome(True, f"accepted by {self.host}:{self.port}")
