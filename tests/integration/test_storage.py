"""Migrations, daily partitions and retention on a real PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import psycopg

from services.storage.flavour import Flavour, installed_flavour
from services.storage.migrate import MIGRATIONS_DIR, migrate, migrations_for
from services.storage.partitions import apply_retention, ensure_day_partitions, partition_name

# Every numbered migration file, once each (the flavour picks one file per number).
ALL_VERSIONS = sorted({p.name[:4] for p in MIGRATIONS_DIR.glob("*.sql")})


def test_migrate_twice_is_a_no_op(db_url: str) -> None:
    flavour, applied = migrate(db_url, retention_days=90, days_ahead=2)
    assert flavour is Flavour.PLAIN and applied == []
    with psycopg.connect(db_url) as conn:
        versions = [r[0] for r in conn.execute("SELECT version FROM schema_migrations")]
        assert installed_flavour(conn) is Flavour.PLAIN
    assert versions == ALL_VERSIONS


def test_each_flavour_gets_its_own_positions_table() -> None:
    plain = [m.path.name for m in migrations_for(Flavour.PLAIN)]
    timescale = [m.path.name for m in migrations_for(Flavour.TIMESCALE)]
    assert plain[:3] == ["0001_base.sql", "0002_positions.plain.sql", "0003_fences.sql"]
    assert timescale[:3] == ["0001_base.sql", "0002_positions.timescale.sql", "0003_fences.sql"]
    assert plain[1:] != timescale[1:] and plain[2:] == timescale[2:]  # only 0002 differs
    sql = migrations_for(Flavour.TIMESCALE)[1].path.read_text()
    assert "create_hypertable" in sql and "add_compression_policy" in sql


def test_partitions_exist_ahead_and_retention_drops_old_days(db_url: str) -> None:
    today = datetime.now(UTC).date()
    old = today - timedelta(days=100)
    with psycopg.connect(db_url, autocommit=True) as conn:
        ensure_day_partitions(conn, [old, old])  # idempotent, duplicates fine

        def partitions() -> set[str]:
            return {
                r[0]
                for r in conn.execute(
                    "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
                    " WHERE i.inhparent = 'positions'::regclass"
                )
            }

        before = partitions()
        assert {partition_name(today + timedelta(days=d)) for d in range(3)} <= before
        assert partition_name(old) in before
        dropped = apply_retention(conn, Flavour.PLAIN, retention_days=90)
        assert dropped == [partition_name(old)]
        assert partitions() == before - {partition_name(old)}


def test_migrations_from_two_processes_at_once_do_not_collide(template_db: str) -> None:
    import threading
    import uuid

    from tests.conftest import ADMIN_URL, _db_url

    name = f"anxin_race_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        results: list[object] = []

        def run() -> None:
            try:
                results.append(migrate(_db_url(name), 90, 2)[1])
            except Exception as err:
                results.append(err)

        threads = [threading.Thread(target=run) for _ in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert all(isinstance(r, list) for r in results), results
        assert sorted(results, key=len) == [[], [], ALL_VERSIONS]
    finally:
        with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
