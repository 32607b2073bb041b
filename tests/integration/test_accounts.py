"""Accounts and relations through the API (real database): register, log in, refresh, log out,
lockout; invitations that count only once accepted; care granted to a centre; the privacy
audit with its notice to the watch; export, then delete leaving nothing behind."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from fastapi.testclient import TestClient

from services.api.app import create_app
from services.protocol import Fix, UplinkKind
from services.settings import Settings
from services.storage.provisioning import seed_demo
from tests.support.alerting import ingest, press_sos
from tests.support.people import AUTH_SECRET, grant_care, make_org, make_user, relate, token_for

OPERATOR = "operator-token-for-tests"
PASSWORD = "a long enough password 1"
HOME = (31.2304, 121.4737)


@pytest.fixture
def db(db_url: str) -> str:
    with psycopg.connect(db_url) as conn:
        seed_demo(conn, 2)
    return db_url


@pytest.fixture
def api(db: str) -> Iterator[TestClient]:
    settings = Settings(database_url=db, auth_secret=AUTH_SECRET, api_token=OPERATOR)
    with TestClient(create_app(settings)) as client:
        yield client


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def register(api: TestClient, email: str, name: str = "Li Wei", **extra: object) -> dict:
    r = api.post("/v1/auth/register",
                 json={"email": email, "name": name, "password": PASSWORD, **extra})  # fmt: skip
    assert r.status_code == 201, r.text
    return r.json()


def login(api: TestClient, email: str, password: str = PASSWORD):
    return api.post("/v1/auth/login", json={"email": email, "password": password})


def test_register_login_refresh_and_logout(api: TestClient, db: str) -> None:
    register(api, "li.wei@example.org")
    tokens = login(api, "LI.WEI@example.org").json()  # e-mail is case-insensitive
    me = api.get("/v1/me", headers=bearer(tokens["access_token"])).json()
    assert (me["name"], me["role"], me["wearers"]) == ("Li Wei", "family", [])
    with psycopg.connect(db) as conn:
        stored = conn.execute("SELECT password_hash FROM users").fetchone()[0]  # type: ignore[index]
    assert stored.startswith("$argon2id$") and PASSWORD not in stored

    fresh = api.post("/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]}).json()
    assert fresh["refresh_token"] != tokens["refresh_token"]
    assert api.get("/v1/me", headers=bearer(fresh["access_token"])).status_code == 200

    # The old refresh token again: stolen. The whole session ends, new tokens included.
    again = api.post("/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
    assert again.status_code == 401
    assert api.get("/v1/me", headers=bearer(fresh["access_token"])).status_code == 401

    second = login(api, "li.wei@example.org").json()
    assert api.post("/v1/auth/logout", headers=bearer(second["access_token"])).status_code == 204
    assert api.get("/v1/me", headers=bearer(second["access_token"])).status_code == 401
    r = api.post("/v1/auth/refresh", json={"refresh_token": second["refresh_token"]})
    assert r.status_code == 401


def test_five_wrong_passwords_lock_the_account_even_for_the_right_one(api: TestClient) -> None:
    register(api, "zhang@example.org")
    for _ in range(5):
        assert login(api, "zhang@example.org", "wrong password!").status_code == 401
    locked = login(api, "zhang@example.org")
    assert locked.status_code == 423
    assert int(locked.headers["Retry-After"]) > 800
    assert "try again in" in locked.json()["detail"]


def test_registration_refuses_weak_passwords_and_taken_addresses(api: TestClient) -> None:
    r = api.post("/v1/auth/register",
                 json={"email": "a@example.org", "name": "A", "password": "short"})  # fmt: skip
    assert r.status_code == 422 and "at least 10 characters" in r.text
    register(api, "a@example.org")
    r = api.post("/v1/auth/register",
                 json={"email": "A@example.org", "name": "A", "password": PASSWORD})  # fmt: skip
    assert r.status_code == 409
    assert login(api, "nobody@example.org").status_code == 401


def test_an_invitation_shares_nothing_until_it_is_accepted(api: TestClient, db: str) -> None:
    register(api, "mum@example.org", "Mum")
    register(api, "son@example.org", "Son")
    mum = bearer(login(api, "mum@example.org").json()["access_token"])
    son = bearer(login(api, "son@example.org").json()["access_token"])
    r = api.post("/v1/wearers", headers=mum, json={"wearer_id": "grandma-1", "name": "Grandma"})
    assert r.status_code == 201 and r.json()["relation"] == "guardian"

    r = api.post("/v1/wearers/grandma-1/invitations", headers=mum,
                 json={"email": "son@example.org"})  # fmt: skip
    assert r.status_code == 201 and r.json()["status"] == "invited"
    assert api.get("/v1/wearers/grandma-1/location", headers=son).status_code == 404
    assert [i["wearer_id"] for i in api.get("/v1/invitations", headers=son).json()] == ["grandma-1"]
    assert api.post("/v1/invitations/grandma-1/accept", headers=son).status_code == 204
    assert api.get("/v1/wearers/grandma-1/location", headers=son).status_code == 200
    me = api.get("/v1/me", headers=son).json()
    assert me["wearers"] == [{"wearer_id": "grandma-1", "name": "Grandma", "relation": "family"}]
    # Accepting made the son one of the people told about grandma's alerts.
    with psycopg.connect(db) as conn:
        cares = conn.execute("SELECT count(*) FROM care WHERE wearer_id = 'grandma-1'").fetchone()
    assert cares[0] == 2  # type: ignore[index]
    # Only the guardian invites.
    r = api.post("/v1/wearers/grandma-1/invitations", headers=son,
                 json={"email": "mum@example.org"})  # fmt: skip
    assert r.status_code == 403


def test_a_caregiver_sees_a_coarse_location_until_an_alert_opens(api: TestClient, db: str) -> None:
    ingest(db, "w00001", UplinkKind.LOC,
           Fix(seq=1, t=datetime.now(UTC) - timedelta(seconds=5), lat=HOME[0], lon=HOME[1],
               acc=8, spd=1.2, hdg=90).model_dump_json())  # fmt: skip
    org = make_org(db, "Jing'an care centre")
    carer = bearer(token_for(db, make_user(db, "Carer", role="caregiver", org_id=org)))
    assert api.get("/v1/wearers/wearer-w00001/location", headers=carer).status_code == 404
    grant_care(db, "wearer-w00001", org)
    loc = api.get("/v1/wearers/wearer-w00001/location", headers=carer).json()["location"]
    assert loc["coarse"] is True and loc["acc"] >= 300
    assert (loc["lat"], loc["lon"]) != HOME
    assert abs(loc["lat"] - HOME[0]) * 111_000 < 500 and abs(loc["lon"] - HOME[1]) * 95_000 < 500
    assert loc["spd"] is None and loc["hdg"] is None  # speed and heading would narrow it down
    track = api.get("/v1/wearers/wearer-w00001/history", headers=carer).json()["points"]
    assert [(p["lat"], p["lon"], p["acc"], p["coarse"], p["spd"], p["hdg"]) for p in track] == [
        (loc["lat"], loc["lon"], loc["acc"], True, None, None)
    ]
    press_sos(db, "w00001", 2)
    exact = api.get("/v1/wearers/wearer-w00001/location", headers=carer).json()["location"]
    assert exact["coarse"] is False and (exact["lat"], exact["lon"]) == HOME
    track = api.get("/v1/wearers/wearer-w00001/history", headers=carer).json()["points"]
    assert [(p["lat"], p["lon"], p["acc"], p["coarse"], p["spd"], p["hdg"]) for p in track] == [
        (*HOME, 8.0, False, 1.2, 90.0)
    ]


def test_each_look_is_audited_and_the_watch_told_once_per_10_minutes(
    api: TestClient, db: str
) -> None:
    guardian = make_user(db, "Guardian")
    relate(db, "wearer-w00001", guardian, "guardian")
    daughter = make_user(db, "Daughter")
    relate(db, "wearer-w00001", daughter, "family")
    g, d = bearer(token_for(db, guardian)), bearer(token_for(db, daughter))
    api.get("/v1/wearers/wearer-w00001/location", headers=d)
    api.get("/v1/wearers/wearer-w00001/history", headers=d)
    api.get("/v1/wearers/wearer-w00001/location", headers=g)
    audit = api.get("/v1/wearers/wearer-w00001/audit", headers=g).json()
    assert [(a["viewer"], a["action"], a["notified"]) for a in audit] == [
        ("Guardian", "location", True),
        ("Daughter", "history", False),  # within 10 minutes of her first look
        ("Daughter", "location", True),
    ]
    with psycopg.connect(db) as conn:
        notices = conn.execute(
            "SELECT device_id, payload->>'viewer' FROM commands WHERE kind = 'viewed_by'"
            " ORDER BY created_at"
        ).fetchall()
    assert notices == [("w00001", "Daughter"), ("w00001", "Guardian")]


def test_export_then_delete_leaves_no_row_of_the_wearer(api: TestClient, db: str) -> None:
    guardian = make_user(db, "Guardian")
    relate(db, "wearer-w00001", guardian, "guardian")
    g = bearer(token_for(db, guardian))
    fix = Fix(seq=1, t=datetime.now(UTC), lat=HOME[0], lon=HOME[1], acc=8)
    ingest(db, "w00001", UplinkKind.LOC, fix.model_dump_json())
    press_sos(db, "w00001", 2)
    api.get("/v1/wearers/wearer-w00001/location", headers=g)  # an audit row, a notice

    export = api.get("/v1/wearers/wearer-w00001/export", headers=g).json()
    assert {"wearers", "devices", "positions", "alarms", "alerts", "location_audit",
            "commands"} <= set(export["tables"])  # fmt: skip
    assert export["tables"]["positions"][0]["lat"] == HOME[0]

    assert api.delete("/v1/wearers/wearer-w00001", headers=g).status_code == 204
    with psycopg.connect(db) as conn:
        tables = conn.execute(
            "SELECT c.table_name, c.column_name FROM information_schema.columns c"
            " JOIN information_schema.tables t USING (table_schema, table_name)"
            " WHERE c.table_schema = 'public' AND t.table_type = 'BASE TABLE'"
            " AND c.column_name IN ('wearer_id', 'device_id')"
        ).fetchall()
        left = {
            (table, column): conn.execute(
                f"SELECT count(*) FROM \"{table}\" WHERE {column} IN ('wearer-w00001', 'w00001')"
            ).fetchone()[0]  # type: ignore[index]
            for table, column in tables
        }
        other = conn.execute("SELECT count(*) FROM devices WHERE device_id = 'w00002'").fetchone()
    assert {k: v for k, v in left.items() if v} == {}
    assert len(left) >= 15  # every table with a wearer or device column was looked at
    assert other[0] == 1  # type: ignore[index]  # the other wearer is untouched
    assert api.get("/v1/wearers/wearer-w00001/location", headers=g).status_code == 404


def test_no_viewed_by_notice_reaches_a_watch_while_its_silent_sos_is_open(
    api: TestClient, db: str
) -> None:
    daughter = make_user(db, "Daughter")
    relate(db, "wearer-w00001", daughter, "guardian")
    d = bearer(token_for(db, daughter))
    press_sos(db, "w00001", 1, mode="silent")
    assert api.get("/v1/wearers/wearer-w00001/location", headers=d).status_code == 200
    audit = api.get("/v1/wearers/wearer-w00001/audit", headers=d).json()
    assert [(a["action"], a["notified"]) for a in audit] == [("location", False)]
    with psycopg.connect(db) as conn:
        sent = conn.execute("SELECT count(*) FROM commands WHERE kind = 'viewed_by'").fetchone()
    assert sent[0] == 0  # type: ignore[index]  # the screen stays dark
