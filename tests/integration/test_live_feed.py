"""The live alerts feed end to end: a simulated watch → Mosquitto → ingestor → PostgreSQL →
the API's Server-Sent Events, all real processes; and resuming with Last-Event-ID."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import psycopg
import pytest

from services.storage.provisioning import seed_demo
from tests.integration.test_telemetry_path import run_sim, summary
from tests.support.alerting import press_sos
from tests.support.broker import MosquittoProcess
from tests.support.procs import AnxinProcess, anxin_env, free_port
from tests.support.sse import SseClient
from tests.support.stack import Watch, api_up, start_ingestor, wait_for

TOKEN = "live-feed-test-token"


@dataclass
class Api:
    url: str
    proc: AnxinProcess

    def call(self, method: str, path: str, **kw: object) -> httpx.Response:
        return httpx.request(
            method, self.url + path, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10,
            **kw,  # type: ignore[arg-type]
        )  # fmt: skip

    def contact(self, name: str, *wearers: str) -> int:
        cid = self.call("POST", "/v1/contacts", json={"name": name}).json()["contact_id"]
        r = self.call("PUT", f"/v1/contacts/{cid}/wearers", json={"wearer_ids": list(wearers)})
        assert r.status_code == 200, r.text
        return cid

    def feed(self, contact_id: int, last_event_id: int | None = None) -> SseClient:
        url = f"{self.url}/v1/contacts/{contact_id}/feed"
        return SseClient(url, TOKEN, last_event_id).start()


@pytest.fixture
def api(tmp_path: Path, db_url: str) -> Iterator[Api]:
    with psycopg.connect(db_url) as conn:
        seed_demo(conn, 3)
    port = free_port()
    env = anxin_env(database_url=db_url, api_token=TOKEN, api_port=port)
    proc = AnxinProcess(["api"], env, tmp_path / "api.log").start()
    url = f"http://127.0.0.1:{port}"

    wait_for(lambda: api_up(url), 20, "the API")
    yield Api(url, proc)
    proc.stop()


def test_a_silent_sos_from_the_simulator_reaches_the_family_live_and_nothing_reaches_the_watch(
    tmp_path: Path, broker: MosquittoProcess, db_url: str, topic_prefix: str, api: Api
) -> None:
    daughter = api.contact("daughter", "wearer-w00001")
    feed = api.feed(daughter)
    downlink = Watch(broker.url, topic_prefix, "w00001")  # sees all the watch is sent
    ingestor = start_ingestor(tmp_path, broker.url, db_url, topic_prefix)
    try:
        sim = run_sim(tmp_path, broker.url, topic_prefix, "--devices", "1", "--rate", "5",
                      "--fixes", "10", "--press", "1:sos:silent@0.5")  # fmt: skip
        assert sim.wait(60) == 0, sim.log()[-3000:]
        wait_for(lambda: bool(feed.of_type("alert.opened")), 10, "the alert on the live feed")
    finally:
        feed.close()
        ingestor.stop()
        downlink.close()
    (opened,) = feed.of_type("alert.opened")
    alert = opened.data
    assert (alert["kind"], alert["severity"], alert["wearer_id"]) == (
        "sos_silent", "critical", "wearer-w00001",
    )  # fmt: skip
    assert alert["location"] is not None  # the simulator's SOS carries its fix
    # Sent to the watch: its alarm receipt(s), nothing else; and the watch showed nothing.
    kinds = {json.loads(p)["type"] for p in downlink.received}
    assert kinds == {"alarm_receipt"}
    assert summary(tmp_path)["devices"]["w00001"]["ui_events"] == []


def test_a_client_that_reconnects_with_last_event_id_gets_what_it_missed(
    db_url: str, api: Api
) -> None:
    carer = api.contact("carer", "wearer-w00001", "wearer-w00002")
    first = api.feed(carer)
    press_sos(db_url, "w00001", 1)
    wait_for(lambda: len(first.events) == 1, 10, "the first event")
    first.close()  # the phone loses signal …
    press_sos(db_url, "w00002", 2, mode="silent")
    press_sos(db_url, "w00003", 3)  # not in this carer's care: never on their feed
    press_sos(db_url, "w00001", 4)  # joins the open alert of w00001
    resumed = api.feed(carer, last_event_id=first.events[0].id)
    press_sos(db_url, "w00002", 5, mode="silent")  # … and it is back: live again
    try:
        wait_for(lambda: len(resumed.events) == 3, 10, "the missed events and a live one")
    finally:
        resumed.close()
    got = [(e.type, e.data["wearer_id"], e.data["occurrences"]) for e in resumed.events]
    assert got == [
        ("alert.opened", "wearer-w00002", 1),
        ("alert.updated", "wearer-w00001", 2),
        ("alert.updated", "wearer-w00002", 2),
    ]
    ids = [e.id for e in first.events + resumed.events]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)  # in order, nothing twice


def test_the_feed_of_an_unknown_contact_is_a_404_and_needs_the_token(api: Api) -> None:
    assert api.call("GET", "/v1/contacts/999999/feed").status_code == 404
    r = httpx.get(api.url + "/v1/contacts/1/feed", timeout=5)
    assert r.status_code == 401
