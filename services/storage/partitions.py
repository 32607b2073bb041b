"""Time partitions and retention for the positions table.

On plain PostgreSQL a fix needs a partition for its day before it can be stored, so the
ingestor calls ``ensure_day_partitions`` for the days of each batch (cached, so this is a set
lookup in the steady state) and retention drops whole days. On TimescaleDB chunks appear by
themselves and retention is a policy; the same calls are harmless there.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, date, datetime, timedelta

import psycopg
from psycopg import sql

from services.storage.flavour import Flavour

_PARTITION_LOCK = 0x70617274  # "part"


def partition_name(day: date) -> str:
    return f"positions_{day:%Y%m%d}"


def ensure_day_partitions(conn: psycopg.Connection, days: Iterable[date]) -> None:
    """Create the daily partitions for ``days`` if missing (plain flavour only).

    Runs in its own transaction under an advisory lock, so replicas never race to create the
    same partition. Must not be called inside a batch transaction.
    """
    wanted = sorted(set(days))
    if not wanted:
        return
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_PARTITION_LOCK,))
        for day in wanted:
            start = datetime(day.year, day.month, day.day, tzinfo=UTC)
            conn.execute(
                sql.SQL(
                    "CREATE TABLE IF NOT EXISTS {} PARTITION OF positions"
                    " FOR VALUES FROM ({}) TO ({})"
                ).format(
                    sql.Identifier(partition_name(day)),
                    sql.Literal(start),
                    sql.Literal(start + timedelta(days=1)),
                )
            )


def ensure_partitions_around_now(
    conn: psycopg.Connection, flavour: Flavour, days_ahead: int, days_back: int = 1
) -> None:
    if flavour is not Flavour.PLAIN:
        return
    today = datetime.now(UTC).date()
    ensure_day_partitions(
        conn, (today + timedelta(days=d) for d in range(-days_back, days_ahead + 1))
    )


def apply_retention(conn: psycopg.Connection, flavour: Flavour, retention_days: int) -> list[str]:
    """Drop location history older than ``retention_days``; returns the partitions dropped."""
    if flavour is Flavour.TIMESCALE:
        with conn.transaction():
            conn.execute("SELECT remove_retention_policy('positions', if_exists => true)")
            conn.execute(
                "SELECT add_retention_policy('positions', %s::interval)",
                (f"{retention_days} days",),
            )
        return []
    cutoff = datetime.now(UTC).date() - timedelta(days=retention_days)
    rows = conn.execute(
        "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
        " WHERE i.inhparent = 'positions'::regclass ORDER BY c.relname"
    ).fetchall()
    dropped = []
    for (name,) in rows:
        try:
            day = datetime.strptime(name, "positions_%Y%m%d").date()
        except ValueError:
            continue
        if day < cutoff:
            conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(sql.Identifier(name)))
            dropped.append(name)
    return dropped
