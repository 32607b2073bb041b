"""Fences end to end: the API's validation and CRUD, and decisions made by the ingestor on
fixes that travelled through Mosquitto from the simulator."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from fastapi.testclient import TestClient

from geofences.demo import demo_fence_collection, demo_home
from geofences.geojson import fences_from_geojson
from services.api.app import create_app
from services.settings import Settings
from services.storage.fences import save_fences
from services.storage.provisioning import seed_demo
from tests.integration.test_telemetry_path import run_sim, summary
from tests.support.broker import MosquittoProcess
from tests.support.stack import start_ingestor

TOKEN = "fence-test-token"
SQUARE = [[121.47, 31.23], [121.472, 31.23], [121.472, 31.232], [121.47, 31.232], [121.47, 31.23]]


def feature(name: str = "park", coords: list | None = None, **props: object) -> dict:
    return {
        "type": "Feature",
        "geometry": {"type": "Polygon", "coordinates": [coords or SQUARE]},
        "properties": {"name": name, "kind": "safe", **props},
    }


@pytest.fixture
def client(db_url: str) -> Iterator[TestClient]:
    with psycopg.connect(db_url) as conn:
        seed_demo(conn, 2)
    with TestClient(create_app(Settings(database_url=db_url, api_token=TOKEN))) as c:
        c.headers["Authorization"] = f"Bearer {TOKEN}"
        yield c


def test_fence_crud_round_trips_as_geojson(client: TestClient) -> None:
    base = "/v1/wearers/wearer-w00001/fences"
    created = client.post(base, json=feature(dwell_s=90)).json()
    fence_id = created["id"]
    assert created["properties"]["name"] == "park"
    listed = client.get(base).json()
    assert listed["type"] == "FeatureCollection"
    assert [f["id"] for f in listed["features"]] == [fence_id]
    circle = {
        "type": "Feature",
        "geometry": {"type": "Point", "coordinates": [121.471, 31.231]},
        "properties": {"name": "park", "kind": "nogo", "radius_m": 120},
    }
    replaced = client.put(f"{base}/{fence_id}", json=circle)
    assert replaced.status_code == 200, replaced.text
    assert replaced.json()["properties"]["kind"] == "nogo"
    assert client.delete(f"{base}/{fence_id}").status_code == 204
    assert client.get(base).json()["features"] == []
    assert client.delete(f"{base}/{fence_id}").status_code == 404
    # Another family's wearer does not see or touch it.
    assert client.get("/v1/wearers/wearer-w00002/fences").json()["features"] == []


@pytest.mark.parametrize(
    ("bad", "needle"),
    [
        (feature(coords=[[121.47, 31.23], [121.472, 31.232], [121.472, 31.23],
                         [121.47, 31.232], [121.47, 31.23]]), "self-intersection at"),
        (feature(coords=SQUARE[:-1]), "not closed"),
        (feature(coords=[[31.23, 121.47], [31.23, 121.472], [31.232, 121.472], [31.23, 121.47]]),
         "swapped"),
        (feature(coords=[[121.47, 31.23], [121.472, 31.23], [121.47, 31.23], [121.47, 31.23]]),
         "at least 3"),
        (feature(kind="dangerous"), "kind"),
        (feature(schedule={"windows": ["25:00-07:00"]}), "schedule"),
    ],
)  # fmt: skip
def test_an_invalid_fence_is_422_with_the_reason(
    client: TestClient, bad: dict, needle: str
) -> None:
    r = client.post("/v1/wearers/wearer-w00001/fences", json=bad)
    assert r.status_code == 422
    problems = r.json()["detail"]["problems"]
    assert any(needle in p for p in problems), problems


def test_duplicate_names_per_wearer_are_refused(client: TestClient) -> None:
    base = "/v1/wearers/wearer-w00001/fences"
    assert client.post(base, json=feature()).status_code == 201
    r = client.post(base, json=feature())
    assert r.status_code == 422 and "park" in json.dumps(r.json())
    assert client.post("/v1/wearers/wearer-w00002/fences", json=feature()).status_code == 201


def _demo_fences_without_home_schedule(wearer: str) -> list:
    """The demo set, but 'home' always on: the test must not depend on the time of day."""
    doc = demo_fence_collection([wearer])
    for f in doc["features"]:
        if f["properties"]["name"] == "home":
            f["properties"].pop("schedule", None)
    return fences_from_geojson(doc)


def _events(db_url: str) -> list[tuple[str, str]]:
    with psycopg.connect(db_url) as conn:
        return [
            (name, kind)
            for name, kind in conn.execute(
                "SELECT f.name, e.kind FROM events e JOIN fences f USING (fence_id)"
                " ORDER BY e.event_id"
            )
        ]


def test_the_simulator_walking_a_wearer_out_of_home_raises_exactly_one_exit(
    tmp_path: Path, broker: MosquittoProcess, db_url: str, topic_prefix: str
) -> None:
    with psycopg.connect(db_url) as conn:
        seed_demo(conn, 1)
        save_fences(conn, _demo_fences_without_home_schedule("wearer-w00001"), replace=False)
    ingestor = start_ingestor(tmp_path, broker.url, db_url, topic_prefix)
    try:
        # Five simulated minutes in ~5 s: starts at home, walks away from second 20.
        sim = run_sim(tmp_path, broker.url, topic_prefix, "--devices", "1", "--demo-homes",
                      "--rate", "0.5", "--fixes", "150", "--clock-speed", "60",
                      "--clock-start-ago", "400", "--wander", "1@20")  # fmt: skip
        assert sim.wait(120) == 0, sim.log()[-3000:]
    finally:
        ingestor.stop()
    home_events = [kind for name, kind in _events(db_url) if name == "home"]
    assert home_events == ["fence_exit"]
    assert summary(tmp_path)["devices"]["w00001"]["fixes_published"] == 150


def test_indoor_jitter_near_the_edge_for_ten_minutes_raises_nothing(
    tmp_path: Path, broker: MosquittoProcess, db_url: str, topic_prefix: str
) -> None:
    lat0, lon0 = demo_home("wearer-w00001")
    radius = 300.0
    fence = {
        "type": "Feature",
        "geometry": {"type": "Point", "coordinates": [lon0, lat0]},
        "properties": {"name": "block", "kind": "safe", "radius_m": radius,
                       "wearer": "wearer-w00001"},
    }  # fmt: skip
    # The watch sits 40 m inside the edge, due north of the centre.
    lat = lat0 + (radius - 40) / 111_320
    with psycopg.connect(db_url) as conn:
        seed_demo(conn, 1)
        save_fences(conn, fences_from_geojson(fence), replace=False)
    ingestor = start_ingestor(tmp_path, broker.url, db_url, topic_prefix)
    try:
        # Ten simulated minutes, a fix every 5 s, 150 m accuracy, squeezed into ~6 s.
        sim = run_sim(tmp_path, broker.url, topic_prefix, "--devices", "1", "--rate", "0.2",
                      "--fixes", "120", "--clock-speed", "100", "--clock-start-ago", "700",
                      "--stay", f"1:{lat:.7f},{lon0:.7f}:150")  # fmt: skip
        assert sim.wait(120) == 0, sim.log()[-3000:]
    finally:
        ingestor.stop()
    with psycopg.connect(db_url) as conn:
        stored, spread = conn.execute(
            "SELECT count(*), max(sqrt(power((lat - %s) * 111320, 2)"
            " + power((lon - %s) * 111320 * cos(radians(%s)), 2))) FROM positions",
            (lat, lon0, lat),
        ).fetchone()
    assert stored == 120
    assert spread > 100  # the jitter really reached across the boundary
    assert _events(db_url) == []
