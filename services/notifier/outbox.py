"""The outbox at the database edge: claim due notifications, record how each went.

Claiming sets a lease (``claimed_until``) and commits before anything is sent, using
``FOR UPDATE SKIP LOCKED`` so notifier replicas take different rows. A notifier that dies
mid-delivery leaves its rows pending with a lease that runs out: another one (or itself after
a restart) claims them again. That is at-least-once; the idempotency key sent with every
attempt lets the far end drop a repeat.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from services.alerts import sql
from services.notifier.channels.base import Address, Outcome
from services.notifier.policy import AfterAttempt, Next

CLAIM = """
WITH due AS (
    SELECT outbox_id FROM outbox
    WHERE status = 'pending' AND not_before <= now()
      AND (claimed_until IS NULL OR claimed_until < now())
    ORDER BY not_before, outbox_id
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
), claimed AS (
    UPDATE outbox o
    SET claimed_until = now() + make_interval(secs => %(lease_s)s), attempts = o.attempts + 1
    FROM due WHERE o.outbox_id = due.outbox_id
    RETURNING o.outbox_id, o.alert_id, o.contact_id, o.channel_id, o.idempotency_key, o.attempts
)
SELECT c.outbox_id, c.alert_id, c.contact_id, c.idempotency_key, c.attempts,
       p.name, p.language, p.tz, ch.kind, ch.address, ch.secret, ch.keys, ap.alert
FROM claimed c
JOIN contacts p ON p.contact_id = c.contact_id
JOIN contact_channels ch ON ch.channel_id = c.channel_id
JOIN alert_public ap ON ap.alert_id = c.alert_id
ORDER BY c.outbox_id
"""


@dataclass(frozen=True, slots=True)
class Claimed:
    outbox_id: int
    alert_id: int
    contact_id: int
    idempotency_key: str
    attempt: int
    contact_name: str
    language: str
    tz: str
    to: Address
    alert: dict[str, Any]


def claim_due(conn: psycopg.Connection, limit: int, lease_s: float) -> list[Claimed]:
    """Claim up to ``limit`` due notifications (committed before returning)."""
    with conn.transaction():
        rows = conn.execute(CLAIM, {"limit": limit, "lease_s": lease_s}).fetchall()
    return [Claimed(*r[:8], Address(*r[8:12]), r[12]) for r in rows]  # type: ignore[arg-type]


def record(
    conn: psycopg.Connection, c: Claimed, outcome: Outcome, after: AfterAttempt, now: datetime
) -> None:
    """The attempt goes into the delivery log; the outbox row moves on. A row whose lease ran
    out and was delivered by someone else meanwhile is only logged."""
    with conn.transaction():
        conn.execute(
            "INSERT INTO deliveries (outbox_id, alert_id, contact_id, channel, attempt, ok,"
            " status_code, detail) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
            (c.outbox_id, c.alert_id, c.contact_id, c.to.kind, c.attempt, outcome.ok,
             outcome.status_code, outcome.detail[:1000]),
        )  # fmt: skip
        if after.next is Next.DELIVERED:
            conn.execute(
                "UPDATE outbox SET status = 'delivered', delivered_at = now(),"
                " claimed_until = NULL, last_error = NULL"
                " WHERE outbox_id = %s AND status = 'pending'",
                (c.outbox_id,),
            )
        elif after.next is Next.RETRY:
            conn.execute(
                "UPDATE outbox SET not_before = now() + make_interval(secs => %s),"
                " claimed_until = NULL, last_error = %s"
                " WHERE outbox_id = %s AND status = 'pending'",
                (after.delay_s, outcome.detail[:1000], c.outbox_id),
            )
        else:
            cur = conn.execute(
                "UPDATE outbox SET status = 'gave_up', claimed_until = NULL, last_error = %s"
                " WHERE outbox_id = %s AND status = 'pending'",
                (outcome.detail[:1000], c.outbox_id),
            )
            if cur.rowcount:
                conn.execute(
                    sql.LOG,
                    {
                        "alert_id": c.alert_id,
                        "action": "delivery_gave_up",
                        "contact_id": c.contact_id,
                        "tier": None,
                        "detail": Jsonb(
                            {"channel": c.to.kind, "attempts": c.attempt, "error": outcome.detail}
                        ),
                    },
                )
