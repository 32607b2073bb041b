"""The shipped demo fences: the file is what the generator makes, it validates, and every demo
wearer lives inside its own home fence, well clear of the no-go fences."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import numpy as np
import pytest

from geofences.demo import DEMO_FILE, DEMO_WEARERS, demo_fence_collection, demo_home
from geofences.engine import FenceIndex
from geofences.geojson import fences_from_geojson
from geofences.model import FenceKind
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
        assert mine["elevated road"].geometry["type"] == "MultiPolygon"
        assert len(mine["park"].geometry["coordinates"]) == 2  # the pond is a hole
        assert mine["home"].schedule is not None


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
        assert by_name["home"] >= 20.0  # the centre of a 56 x 44 m block
        assert by_name["neighbourhood"] >= 75.0  # homes keep 80 m from its edge
        assert by_name["river bank"] <= -140.0 and by_name["elevated road"] <= -140.0  # 150 m


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
