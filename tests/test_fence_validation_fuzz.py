"""Hostile input to the fence validator (``fences_from_geojson``, the one parser behind the
API, the CLI and fence files): any document gives fences or a ``FenceValidationError`` with
one readable line per problem, never another exception; what it accepts round-trips."""

from __future__ import annotations

import copy
import math
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from geofences.geojson import FenceValidationError, fence_to_feature, fences_from_geojson
from geofences.model import Fence

LON, LAT = 121.4737, 31.2304
SQUARE = [[LON, LAT], [LON + 0.004, LAT], [LON + 0.004, LAT + 0.004], [LON, LAT + 0.004],
          [LON, LAT]]  # fmt: skip
VALID = {
    "type": "Feature",
    "geometry": {"type": "Polygon", "coordinates": [SQUARE]},
    "properties": {"name": "park", "wearer": "wearer-w00001", "kind": "safe", "margin_m": 25,
                   "dwell_s": 60, "schedule": {"tz": "Asia/Shanghai", "days": ["mon"],
                                               "windows": ["21:00-07:00"]}},
}  # fmt: skip

NUMBERS = (
    st.floats()  # NaN, ±inf, huge, tiny
    | st.integers(min_value=-(2**80), max_value=2**80)
    | st.sampled_from([0, -0.0, 1e308, -1e308, 5e-324, True, False])
)
SCALARS = st.none() | st.booleans() | NUMBERS | st.text(max_size=20)
JSON = st.recursive(
    SCALARS,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
near_lon = st.floats(LON - 0.01, LON + 0.01) | NUMBERS
near_lat = st.floats(LAT - 0.01, LAT + 0.01) | NUMBERS
position = st.lists(near_lon | near_lat, min_size=0, max_size=4) | st.tuples(near_lon, near_lat)
ring = st.lists(position, max_size=8) | JSON
coordinates = st.one_of(
    position,  # a Point
    st.lists(ring, max_size=3),  # a Polygon
    st.lists(st.lists(ring, max_size=2), max_size=2),  # a MultiPolygon
    JSON,
)
geometry = (
    st.fixed_dictionaries(
        {
            "type": st.sampled_from(["Polygon", "MultiPolygon", "Point", "LineString", "polygon"])
            | JSON,
            "coordinates": coordinates,
        }
    )
    | JSON
)
schedule = st.fixed_dictionaries(
    {},
    optional={
        "tz": st.sampled_from(["Asia/Shanghai", "UTC", "Mars/Olympus", "", "../etc", "a" * 300])
        | JSON,
        "days": st.lists(st.sampled_from(["mon", "Sunday", "xyz", ""]) | JSON, max_size=8) | JSON,
        "windows": st.lists(
            st.sampled_from(["21:00-07:00", "24:00-01:00", "07:00-07:00", "99:99-00:00", "9-5"])
            | JSON,
            max_size=4,
        )
        | JSON,
        "extra": JSON,
    },
)
properties = (
    st.fixed_dictionaries(
        {},
        optional={
            "name": st.text(max_size=100) | JSON,
            "wearer": st.sampled_from(["wearer-w00001", "", " "]) | JSON,
            "kind": st.sampled_from(["safe", "nogo", "SAFE", ""]) | JSON,
            "radius_m": NUMBERS | JSON,
            "margin_m": NUMBERS | JSON,
            "dwell_s": NUMBERS | JSON,
            "schedule": schedule | JSON,
            "stroke": JSON,
            "dwel_s": JSON,
        },
    )
    | JSON
)
feature = st.fixed_dictionaries(
    {"type": st.sampled_from(["Feature"]) | JSON},
    optional={"geometry": geometry, "properties": properties, "id": JSON},
)
document = st.one_of(
    JSON,
    feature,
    st.fixed_dictionaries(
        {"type": st.sampled_from(["FeatureCollection"]) | JSON},
        optional={"features": st.lists(feature | JSON, max_size=4) | JSON},
    ),
)


def parse(doc: object, **kwargs: Any) -> list[Fence] | list[str]:
    """Fences, or the problems; any other exception fails the test."""
    try:
        fences = fences_from_geojson(doc, **kwargs)
    except FenceValidationError as err:
        assert err.problems, "a rejection names at least one problem"
        assert all(isinstance(p, str) and p.strip() for p in err.problems)
        return err.problems
    assert all(isinstance(f, Fence) for f in fences)
    for f in fences:  # what is accepted is sane and round-trips
        assert f.name.strip() and f.wearer_id
        assert all(math.isfinite(v) for v in (f.margin_m, f.dwell_s))
        assert fences_from_geojson(fence_to_feature(f)) == [f]
    return fences


@settings(max_examples=500, deadline=None)
@given(document)
def test_any_geojson_ish_document_gives_fences_or_problems(doc: object) -> None:
    parse(doc)
    parse(doc, wearer_id="wearer-w00001", existing_names={"wearer-w00001": {"park"}})


def _get(obj: Any, key: str) -> Any:
    return obj.get(key) if isinstance(obj, dict) else None


@st.composite
def mutated_valid(draw: st.DrawFn) -> dict[str, Any]:
    doc = copy.deepcopy(VALID)
    for _ in range(draw(st.integers(1, 3))):
        where = draw(st.sampled_from(["geometry", "properties", "schedule", "ring", "top"]))
        target: Any = {
            "top": doc,
            "schedule": _get(_get(doc, "properties"), "schedule"),
            "ring": _get(_get(doc, "geometry"), "coordinates"),
        }.get(where, _get(doc, where))
        if isinstance(target, dict) and target:
            key = draw(st.sampled_from(sorted(target)))
            if draw(st.booleans()):
                target[key] = draw(JSON)
            else:
                del target[key]
        elif isinstance(target, list) and target and isinstance(target[0], list) and target[0]:
            i = draw(st.integers(0, len(target[0]) - 1))
            target[0][i] = draw(position | JSON)
    return doc


@settings(max_examples=500, deadline=None)
@given(mutated_valid())
def test_a_valid_fence_mutated_gives_fences_or_problems(doc: dict[str, Any]) -> None:
    parse(doc)
    parse({"type": "FeatureCollection", "features": [doc, VALID]})


def test_the_unmutated_fence_is_valid() -> None:
    [fence] = parse(VALID)
    assert isinstance(fence, Fence) and fence.name == "park"


def test_a_huge_polygon_is_refused_with_a_reason_not_a_crash() -> None:
    n = 20_001
    ring = [[LON + 0.01 * math.cos(2 * math.pi * i / n), LAT + 0.01 * math.sin(2 * math.pi * i / n)]
            for i in range(n)] + [[LON + 0.01, LAT]]  # fmt: skip
    problems = parse({**VALID, "geometry": {"type": "Polygon", "coordinates": [ring]}})
    assert any("vertices" in str(p) for p in problems)


def test_deeply_nested_coordinates_are_refused_with_a_reason() -> None:
    deep: Any = [LON, LAT]
    for _ in range(5_000):
        deep = [deep]
    problems = parse({**VALID, "geometry": {"type": "Polygon", "coordinates": deep}})
    assert problems and all(isinstance(p, str) for p in problems)
