"""Which storage flavour a database offers: TimescaleDB hypertables or plain partitions.

Detected, never configured: the same code runs on the TimescaleDB image in production and on
plain PostgreSQL (the test servers, the embedded demo database).
"""

from __future__ import annotations

from enum import StrEnum

import psycopg


class Flavour(StrEnum):
    TIMESCALE = "timescale"
    PLAIN = "plain"


def available_flavour(conn: psycopg.Connection) -> Flavour:
    """TimescaleDB if the server can load the extension, else plain PostgreSQL."""
    row = conn.execute(
        "SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb'"
    ).fetchone()
    return Flavour.TIMESCALE if row else Flavour.PLAIN


def installed_flavour(conn: psycopg.Connection) -> Flavour:
    """The flavour the positions table was created with (after migrations)."""
    row = conn.execute(
        "SELECT 1 FROM pg_partitioned_table p JOIN pg_class c ON c.oid = p.partrelid"
        " WHERE c.relname = 'positions' AND c.relnamespace = 'public'::regnamespace"
    ).fetchone()
    return Flavour.PLAIN if row else Flavour.TIMESCALE
