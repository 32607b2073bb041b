"""Raise alerts the way the ingestor does (its own decode → plan → store stages with the
alert stage), in-process, for tests whose subject is what happens after an alert opens."""

from __future__ import annotations

from datetime import UTC, datetime

import psycopg

from services.ingestor.alert_stage import apply_alerts
from services.ingestor.decode import Limits
from services.ingestor.pipeline import Access, Received, decode_all, prepare_batch
from services.ingestor.store import store_batch
from services.protocol import Alarm, Topics, UplinkKind

TOPICS = Topics("anxin")


def ingest(db_url: str, device: str, kind: UplinkKind, payload: str) -> None:
    now = datetime.now(UTC)
    received = [Received(TOPICS.uplink(device, kind), payload.encode(), now)]
    plan = prepare_batch(decode_all(received, TOPICS, Limits()), {device: Access.ACTIVE})
    with psycopg.connect(db_url) as conn:
        store_batch(conn, plan, None, lambda c, p, e: apply_alerts(c, p, e, "wearer-{}".format))


def press_sos(db_url: str, device: str, seq: int, mode: str = "audible") -> None:
    alarm = Alarm(seq=seq, t=datetime.now(UTC), type="sos", mode=mode)
    ingest(db_url, device, UplinkKind.ALARM, alarm.model_dump_json())


def add_contact(
    conn: psycopg.Connection, name: str, wearer: str, *channels: tuple[str, str, str | None]
) -> int:
    """A contact caring for ``wearer`` with channels (kind, address, secret)."""
    row = conn.execute(
        "INSERT INTO contacts (name, language, tz) VALUES (%s, 'en', 'UTC') RETURNING contact_id",
        (name,),
    ).fetchone()
    assert row is not None
    conn.execute("INSERT INTO care VALUES (%s, %s)", (row[0], wearer))
    for kind, address, secret in channels:
        conn.execute(
            "INSERT INTO contact_channels (contact_id, kind, address, secret)"
            " VALUES (%s, %s, %s, %s)",
            (row[0], kind, address, secret),
        )
    conn.commit()
    return row[0]
