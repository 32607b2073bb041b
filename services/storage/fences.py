"""Fences in the database: saved as the validated GeoJSON Feature, versioned for the caches."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterable

import orjson
import psycopg
from psycopg.types.json import Jsonb

from geofences.geojson import fence_from_stored, fence_to_feature
from geofences.model import Fence

log = logging.getLogger(__name__)

# The statements, shared by the API (async) and the CLI and demo (sync): one way to write fences.
INSERT_FENCE = (
    "INSERT INTO fences (fence_id, wearer_id, name, kind, feature) VALUES (%s, %s, %s, %s, %s)"
)
UPDATE_FENCE = (
    "UPDATE fences SET name = %s, kind = %s, feature = %s, updated_at = now(),"
    " version = nextval('fence_version_seq')"
    " WHERE fence_id = %s AND wearer_id = %s AND deleted_at IS NULL"
)
FORGET_FENCE_STATE = "DELETE FROM fence_state WHERE fence_id = %s"
DELETE_FENCE = (
    "UPDATE fences SET deleted_at = now(), version = nextval('fence_version_seq')"
    " WHERE fence_id = %s AND wearer_id = %s AND deleted_at IS NULL"
)


def insert_params(fence: Fence) -> tuple:
    return (fence.fence_id, fence.wearer_id, fence.name, fence.kind.value,
            Jsonb(fence_to_feature(fence)))  # fmt: skip


def update_params(fence: Fence) -> tuple:
    return (fence.name, fence.kind.value, Jsonb(fence_to_feature(fence)), fence.fence_id,
            fence.wearer_id)  # fmt: skip


def names_by_wearer(conn: psycopg.Connection, wearer_ids: Iterable[str]) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    rows = conn.execute(
        "SELECT wearer_id, name FROM fences WHERE wearer_id = ANY(%s) AND deleted_at IS NULL",
        (list(set(wearer_ids)),),
    ).fetchall()
    for wearer_id, name in rows:
        out.setdefault(wearer_id, set()).add(name)
    return out


def save_fences(conn: psycopg.Connection, fences: Iterable[Fence], *, replace: bool) -> int:
    """Insert fences; with ``replace`` a fence with the same (wearer, name) is replaced in
    place (same id, new version) and its per-device state forgotten, so the engine decides
    afresh against the new shape."""
    n = 0
    with conn.transaction():
        for fence in fences:
            existing = None
            if replace:
                existing = conn.execute(
                    "SELECT fence_id::text FROM fences"
                    " WHERE wearer_id = %s AND name = %s AND deleted_at IS NULL",
                    (fence.wearer_id, fence.name),
                ).fetchone()
            if existing is None:
                conn.execute(INSERT_FENCE, insert_params(fence))
            else:
                update_fence(conn, dataclasses.replace(fence, fence_id=existing[0]))
            n += 1
    return n


def update_fence(conn: psycopg.Connection, fence: Fence) -> bool:
    """Replace a live fence's definition; its per-device state is forgotten (the engine
    decides afresh against the new shape). False if there is no such live fence."""
    if conn.execute(UPDATE_FENCE, update_params(fence)).rowcount == 0:
        return False
    conn.execute(FORGET_FENCE_STATE, (fence.fence_id,))
    return True


def load_changed(
    conn: psycopg.Connection, after_version: int, limit: int | None = None
) -> tuple[list[Fence], list[str], int]:
    """Fences changed since ``after_version``: (live fences, deleted fence ids, new max);
    with ``limit``, only the first that many changes (page on with the new max).

    Rows are trusted (``fence_from_stored``): every one was validated before it was written,
    and re-validating 300,000 at an ingestor's start cost ~40 s. A row that cannot be read is
    logged and skipped: one bad row must not stop every other fence from being watched."""
    # The Feature as text, decoded by orjson: the stdlib's json.loads was half of the time an
    # ingestor took to load 300,000 fences.
    rows = conn.execute(
        "SELECT fence_id::text, wearer_id, feature::text, version, deleted_at IS NOT NULL"
        " FROM fences WHERE version > %s ORDER BY version LIMIT %s",
        (after_version, limit),
    ).fetchall()
    live: list[Fence] = []
    deleted: list[str] = []
    newest = after_version
    for fence_id, wearer_id, feature, version, is_deleted in rows:
        newest = max(newest, version)
        if is_deleted:
            deleted.append(fence_id)
            continue
        try:
            live.append(fence_from_stored(orjson.loads(feature), fence_id, wearer_id, version))
        except (KeyError, TypeError, ValueError) as e:
            log.error("fence %s (version %s) cannot be read, skipped: %r", fence_id, version, e)
    return live, deleted, newest


def current_version(conn: psycopg.Connection) -> int:
    row = conn.execute("SELECT COALESCE(max(version), 0) FROM fences").fetchone()
    return int(row[0]) if row else 0
