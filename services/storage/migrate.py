"""Schema migrations: numbered SQL files applied once each, in order, under an advisory lock.

A file named ``NNNN_name.sql`` applies everywhere; ``NNNN_name.<flavour>.sql`` only on that
flavour (see flavour.py). Running migrate again is a no-op, and two replicas starting at once
wait for each other instead of racing.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import psycopg

from services.storage.flavour import Flavour, available_flavour
from services.storage.partitions import apply_retention, ensure_partitions_around_now

log = logging.getLogger(__name__)
MIGRATIONS_DIR = Path(__file__).with_name("migrations")
_LOCK_KEY = 0x616E78696E  # "anxin"


@dataclass(frozen=True)
class Migration:
    version: str
    path: Path


def migrations_for(flavour: Flavour) -> list[Migration]:
    """The migration files that apply to ``flavour``, in version order."""
    chosen: dict[str, Path] = {}
    for path in sorted(MIGRATIONS_DIR.glob("*.sql")):
        parts = path.name.split(".")
        if len(parts) == 3 and parts[1] != flavour.value:
            continue
        chosen[path.name.split("_", 1)[0]] = path
    return [Migration(v, p) for v, p in sorted(chosen.items())]


def migrate(conninfo: str, retention_days: int, days_ahead: int) -> tuple[Flavour, list[str]]:
    """Bring the schema up to date; returns the flavour and the versions applied now."""
    applied_now: list[str] = []
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute("SELECT pg_advisory_lock(%s)", (_LOCK_KEY,))
        try:
            flavour = available_flavour(conn)
            if flavour is Flavour.TIMESCALE:
                conn.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
            conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations ("
                " version text PRIMARY KEY, name text NOT NULL,"
                " applied_at timestamptz NOT NULL DEFAULT now())"
            )
            done = {r[0] for r in conn.execute("SELECT version FROM schema_migrations")}
            for m in migrations_for(flavour):
                if m.version in done:
                    continue
                with conn.transaction():
                    conn.execute(m.path.read_text())  # type: ignore[arg-type]
                    conn.execute(
                        "INSERT INTO schema_migrations (version, name) VALUES (%s, %s)",
                        (m.version, m.path.name),
                    )
                log.info("applied migration %s", m.path.name)
                applied_now.append(m.version)
            ensure_partitions_around_now(conn, flavour, days_ahead=days_ahead)
            apply_retention(conn, flavour, retention_days)
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (_LOCK_KEY,))
    return flavour, applied_now
