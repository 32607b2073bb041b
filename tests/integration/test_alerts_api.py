"""Contacts, escalation tiers and alerts through the API (real database; alerts raised by the
ingestor's own store stage)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import psycopg
import pytest
from fastapi.testclient import TestClient

from services.api.app import create_app
from services.protocol import Status, UplinkKind
from services.settings import Settings
from services.storage.provisioning import seed_demo
from tests.support.alerting import ingest, press_sos

TOKEN = "test-token-not-a-secret"
NOW = datetime.now(UTC).replace(microsecond=0)


@pytest.fixture
def db(db_url: str) -> str:
    with psycopg.connect(db_url) as conn:
        seed_demo(conn, 3)
    return db_url


@pytest.fixture
def client(db: str) -> Iterator[TestClient]:
    with TestClient(create_app(Settings(database_url=db, api_token=TOKEN))) as c:
        c.headers["Authorization"] = f"Bearer {TOKEN}"
        yield c


def contact(client: TestClient, name: str, *wearers: str, **extra: object) -> int:
    r = client.post("/v1/contacts", json={"name": name, **extra})
    assert r.status_code == 201, r.text
    cid = r.json()["contact_id"]
    if wearers:
        r = client.put(f"/v1/contacts/{cid}/wearers", json={"wearer_ids": list(wearers)})
        assert r.status_code == 200, r.text
    return cid


def test_contact_round_trip_with_care_and_quiet_hours(client: TestClient) -> None:
    cid = contact(client, "Li Na", "wearer-w00001", "wearer-w00002", role="caregiver",
                  language="en", tz="Europe/London",
                  quiet_hours={"start": "22:00", "end": "07:00"})  # fmt: skip
    got = client.get(f"/v1/contacts/{cid}").json()
    assert got["wearer_ids"] == ["wearer-w00001", "wearer-w00002"]
    assert got["quiet_hours"] == {"start": "22:00:00", "end": "07:00:00"}
    assert got["role"] == "caregiver" and got["tz"] == "Europe/London"
    r = client.patch(f"/v1/contacts/{cid}", json={"quiet_hours": None, "language": "zh-CN"})
    assert r.json()["quiet_hours"] is None and r.json()["language"] == "zh-CN"
    assert client.delete(f"/v1/contacts/{cid}").status_code == 204
    assert client.get(f"/v1/contacts/{cid}").status_code == 404


@pytest.mark.parametrize(
    "body, words",
    [
        ({"name": "x", "tz": "Mars/Olympus"}, "unknown IANA time zone"),
        ({"name": ""}, "at least 1 character"),
        ({"name": "x", "quiet_hours": {"start": "22:00", "end": "22:00"}}, "different start"),
    ],
)
def test_bad_contacts_get_a_422_that_says_why(client: TestClient, body: dict, words: str) -> None:
    r = client.post("/v1/contacts", json=body)
    assert r.status_code == 422
    assert words in r.text


def test_care_for_an_unknown_wearer_is_refused(client: TestClient) -> None:
    cid = contact(client, "x")
    r = client.put(f"/v1/contacts/{cid}/wearers", json={"wearer_ids": ["nobody"]})
    assert r.status_code == 404 and "nobody" in r.text
    r = client.put(f"/v1/contacts/{cid}/wearers", json={"wearer_ids": ["no\u0000body"]})
    assert r.status_code == 422 and "NUL" in r.text, r.text  # it was a 500


def test_a_webhook_secret_is_shown_once(client: TestClient) -> None:
    cid = contact(client, "x")
    r = client.post(f"/v1/contacts/{cid}/channels",
                    json={"kind": "webhook", "address": "https://example.org/hook"})  # fmt: skip
    assert r.status_code == 201
    assert len(r.json()["secret"]) >= 32
    listed = client.get(f"/v1/contacts/{cid}/channels").json()
    assert listed == [{"channel_id": r.json()["channel_id"], "kind": "webhook",
                       "address": "https://example.org/hook", "enabled": True}]  # fmt: skip
    hook = {"kind": "webhook", "address": "https://example.org/hook"}
    again = client.post(f"/v1/contacts/{cid}/channels", json=hook)
    assert again.status_code == 409


@pytest.mark.parametrize(
    "body, words",
    [
        ({"kind": "email", "address": "not-an-address"}, "not an e-mail address"),
        ({"kind": "webhook", "address": "ftp//nope"}, "URL"),
        ({"kind": "webpush", "address": "https://push.example/abc"}, "needs its keys"),
    ],
)
def test_bad_channels_get_a_422_that_says_why(client: TestClient, body: dict, words: str) -> None:
    cid = contact(client, "x")
    r = client.post(f"/v1/contacts/{cid}/channels", json=body)
    assert r.status_code == 422 and words in r.text, r.text


def test_escalation_tiers_round_trip_and_refuse_unknown_contacts(client: TestClient) -> None:
    a, b = contact(client, "a"), contact(client, "b")
    tiers = {
        "tiers": [
            {"contact_ids": [a], "ack_critical_s": 60, "ack_high_s": 600},
            {"contact_ids": [a, b], "ack_critical_s": 120, "ack_high_s": 900},
        ]
    }
    r = client.put("/v1/wearers/wearer-w00001/escalation", json=tiers)
    assert r.status_code == 200 and r.json() == tiers
    assert client.get("/v1/wearers/wearer-w00001/escalation").json() == tiers
    r = client.put("/v1/wearers/wearer-w00001/escalation",
                   json={"tiers": [{"contact_ids": [999999]}]})  # fmt: skip
    assert r.status_code == 404 and "999999" in r.text
    # An id past the bigint column is a 422 that says so, not a 500 (found by schemathesis).
    r = client.put("/v1/wearers/wearer-w00001/escalation",
                   json={"tiers": [{"contact_ids": [2**64]}]})  # fmt: skip
    assert r.status_code == 422 and "less than or equal" in r.text, r.text
    assert client.get("/v1/wearers/nobody/escalation").status_code == 404


def test_acknowledge_then_resolve_with_a_note_and_the_timeline_tells_it(
    client: TestClient, db: str
) -> None:
    mum = contact(client, "mum", "wearer-w00001")
    press_sos(db, "w00001", 1, mode="silent")
    (alert,) = client.get("/v1/alerts", params={"status": "unresolved"}).json()["alerts"]
    assert (alert["kind"], alert["severity"], alert["tier"]) == ("sos_silent", "critical", 1)
    aid = alert["alert_id"]

    r = client.post(f"/v1/alerts/{aid}/acknowledge", json={"contact_id": mum})
    assert r.status_code == 200
    assert r.json()["status"] == "acknowledged" and r.json()["acknowledged_by"] == mum
    assert r.json()["next_escalation_at"] is None
    assert client.post(f"/v1/alerts/{aid}/acknowledge", json={"contact_id": mum}).status_code == 200

    assert client.post(f"/v1/alerts/{aid}/resolve",
                       json={"contact_id": mum, "note": "  "}).status_code == 422  # fmt: skip
    r = client.post(f"/v1/alerts/{aid}/resolve",
                    json={"contact_id": mum, "note": "Dad pressed it by mistake"})  # fmt: skip
    assert r.status_code == 200
    assert (r.json()["status"], r.json()["resolution_note"]) == (
        "resolved", "Dad pressed it by mistake",
    )  # fmt: skip
    assert client.post(f"/v1/alerts/{aid}/resolve",
                       json={"contact_id": mum, "note": "again"}).status_code == 409  # fmt: skip
    assert client.post(f"/v1/alerts/{aid}/acknowledge",
                       json={"contact_id": mum}).status_code == 409  # fmt: skip

    t = client.get(f"/v1/alerts/{aid}/timeline").json()
    seen = [(e["type"], e["what"]) for e in t["entries"]]
    assert seen == [
        ("event", "alarm_sos"),
        ("action", "opened"),
        ("action", "notified"),  # tier 1: mum (no channels yet: the live feed only)
        ("action", "acknowledged"),
        ("action", "resolved"),
    ]
    assert t["entries"][2]["detail"] == {"contacts": [mum], "channels": 0}
    feed = [r[0] for r in psycopg.connect(db).execute(
        "SELECT type FROM alert_feed ORDER BY feed_id")]  # fmt: skip
    assert feed == ["alert.opened", "alert.acknowledged", "alert.resolved"]


def test_only_a_contact_caring_for_the_wearer_may_acknowledge(client: TestClient, db: str) -> None:
    stranger = contact(client, "stranger", "wearer-w00002")
    press_sos(db, "w00001", 1)
    aid = client.get("/v1/alerts").json()["alerts"][0]["alert_id"]
    r = client.post(f"/v1/alerts/{aid}/acknowledge", json={"contact_id": stranger})
    assert r.status_code == 403
    assert client.post(f"/v1/alerts/{aid}/acknowledge",
                       json={"contact_id": 424242}).status_code == 404  # fmt: skip
    assert client.get("/v1/alerts/999999").status_code == 404


def test_the_care_feed_lists_unresolved_alerts_most_severe_first_with_counts(
    client: TestClient, db: str
) -> None:
    carer = contact(client, "carer", "wearer-w00001", "wearer-w00002", role="caregiver")
    ingest(db, "w00002", UplinkKind.STATUS, Status(seq=1, t=NOW, bat=4).model_dump_json())
    press_sos(db, "w00001", 2)
    press_sos(db, "w00003", 3)  # not in this carer's care
    feed = client.get(f"/v1/contacts/{carer}/alerts").json()
    assert [(a["wearer_id"], a["kind"]) for a in feed["alerts"]] == [
        ("wearer-w00001", "sos_audible"),
        ("wearer-w00002", "battery"),
    ]
    assert feed["counts"] == {"total": 2, "critical": 1, "high": 0, "medium": 1, "low": 0}
    only = client.get(f"/v1/contacts/{carer}/alerts", params={"kind": "battery"}).json()
    assert [a["kind"] for a in only["alerts"]] == ["battery"]
    assert client.get("/v1/contacts/999999/alerts").status_code == 404


def test_alert_list_filters_and_pages(client: TestClient, db: str) -> None:
    for i, device in enumerate(["w00001", "w00002", "w00003"], start=1):
        press_sos(db, device, i)
    page = client.get("/v1/alerts", params={"limit": 2}).json()
    assert len(page["alerts"]) == 2 and page["next_before"] is not None
    rest = client.get("/v1/alerts", params={"limit": 2, "before": page["next_before"]}).json()
    assert len(rest["alerts"]) == 1 and rest["next_before"] is None
    mine = client.get("/v1/alerts", params={"wearer_id": "wearer-w00002"}).json()["alerts"]
    assert [a["wearer_id"] for a in mine] == ["wearer-w00002"]
    assert client.get("/v1/alerts", params={"min_severity": "critical"}).json()["alerts"]
    assert client.get("/v1/alerts", params={"status": "bogus"}).status_code == 422
