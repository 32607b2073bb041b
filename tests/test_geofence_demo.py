"""The shipped demo fences: the file is what the generator makes, it validates, and every demo
wearer lives inside its own home fence (big enough to be decided INSIDE from indoors), which
lies in the neighbourhood, well clear of the no-go fences."""

from __future__ import annotations

import itertools
import json
from datetime import UTC, datetime

import numpy as np
import pytest

from geofences.decision import observe
from geofences.demo import DEMO_FILE, DEMO_WEARERS, demo_fence_collection, demo_home
from geofences.engine import FenceIndex
from geofences.geojson import fences_from_geojson
from geofences.model import FenceKind, Observation
from geofences.schedule import is_active

NAMES = {"home", "neighbourhood", "park", "clinic", "river bank", "elevated road"}


@pytest.fixture(scope="module")
def demo():
    doc = json.loads(DEMO_FILE.read_text(encoding="utf-8"))
    fences = fences_from_geojson(doc)
    return doc, fences, FenceIndex(fences, threads=1)


def test_the_file_is_what_the_generator_makes(demo):
    doc, _, _ = demo
    assert doc == demo_fence_collection(DEMO_WEARERS), "run: python -m geofences.demo"


def test_every_demo_wearer_has_the_six_fences(demo):
    _, fences, index = demo
    assert len(fences) == 6 * len(DEMO_WEARERS) == 120
    for wearer in DEMO_WEARERS:
        mine = {f.name: f for f in index.fences_of(wearer)}
        assert set(mine) == NAMES
        assert mine["river bank"].kind is mine["elevated road"].kind is FenceKind.NOGO
        assert mine["clinic"].radius_m is not None
        assert mine["home"].schedule is not None
        # The cache keeps no GeoJSON: the shapes are checked on the parsed fences.
        assert all(f.geometry is None for f in mine.values())
        parsed = {f.name: f for f in fences if f.wearer_id == wearer}
        assert {n: f.fence_id for n, f in parsed.items()} == {
            n: f.fence_id for n, f in mine.items()
        }
        assert parsed["elevated road"].geometry["type"] == "MultiPolygon"
        assert len(parsed["park"].geometry["coordinates"]) == 2  # the pond is a hole


def test_demo_fence_ids_are_stable(demo):
    _, fences, _ = demo
    assert [f.fence_id for f in fences] == [
        f["id"] for f in demo_fence_collection(DEMO_WEARERS)["features"]
    ]


def test_each_home_is_inside_its_home_fence_and_its_neighbourhood_and_clear_of_nogo(demo):
    _, _, index = demo
    for i, wearer in enumerate(DEMO_WEARERS, start=1):
        lat, lon = demo_home(wearer)
        assert demo_home(i) == demo_home(wearer.removeprefix("wearer-")) == (lat, lon)
        mine = index.fences_of(wearer)
        d = index.signed_distances([f.fence_id for f in mine], np.full(6, lat), np.full(6, lon))
        by_name = {f.name: dist for f, dist in zip(mine, d, strict=True)}
        assert by_name["home"] >= 99.0  # the centre of a 240 x 200 m compound
        assert by_name["neighbourhood"] >= 170.0  # the whole home fence is inside, see below
        assert by_name["river bank"] <= -200.0 and by_name["elevated road"] <= -200.0


def test_a_watch_at_home_with_50_m_accuracy_is_decided_inside(demo):
    """What the first-sight rule needs: at home, a typical indoor fix (wifi, 30–50 m) says
    INSIDE, so the wearer is known to be home before she can be said to leave."""
    _, _, index = demo
    for wearer in DEMO_WEARERS:
        home = next(f for f in index.fences_of(wearer) if f.name == "home")
        lat, lon = demo_home(wearer)
        (d,) = index.signed_distances([home.fence_id], np.array([lat]), np.array([lon]))
        assert observe(float(d), 50.0, home.margin_m) is Observation.INSIDE
        assert observe(float(d) - 30.0, 50.0, home.margin_m) is Observation.INSIDE  # 30 m off


def test_each_home_fence_lies_in_the_neighbourhood_and_clear_of_the_other_places(demo):
    _, fences, index = demo
    geometry = {f.fence_id: f.geometry for f in fences}
    for wearer in DEMO_WEARERS:
        mine = {f.name: f for f in index.fences_of(wearer)}
        ring = np.array(geometry[mine["home"].fence_id]["coordinates"][0])
        t = np.linspace(0.0, 1.0, 25)[:, None]  # points along every edge of the home fence
        edge = np.concatenate([a + t * (b - a) for a, b in itertools.pairwise(ring)])
        lon, lat = edge[:, 0], edge[:, 1]
        for name, (lo, hi) in {
            "neighbourhood": (15.0, np.inf),  # 20 m to spare (the map is good to ~1 m here)
            "river bank": (-np.inf, -45.0),  # 50 m
            "elevated road": (-np.inf, -45.0),
            "park": (-np.inf, -15.0),  # 20 m
            "clinic": (-np.inf, -15.0),
        }.items():
            d = index.signed_distances([mine[name].fence_id] * len(lat), lat, lon)
            assert ((d >= lo) & (d <= hi)).all(), (wearer, name, d.min(), d.max())


def test_homes_are_spread_out_and_deterministic():
    homes = [demo_home(i) for i in range(1, 21)]
    assert len(set(homes)) == 20
    assert demo_home(7) == homes[6]
    assert demo_home("wearer-somebody") == demo_home("wearer-somebody")


def test_the_home_fence_is_active_at_night_in_shanghai(demo):
    _, _, index = demo
    home = next(f for f in index.fences_of("wearer-w00001") if f.name == "home")
    assert is_active(home.schedule, datetime(2025, 6, 2, 14, 0, tzinfo=UTC))  # 22:00 local
    assert not is_active(home.schedule, datetime(2025, 6, 2, 4, 0, tzinfo=UTC))  # noon
