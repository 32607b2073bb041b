"""Every validation reason, from a dict (the API's path) and from a file (the CLI's path), and
the document format's round trip."""

from __future__ import annotations

import copy
import json
import math
import uuid
from pathlib import Path
from typing import Any

import pytest

from geofences.cli import check_file
from geofences.geojson import FenceValidationError, fence_to_feature, fences_from_geojson
from geofences.model import FenceKind
from tests.test_geofence_strategies import ORIGIN, ring, square

LON0, LAT0 = ORIGIN.lon0, ORIGIN.lat0  # 121.4737, 31.2304


def feature(**props: Any) -> dict[str, Any]:
    """A valid 400 m square safe fence; keyword arguments replace properties (None drops)."""
    base = {"name": "park", "wearer": "wearer-w00001", "kind": "safe"}
    base.update(props)
    return {
        "type": "Feature",
        "geometry": {"type": "Polygon", "coordinates": [ring(square(200.0))]},
        "properties": {k: v for k, v in base.items() if v is not None},
    }


def with_geometry(geometry: dict[str, Any], **props: Any) -> dict[str, Any]:
    f = feature(**props)
    f["geometry"] = geometry
    return f


def collection(*features: dict[str, Any]) -> dict[str, Any]:
    return {"type": "FeatureCollection", "features": list(features)}


def polygon(*rings: list[list[float]]) -> dict[str, Any]:
    return {"type": "Polygon", "coordinates": list(rings)}


def circle(radius: Any) -> dict[str, Any]:
    return with_geometry(
        {"type": "Point", "coordinates": [LON0, LAT0]}, radius_m=radius, name="clinic"
    )


def many_vertices(n: int) -> list[list[float]]:
    pts = [
        (300 * math.cos(2 * math.pi * i / n), 300 * math.sin(2 * math.pi * i / n)) for i in range(n)
    ]
    return ring(pts)


BOW_TIE = ring([(-200.0, -200.0), (200.0, 200.0), (200.0, -200.0), (-200.0, 200.0)])
UNCLOSED = [[121.49, 31.23], [121.5, 31.23], [121.5, 31.24]]
SWAPPED = [[lat, lon] for lon, lat in ring(square(200.0))]

CASES: dict[str, tuple[dict[str, Any], str]] = {
    "self-intersection": (
        with_geometry(polygon(BOW_TIE)),
        'feature 0 ("park"): self-intersection at (121.4737, 31.2304)',
    ),
    "unclosed ring": (
        with_geometry(polygon(UNCLOSED), name="river bank"),
        'feature 0 ("river bank"): ring 0 is not closed '
        "(first point (121.49, 31.23) != last point (121.5, 31.24))",
    ),
    "out of range": (
        with_geometry(polygon([[200.0, 31.2], [200.1, 31.2], [200.1, 31.3], [200.0, 31.2]])),
        "position (200, 31.2) is out of range (lon -180…180, lat -90…90) (and 2 more)",
    ),
    "swapped": (with_geometry(polygon(SWAPPED)), "coordinates look swapped: (31.2"),
    "fewer than 3 distinct points": (
        with_geometry(polygon([[121.47, 31.23], [121.48, 31.23], [121.47, 31.23]])),
        "ring 0 has 2 distinct points (a ring needs at least 3)",
    ),
    "too many vertices": (
        with_geometry(polygon(many_vertices(10_001))),
        "10,001 vertices (at most 10,000)",
    ),
    "radius too small": (circle(5), "radius_m 5 m is outside 10 m … 50 km"),
    "radius too large": (circle(1e6), "radius_m 1,000,000 m is outside 10 m … 50 km"),
    "radius missing": (circle(None), "a Point needs radius_m"),
    "radius not a number": (circle("50"), "radius_m '50' is not a number"),
    "area too small": (
        with_geometry(polygon(ring(square(2.5)))),
        "area 25 m² is below the minimum of 100 m²",
    ),
    "area too large": (
        with_geometry(polygon(ring(square(6000.0)))),
        "area 144.0 km² is above the maximum of 100 km²",
    ),
    "unknown kind": (feature(kind="fence"), 'unknown kind \'fence\' (use "safe" or "nogo")'),
    "bad schedule window": (
        feature(schedule={"windows": ["21:00-31:00"]}),
        "schedule window '21:00-31:00' has an impossible time of day",
    ),
    "bad schedule zone": (
        feature(schedule={"windows": ["21:00-07:00"], "tz": "Asia/Shangai"}),
        "schedule time zone 'Asia/Shangai' is not an IANA zone",
    ),
    "hole outside its shell": (
        with_geometry(polygon(ring(square(200.0)), ring(square(50.0, 1000.0, 0.0)))),
        "a hole lies outside its shell near (",
    ),
    "overlapping parts": (
        with_geometry(
            {
                "type": "MultiPolygon",
                "coordinates": [[ring(square(200.0))], [ring(square(200.0, 100.0, 0.0))]],
            }
        ),
        "self-intersection at (",
    ),
    "unsupported geometry": (
        with_geometry({"type": "LineString", "coordinates": [[LON0, LAT0], [LON0, LAT0 + 0.01]]}),
        "geometry type 'LineString' is not supported",
    ),
    "radius on a polygon": (feature(radius_m=50), "radius_m applies only to a Point"),
    "margin out of range": (feature(margin_m=900), "margin_m 900 is outside 0–500 m"),
    "dwell out of range": (feature(dwell_s=-5), "dwell_s -5 is outside 0–3,600 s"),
    "name missing": (feature(name=None), "feature 0: name is missing"),
    "name too long": (feature(name="x" * 81), "name is 81 characters long (at most 80)"),
    "wearer missing": (feature(wearer=None), "wearer is missing"),
    "unknown property": (feature(dwel_s=30), "unknown property 'dwel_s'"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_each_reason_from_a_dict(case: str) -> None:
    feat, reason = CASES[case]
    with pytest.raises(FenceValidationError) as err:
        fences_from_geojson(collection(copy.deepcopy(feat)))
    assert any(reason in p for p in err.value.problems), err.value.problems
    assert all(p.startswith("feature 0") for p in err.value.problems)


@pytest.mark.parametrize("case", sorted(CASES))
def test_each_reason_from_a_file(
    case: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    feat, reason = CASES[case]
    path = tmp_path / "fences.geojson"
    path.write_text(json.dumps(collection(feat)))
    assert check_file(path) == 1
    lines = capsys.readouterr().err.splitlines()
    assert any(reason in line for line in lines), lines
    assert all(line.startswith(f"{path}: feature 0") for line in lines)


def test_duplicate_names_per_wearer_are_refused_case_insensitively() -> None:
    doc = collection(feature(name="Home"), feature(name="home "), feature(name="home", wearer="w2"))
    with pytest.raises(FenceValidationError) as err:
        fences_from_geojson(doc)
    assert err.value.problems == [
        "feature 1 (\"home \"): duplicate name 'home' for wearer wearer-w00001 "
        "(feature 0 has it too)"
    ]


def test_names_already_stored_count_as_duplicates() -> None:
    with pytest.raises(FenceValidationError) as err:
        fences_from_geojson(feature(name="Park"), existing_names={"wearer-w00001": {"park"}})
    assert err.value.problems == [
        "feature 0 (\"Park\"): wearer wearer-w00001 already has a fence named 'Park'"
    ]
    assert fences_from_geojson(feature(name="Park"), existing_names={"someone-else": {"park"}})


def test_all_problems_of_a_file_come_at_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    doc = collection(
        feature(kind="fence"),
        with_geometry(polygon(UNCLOSED), name="river bank", schedule={"windows": []}),
        feature(name="ok"),
        circle(1),
    )
    path = tmp_path / "broken.geojson"
    path.write_text(json.dumps(doc))
    assert check_file(path) == 1
    lines = capsys.readouterr().err.splitlines()
    assert [line.split(": ", 1)[1].split(":")[0] for line in lines] == [
        'feature 0 ("park")',
        'feature 1 ("river bank")',
        'feature 1 ("river bank")',
        'feature 3 ("clinic")',
    ]


def test_a_good_file_passes_with_a_summary(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "good.geojson"
    path.write_text(
        json.dumps(collection(feature(), circle(60), feature(name="river", kind="nogo")))
    )
    assert check_file(path) == 0
    assert capsys.readouterr().out.startswith("3 fences OK")


def test_unreadable_and_non_json_files_fail(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert check_file(tmp_path / "missing.geojson") == 1
    bad = tmp_path / "bad.geojson"
    bad.write_text("{not json")
    assert check_file(bad) == 1
    assert "not valid JSON" in capsys.readouterr().err


def test_a_document_that_is_not_geojson_is_refused() -> None:
    for doc in ([], {"type": "Polygon"}, {"type": "FeatureCollection"}):
        with pytest.raises(FenceValidationError):
            fences_from_geojson(doc)


# -- the format ---------------------------------------------------------------------------------
def test_defaults_ids_and_the_api_wearer() -> None:
    safe, nogo = fences_from_geojson(
        collection(
            feature(wearer=None), feature(name="river", kind="nogo", wearer=None) | {"id": 7}
        ),
        wearer_id="wearer-w00002",
    )
    assert (safe.margin_m, safe.dwell_s, nogo.dwell_s) == (25.0, 60.0, 0.0)
    assert safe.wearer_id == nogo.wearer_id == "wearer-w00002"
    assert uuid.UUID(safe.fence_id).version == 4 and nogo.fence_id == "7"
    assert safe.kind is FenceKind.SAFE and nogo.kind is FenceKind.NOGO
    with pytest.raises(FenceValidationError) as err:
        fences_from_geojson(feature(), wearer_id="wearer-w00002")
    assert "does not match the wearer 'wearer-w00002'" in err.value.problems[0]


def test_duplicate_feature_ids_are_refused() -> None:
    with pytest.raises(FenceValidationError) as err:
        fences_from_geojson(collection(feature() | {"id": "a"}, feature(name="b") | {"id": "a"}))
    assert err.value.problems == ["feature 1 (\"b\"): duplicate id 'a' (feature 0)"]


def test_features_round_trip_including_schedule_and_circle() -> None:
    doc = collection(
        feature(
            schedule={"windows": ["21:00-07:00"], "days": ["mon", "tue"], "tz": "Europe/Berlin"},
            margin_m=10,
            dwell_s=120,
        ),
        circle(60),
        feature(name="river", kind="nogo", stroke="#ff0000"),  # styling is accepted, dropped
    )
    fences = fences_from_geojson(doc)
    again = fences_from_geojson(collection(*[fence_to_feature(f) for f in fences]))
    assert again == fences
    assert fence_to_feature(fences[0])["properties"]["schedule"] == {
        "tz": "Europe/Berlin",
        "days": ["mon", "tue"],
        "windows": ["21:00-07:00"],
    }
    assert "stroke" not in fence_to_feature(fences[2])["properties"]
