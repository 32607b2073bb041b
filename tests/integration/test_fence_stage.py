"""The ingestor's fence stage on a real database: compare-and-set between replicas, and a
fence cache that follows changes made through the API within a second."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest

from geofences.geojson import fences_from_geojson
from services.ingestor.decode import Limits
from services.ingestor.fence_stage import FenceCache, apply_fences
from services.ingestor.pipeline import Access, Received, decode_all, prepare_batch
from services.ingestor.store import FenceConflict
from services.protocol import Fix, Topics, UplinkKind
from services.storage.fences import save_fences
from services.storage.provisioning import seed_demo
from tests.support.broker import MosquittoProcess
from tests.support.stack import Watch, count, start_ingestor, wait_for

TOPICS = Topics("anxin")
LAT, LON = 31.2400, 121.4500


def nogo_circle(name: str = "river", radius: float = 200.0) -> dict:
    return {
        "type": "Feature",
        "geometry": {"type": "Point", "coordinates": [LON, LAT]},
        "properties": {"name": name, "kind": "nogo", "radius_m": radius,
                       "wearer": "wearer-w00001"},
    }  # fmt: skip


def fix_at_centre(seq: int, t: datetime) -> bytes:
    return Fix(seq=seq, t=t, lat=LAT, lon=LON, acc=10).model_dump_json().encode()


def test_two_replicas_deciding_the_same_transition_emit_it_once(db_url: str) -> None:
    with psycopg.connect(db_url) as conn:
        seed_demo(conn, 1)
        save_fences(conn, fences_from_geojson(nogo_circle()), replace=False)
    cache = FenceCache()
    now = datetime.now(UTC)
    # Two replicas got different fixes of the same device, both inside the no-go fence.
    plans = [
        prepare_batch(
            decode_all(
                [Received(TOPICS.uplink("w00001", UplinkKind.LOC), fix_at_centre(s, now - d), now)],
                TOPICS,
                Limits(),
            ),
            {"w00001": Access.ACTIVE},
        )
        for s, d in ((1, timedelta(seconds=10)), (2, timedelta(seconds=5)))
    ]
    a, b = psycopg.connect(db_url), psycopg.connect(db_url)
    conflicts: list[FenceConflict] = []

    def replica_b() -> None:
        try:
            with b.transaction():
                apply_fences(b, plans[1], cache.index, lambda _d: "wearer-w00001")
        except FenceConflict as err:
            conflicts.append(err)

    try:
        cache.refresh(a, force=True)
        a.commit()
        # Replica a decides "entered" and writes it, not yet committed.
        first = apply_fences(a, plans[0], cache.index, lambda _d: "wearer-w00001")
        # Replica b read the same prior state (none) and decides the same transition; its
        # write waits for a's row, then finds it taken: compare-and-set fails.
        other = threading.Thread(target=replica_b)
        other.start()
        time.sleep(0.5)
        assert other.is_alive()  # b is waiting on a's uncommitted state row
        a.commit()
        other.join(10)
    finally:
        a.close()
        b.close()
    assert len(conflicts) == 1
    assert first.transitions == 1
    assert count(db_url, "SELECT count(*) FROM events WHERE kind = 'fence_enter'") == 1


def test_a_fence_created_through_the_api_is_used_within_a_second(
    tmp_path: Path, broker: MosquittoProcess, db_url: str, topic_prefix: str
) -> None:
    with psycopg.connect(db_url) as conn:
        seed_demo(conn, 1)
    ingestor = start_ingestor(tmp_path, broker.url, db_url, topic_prefix)
    watch = Watch(broker.url, topic_prefix, "w00001")
    try:
        t0 = datetime.now(UTC) - timedelta(seconds=30)
        watch.publish(UplinkKind.LOC, fix_at_centre(1, t0))
        wait_for(lambda: count(db_url, "SELECT count(*) FROM positions") == 1, 15, "a fix")
        with psycopg.connect(db_url) as conn:
            save_fences(conn, fences_from_geojson(nogo_circle()), replace=False)
        time.sleep(1.0)
        watch.publish(UplinkKind.LOC, fix_at_centre(2, t0 + timedelta(seconds=5)))
        wait_for(lambda: count(db_url, "SELECT count(*) FROM positions") == 2, 15, "2 fixes")
    finally:
        watch.close()
        ingestor.stop()
    with psycopg.connect(db_url) as conn:
        events = conn.execute("SELECT kind, distance_m FROM events").fetchall()
    assert len(events) == 1 and events[0][0] == "fence_enter"
    assert events[0][1] == pytest.approx(200.0, abs=1.0)  # at the centre of a 200 m circle


def test_the_fence_cache_loads_and_follows_changes_a_page_at_a_time(db_url: str) -> None:
    """Paging (how 300,000 fences load at start-up without holding all their GeoJSON at
    once) gives the same cache as one read: every live fence, none of the deleted."""
    with psycopg.connect(db_url) as conn:
        seed_demo(conn, 1)
        names = [f"zone {i}" for i in range(7)]
        save_fences(conn, [f for n in names for f in fences_from_geojson(nogo_circle(n))],
                    replace=False)  # fmt: skip
        cache = FenceCache()
        cache.PAGE = 3
        cache.refresh(conn, force=True)
        assert sorted(f.name for f in cache.index.fences_of("wearer-w00001")) == sorted(names)
        conn.execute(
            "UPDATE fences SET deleted_at = now(), version = nextval('fence_version_seq')"
            " WHERE name IN ('zone 1', 'zone 5')"
        )
        save_fences(conn, fences_from_geojson(nogo_circle("zone 2", radius=50.0)), replace=True)
        conn.commit()
        cache.refresh(conn, force=True)
    kept = {f.name: f for f in cache.index.fences_of("wearer-w00001")}
    assert sorted(kept) == ["zone 0", "zone 2", "zone 3", "zone 4", "zone 6"]
    assert kept["zone 2"].radius_m == 50.0
    assert len(cache.index) == 5 and cache.version == max(f.version for f in kept.values())
