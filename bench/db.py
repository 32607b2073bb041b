"""The benchmark's own database: created, migrated and seeded per run, dropped at the end."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import psycopg

from bench.fleet_fences import load_fleet_fences, restore_fence_states, seed_fence_states
from services.storage.migrate import migrate
from services.storage.provisioning import seed_demo

DEVICE_STATE_SEED = "bench_device_state_seed"  # device_state as seeded, for reset_positions


def db_url(admin_url: str, name: str) -> str:
    return f"{admin_url.rsplit('/', 1)[0]}/{name}"


@contextmanager
def bench_database(
    admin_url: str, devices: int, keep: bool = False, fences_per_device: int = 0
) -> Iterator[str]:
    """A fresh ``anxin_bench_<random>`` database, migrated and seeded with ``devices`` and
    their wearers' fences (``bench.fleet_fences``, up to 3 a wearer) in their steady state."""
    name = f"anxin_bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(admin_url, autocommit=True, connect_timeout=10) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = db_url(admin_url, name)
    try:
        migrate(url, retention_days=90, days_ahead=2)
        with psycopg.connect(url) as conn:
            seed_demo(conn, devices)
            if fences_per_device:
                load_fleet_fences(conn, devices, fences_per_device)
                seed_fence_states(conn, devices, fences_per_device)
            conn.execute(f"CREATE TABLE {DEVICE_STATE_SEED} AS SELECT * FROM device_state")
        yield url
    finally:
        if not keep:
            with psycopg.connect(admin_url, autocommit=True, connect_timeout=10) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def scalar(url: str, sql: str) -> Any:
    with psycopg.connect(url, connect_timeout=10) as conn:
        row = conn.execute(sql).fetchone()  # type: ignore[arg-type]
        return row[0] if row else None


def server_version(url: str) -> str:
    return str(scalar(url, "SELECT version()"))


def reset_positions(url: str) -> None:
    """Empty the positions partitions and the dead letters between phases, and what the
    fences made of the last phase (their states, events, alerts and what those queued), so
    that every phase decides the same fences from the same start. The devices' latest state
    goes back to the seed too: its ``fix_t`` is the newest fix already decided, and a phase
    whose fixes reach back further than the gap since the last one (offline batches span
    minutes) would otherwise find them "late" and decide none of them (a quick run on a fast
    machine did)."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "TRUNCATE positions, dead_letters, events, alerts, alert_events, alert_log, outbox,"
            " deliveries, alert_feed, device_state"
        )
        if conn.execute("SELECT to_regclass(%s)", (DEVICE_STATE_SEED,)).fetchone() != (None,):
            conn.execute(f"INSERT INTO device_state SELECT * FROM {DEVICE_STATE_SEED}")
        restore_fence_states(conn)


class Counter:
    """One open connection for what the benchmark asks while a phase runs."""

    def __init__(self, url: str) -> None:
        self.conn = psycopg.connect(url, autocommit=True, connect_timeout=10)

    def positions(self) -> int:
        """``count(*)`` of positions, polled while the ingestor works."""
        row = self.conn.execute("SELECT count(*) FROM positions").fetchone()
        return int(row[0]) if row else 0

    def server_pids(self) -> list[int]:
        """The PostgreSQL processes working for this database: its backends (the ingestors',
        this one) and the server's shared helpers (WAL writer, checkpointer, autovacuum);
        not the backends of other databases on the same server."""
        rows = self.conn.execute(
            "SELECT pid FROM pg_stat_activity"
            " WHERE datname = current_database() OR backend_type <> 'client backend'"
        ).fetchall()
        return [int(r[0]) for r in rows]

    def close(self) -> None:
        self.conn.close()


def storage(url: str) -> dict[str, Any]:
    """Bytes on disk per stored fix: every positions partition with its indexes and TOAST."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CHECKPOINT")  # not needed for sizes, but settles the heap files
        rows = conn.execute(
            "SELECT count(*),"
            " coalesce(sum(pg_total_relation_size(c.oid)), 0),"
            " coalesce(sum(pg_relation_size(c.oid)), 0),"
            " coalesce(sum(pg_indexes_size(c.oid)), 0)"
            " FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
            " WHERE i.inhparent = 'positions'::regclass"
        ).fetchone()
        assert rows is not None
        partitions, total, heap, indexes = (int(v) for v in rows)
        row = conn.execute("SELECT count(*), count(DISTINCT tableoid) FROM positions").fetchone()
        stored, non_empty = (int(v) for v in row) if row else (0, 0)
    return {
        "fixes": stored,
        "partitions": partitions,
        "partitions_with_rows": non_empty,
        "total_bytes": total,
        "heap_bytes": heap,
        "index_bytes": indexes,
        "bytes_per_fix": round(total / stored, 1) if stored else None,
        "heap_bytes_per_fix": round(heap / stored, 1) if stored else None,
        "index_bytes_per_fix": round(indexes / stored, 1) if stored else None,
    }


def naive_insert(url: str, rows: list[tuple], timeout_s: float) -> dict[str, Any]:
    """The baseline: one INSERT and one COMMIT per fix, same table, same rows."""
    sql = (
        "INSERT INTO positions (device_id, seq, t, lat, lon, acc, src, spd, hdg, battery,"
        " received_at) VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s) ON CONFLICT DO NOTHING"
    )
    deadline = time.monotonic() + timeout_s
    stored = done = 0
    with psycopg.connect(url, connect_timeout=10) as conn:
        start = time.monotonic()
        for row in rows:
            cur = conn.execute(sql, (*row[:-1], datetime.now(UTC)))
            stored += cur.rowcount
            conn.commit()
            done += 1
            if time.monotonic() > deadline:
                break
        elapsed = time.monotonic() - start
    return {
        "fixes": done,
        "stored": stored,
        "seconds": round(elapsed, 3),
        "fixes_per_s": round(stored / elapsed, 1) if elapsed > 0 else None,
        "timed_out": done < len(rows),
    }
