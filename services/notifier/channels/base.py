"""What every delivery channel is given and what it answers.

A channel sends one notification to one person's address and says how it went; it knows
nothing about outboxes, retries or escalation (the notifier's loop does). At-least-once
delivery means a channel may be asked twice for the same ``idempotency_key``: it passes the
key on (a webhook header, an e-mail Message-ID, a push topic) so the far end can drop repeats.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol


@dataclass(frozen=True, slots=True)
class Message:
    """A notification as a person reads it (rendered in their language and time zone)."""

    title: str
    body: str
    url: str | None = None  # where the app shows the alert


@dataclass(frozen=True, slots=True)
class Address:
    """One of a contact's channels: an e-mail address, a webhook URL (with its signing
    secret), or a Web Push subscription (endpoint + ``keys`` {"p256dh", "auth"})."""

    kind: str  # "email" | "webhook" | "webpush"
    address: str
    secret: str | None = None
    keys: dict[str, str] | None = None


@dataclass(frozen=True, slots=True)
class Delivery:
    outbox_id: int
    idempotency_key: str
    attempt: int  # 1 for the first try
    to: Address
    contact_name: str
    message: Message
    alert: dict[str, Any] = field(default_factory=dict)  # the alert as the API shows it


@dataclass(frozen=True, slots=True)
class Outcome:
    ok: bool
    detail: str = ""
    status_code: int | None = None
    permanent: bool = False  # retrying cannot help (a push subscription that is gone: 404/410)


class Channel(Protocol):
    kind: str

    def send(self, delivery: Delivery) -> Outcome:
        """Deliver once. Never raises for a failure of the far end: returns ``ok=False``."""
        ...
