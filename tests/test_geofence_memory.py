"""The fence cache's bulk and trusted paths (what lets an ingestor hold and load 300,000 fences):
``upsert_many`` leaves exactly what one ``upsert`` after another leaves, a stored fence parses
back without re-validation to the fence that was written, a fence that cannot be compiled is
skipped and reported rather than taking the cache down, and the lean cache still answers what
the scalar Shapely path answers."""

from __future__ import annotations

import dataclasses
import gc
import json
import logging
from datetime import time
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from geofences.engine import FenceIndex
from geofences.geojson import fence_from_stored, fence_to_feature, fences_from_geojson
from geofences.model import Fence, FenceKind, Schedule, TimeWindow
from services.storage.fences import load_changed
from tests.test_geofence_engine import assert_close, cached, scalar
from tests.test_geofence_strategies import (
    ORIGIN,
    circle_fence,
    fences,
    points_near,
    ring,
    square,
    square_fence,
)

SCHEDULES = [
    None,
    Schedule(tz="Asia/Shanghai", windows=(TimeWindow(time(21, 0), time(7, 0)),)),
    Schedule(tz="Europe/Berlin", weekdays=frozenset({0, 2, 4}), windows=(
        TimeWindow(time(8, 0), time(12, 0)), TimeWindow(time(14, 0), time(0, 0)))),
]  # fmt: skip


def distances(index: FenceIndex, fence_list: list[Fence], seed: int) -> np.ndarray:
    """Signed distances of 30 points near each fence, pairs in a shuffled order."""
    ids, lat, lon = [], [], []
    for i, f in enumerate(fence_list):
        a, o = points_near(f, 30, seed + i)
        ids += [f.fence_id] * 30
        lat.append(a)
        lon.append(o)
    order = np.random.default_rng(seed).permutation(len(ids))
    return index.signed_distances(
        [ids[i] for i in order], np.concatenate(lat)[order], np.concatenate(lon)[order]
    )


def same_cache(a: FenceIndex, b: FenceIndex, live: dict[str, Fence], seed: int) -> None:
    assert len(a) == len(b) == len(live)
    for wearer in {f.wearer_id for f in live.values()} | {"w1", "w2", "w3"}:
        assert a.fences_of(wearer) == b.fences_of(wearer)
        assert a.wearer_slots(wearer) == b.wearer_slots(wearer)
    for fid, f in live.items():
        assert a.get(fid) == b.get(fid) == cached(f)
    if live:
        got = distances(a, list(live.values()), seed)
        assert np.array_equal(got, distances(b, list(live.values()), seed), equal_nan=True)


# -- upsert_many == one upsert after another ---------------------------------------------------
@settings(max_examples=40, deadline=None)
@given(st.data())
def test_upsert_many_leaves_what_sequential_upserts_leave(data: st.DataObject) -> None:
    def draw_fences(n: int) -> list[Fence]:
        out = []
        for _ in range(n):
            f = data.draw(fences())
            out.append(
                dataclasses.replace(
                    f,
                    fence_id=f"f{data.draw(st.integers(0, 7))}",  # ids repeat: replacements
                    wearer_id=data.draw(st.sampled_from(["w1", "w2", "w3"])),
                    schedule=data.draw(st.sampled_from(SCHEDULES)),
                )
            )
        return out

    batch = data.draw(st.integers(1, 4))  # several compile passes, duplicates across them
    bulk, one = FenceIndex(threads=1), FenceIndex(threads=1)
    live: dict[str, Fence] = {}
    for step in range(3):
        changes = draw_fences(data.draw(st.integers(0, 8)))
        assert bulk.upsert_many(changes, batch=batch) == []
        for f in changes:
            one.upsert(f)
            live[f.fence_id] = f
        for fid in data.draw(st.lists(st.sampled_from([f"f{i}" for i in range(9)]), max_size=3)):
            bulk.remove(fid)
            one.remove(fid)
            live.pop(fid, None)
        same_cache(bulk, one, live, seed=step)
    for f in live.values():  # and both agree with the scalar Shapely reference
        lat, lon = points_near(f, 20, 11)
        assert_close(bulk.signed_distances([f.fence_id] * 20, lat, lon), scalar(f, lat, lon))


def test_the_constructor_loads_a_generator_in_bulk() -> None:
    made = [dataclasses.replace(square_fence(50.0 + i), fence_id=f"f{i}") for i in range(2500)]
    index = FenceIndex((f for f in made), threads=1)  # more than one compile pass
    assert len(index) == 2500 and index.skipped == []
    assert index.get("f1234") == cached(made[1234])
    lat, lon = points_near(made[2400], 10, 1)
    assert_close(index.signed_distances(["f2400"] * 10, lat, lon), scalar(made[2400], lat, lon))


def test_the_cache_keeps_no_fence_objects_and_shares_repeated_values() -> None:
    """A cached ``Fence`` was most of a fence's memory: the cache now keeps none (it builds one
    when asked), and each row's own copies of a wearer id or a schedule become one object."""

    def schedule() -> Schedule:  # equal each time, never the same object
        return Schedule(tz="Asia/Shanghai", windows=(TimeWindow(time(21, 0), time(7, 0)),))

    a = dataclasses.replace(
        square_fence(), fence_id="a", wearer_id="".join(["w", "1"]), schedule=schedule()
    )
    b = dataclasses.replace(
        circle_fence(), fence_id="b", wearer_id="".join(["w", "1"]), schedule=schedule()
    )
    assert a.wearer_id is not b.wearer_id and a.schedule is not b.schedule

    def live_fences() -> int:
        gc.collect()
        return sum(isinstance(o, Fence) for o in gc.get_objects())

    before = live_fences()
    index = FenceIndex(iter([a, b]))
    assert live_fences() == before  # nothing of the input is held, and no Fence is made
    ca, cb = index.fences_of("w1")
    assert ca.geometry is None and cb.geometry is None
    assert ca.wearer_id is cb.wearer_id and ca.schedule is cb.schedule
    assert (ca.fence_id, ca.kind, ca.radius_m, cb.radius_m) == ("a", a.kind, None, b.radius_m)


def test_a_fence_hundreds_of_kilometres_long_is_still_exact_to_the_millimetre() -> None:
    """Chunk vertices are int32 steps of their chunk's box: the rounding grows with the
    chunk, so the longest fences are where it would show."""
    strip = [(-150_000.0, -30.0), (150_000.0, -30.0), (150_000.0, 30.0), (-150_000.0, 30.0)]
    f = dataclasses.replace(
        square_fence(), geometry={"type": "Polygon", "coordinates": [ring(strip)]}
    )
    rng = np.random.default_rng(3)
    x, y = rng.uniform(-160_000, 160_000, 400), rng.uniform(-100, 100, 400)
    lat, lon = ORIGIN.unproject(x, y)
    got = FenceIndex([f]).signed_distances(["fence-1"] * 400, lat, lon)
    assert np.max(np.abs(got - scalar(f, lat, lon))) < 1e-3


# -- a broken fence is skipped and reported ---------------------------------------------------
def broken_fences() -> list[Fence]:
    good = square_fence()

    def bad(fid: str, **kw: Any) -> Fence:
        return dataclasses.replace(good, fence_id=fid, **kw)

    return [
        bad("no-radius", geometry={"type": "Point", "coordinates": [121.47, 31.23]}),
        bad("no-geometry", geometry=None),
        bad("line", geometry={"type": "LineString", "coordinates": [[121.47, 31.23]] * 2}),
        bad("short-ring", geometry={"type": "Polygon", "coordinates": [ring(square(50))[:3]]}),
        bad("text", geometry={"type": "Polygon", "coordinates": [[["a", "b"]] * 4]}),
        bad("nan", geometry={"type": "Polygon", "coordinates": [[[float("nan"), 31.2]] * 4]}),
        bad("no-rings", geometry={"type": "MultiPolygon", "coordinates": []}),
    ]


def test_upsert_many_skips_and_reports_what_cannot_be_compiled() -> None:
    old = dataclasses.replace(circle_fence(120.0), fence_id="nan")
    index = FenceIndex([old], threads=1)
    good = [dataclasses.replace(square_fence(80.0 + i), fence_id=f"ok{i}") for i in range(3)]
    broken = broken_fences()
    skipped = index.upsert_many([good[0], *broken, good[1], good[2]])
    assert sorted(s.fence_id for s in skipped) == sorted(f.fence_id for f in broken)
    assert all(s.reason for s in skipped)
    assert [f.fence_id for f in index.fences_of("wearer-1")] == ["nan", "ok0", "ok1", "ok2"]
    assert index.get("nan") == cached(old)  # a broken replacement leaves the last good one
    for f in good:
        lat, lon = points_near(f, 10, 2)
        assert_close(index.signed_distances([f.fence_id] * 10, lat, lon), scalar(f, lat, lon))
    assert FenceIndex(broken).skipped == skipped and len(FenceIndex(broken)) == 0


def test_a_single_broken_upsert_raises_and_changes_nothing() -> None:
    index = FenceIndex([square_fence()], threads=1)
    for f in broken_fences():
        with pytest.raises(ValueError, match=f.fence_id):
            index.upsert(f)
    assert len(index) == 1 and index.wearer_slots("wearer-1") == (0,)


# -- the trusted parse of stored fences -------------------------------------------------------
@settings(max_examples=80, deadline=None)
@given(fences(), st.sampled_from(SCHEDULES), st.integers(1, 2**40))
def test_a_stored_fence_parses_back_to_what_was_written(
    fence: Fence, schedule: Schedule | None, version: int
) -> None:
    fence = dataclasses.replace(fence, schedule=schedule, fence_id="f-1", wearer_id="w-1")
    feature = fence_to_feature(fence)
    back = fence_from_stored(feature, "f-1", "w-1", version)
    assert back == dataclasses.replace(fence, version=version)
    # ... exactly what the validating parser makes of the same row.
    [checked] = fences_from_geojson(feature, wearer_id="w-1")
    assert back == dataclasses.replace(checked, version=version)


def test_stored_features_without_optional_properties_get_the_parser_defaults() -> None:
    feature = fence_to_feature(dataclasses.replace(square_fence(), kind=FenceKind.NOGO))
    del feature["properties"]["margin_m"], feature["properties"]["dwell_s"]
    stored = fence_from_stored(feature, "fence-1", "wearer-1", 3)
    [checked] = fences_from_geojson(feature)
    assert stored == dataclasses.replace(checked, version=3)


class Rows:
    """A connection stand-in answering ``load_changed``'s one query."""

    def __init__(self, rows: list[tuple]) -> None:
        self.rows = rows

    def execute(self, query: str, params: tuple) -> Rows:
        return self

    def fetchall(self) -> list[tuple]:
        return self.rows


def test_load_changed_skips_and_logs_a_row_it_cannot_read(
    caplog: pytest.LogCaptureFixture,
) -> None:
    good = fence_to_feature(circle_fence(90.0))
    bad_schedule = fence_to_feature(square_fence()) | {}
    bad_schedule["properties"] = {**bad_schedule["properties"], "schedule": {"windows": []}}
    no_kind = {"type": "Feature", "geometry": good["geometry"], "properties": {"name": "x"}}
    rows = [  # the Feature comes as text (``feature::text``), as the database sends it
        ("a", "w", json.dumps(good), 5, False),
        ("b", "w", json.dumps(bad_schedule), 6, False),
        ("c", "w", None, 7, True),
        ("d", "w", json.dumps(no_kind), 9, False),
        ("e", "w", '{"type": "Feature", "geometry": ', 10, False),  # cut short
    ]
    with caplog.at_level(logging.ERROR, logger="services.storage.fences"):
        live, deleted, newest = load_changed(Rows(rows), 4)  # type: ignore[arg-type]
    assert [(f.fence_id, f.wearer_id, f.version) for f in live] == [("a", "w", 5)]
    assert deleted == ["c"] and newest == 10
    assert [r.getMessage().split()[1] for r in caplog.records] == ["b", "d", "e"]
