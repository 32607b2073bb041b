"""The notifier as a real process (`anxin notify`) against a real database, a real HTTP webhook
receiver that checks signatures, and a real SMTP relay: retries, escalation, a SIGKILL in the
middle of a delivery, offline detection."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest

from services.protocol import Status, UplinkKind
from services.storage.provisioning import seed_demo
from tests.support.alerting import add_contact, ingest, press_sos
from tests.support.far_ends import FarEnd, RecordingRelay, http_far_end
from tests.support.procs import AnxinProcess, anxin_env
from tests.support.stack import count, wait_for

SECRET = "whsec-notifier-test"
WEARER = "wearer-w00001"


@pytest.fixture
def db(db_url: str) -> str:
    with psycopg.connect(db_url) as conn:
        seed_demo(conn, 2)
    return db_url


def start_notifier(tmp: Path, db_url: str, name: str = "notifier", **extra: object) -> AnxinProcess:
    settings: dict[str, object] = {
        "notifier_poll_s": 0.2, "notifier_retry_base_s": 0.3, "offline_scan_s": 0.3, **extra,
    }  # fmt: skip
    env = anxin_env(database_url=db_url, **settings)  # type: ignore[arg-type]
    proc = AnxinProcess(["notify"], env, tmp / f"{name}.log").start()
    wait_for(lambda: "notifier running" in proc.log(), 20, "the notifier to start")
    return proc


@pytest.fixture
def receiver() -> Iterator[FarEnd]:
    with http_far_end(secret=SECRET) as far:
        yield far


def _keys(far: FarEnd) -> list[str]:
    return [r.headers["Idempotency-Key"] for r in far.requests]


def test_a_receiver_that_fails_twice_gets_the_alert_once_more_not_three_times(
    db: str, tmp: Path, receiver: FarEnd
) -> None:
    receiver.statuses = [500, 503]
    with psycopg.connect(db) as conn:
        add_contact(conn, "mum", WEARER, ("webhook", receiver.url + "/hook", SECRET))
    notifier = start_notifier(tmp, db)
    try:
        press_sos(db, "w00001", 1, mode="silent")
        wait_for(lambda: count(db, "SELECT count(*) FROM outbox WHERE status = 'delivered'") == 1,
                 20, "the delivery to succeed")  # fmt: skip
        wait_for(lambda: len(receiver.requests) >= 3, 5, "three attempts")
    finally:
        notifier.stop()
    assert len(receiver.requests) == 3  # two failures, one success; nothing after it
    assert all(r.signature_ok for r in receiver.requests)
    assert len(set(_keys(receiver))) == 1  # one alert, one key: the receiver dedupes on it
    body = json.loads(receiver.requests[-1].body)
    assert body["alert"]["kind"] == "sos_silent" and body["attempt"] == 3
    with psycopg.connect(db) as conn:
        log = conn.execute(
            "SELECT attempt, ok, status_code FROM deliveries ORDER BY delivery_id"
        ).fetchall()
    assert log == [(1, False, 500), (2, False, 503), (3, True, 200)]


def test_a_receiver_that_never_answers_well_is_given_up_and_recorded(
    db: str, tmp: Path, receiver: FarEnd
) -> None:
    receiver.status = 500
    with psycopg.connect(db) as conn:
        add_contact(conn, "mum", WEARER, ("webhook", receiver.url, SECRET))
    notifier = start_notifier(tmp, db, notifier_max_attempts=3, notifier_retry_base_s=0.1)
    try:
        press_sos(db, "w00001", 1)
        wait_for(lambda: count(db, "SELECT count(*) FROM outbox WHERE status = 'gave_up'") == 1,
                 20, "the delivery to be given up")  # fmt: skip
    finally:
        notifier.stop()
    assert len(receiver.requests) == 3
    assert count(db, "SELECT count(*) FROM alert_log WHERE action = 'delivery_gave_up'") == 1


def test_nobody_acknowledging_escalates_to_tier_2_and_an_acknowledgement_stops_tier_3(
    db: str, tmp: Path
) -> None:
    with (
        http_far_end(secret=SECRET) as mum_hook,
        http_far_end(secret=SECRET) as dad_hook,
        http_far_end(secret=SECRET) as carer_hook,
        psycopg.connect(db) as conn,
    ):
        mum = add_contact(conn, "mum", WEARER, ("webhook", mum_hook.url, SECRET))
        dad = add_contact(conn, "dad", WEARER, ("webhook", dad_hook.url, SECRET))
        carer = add_contact(conn, "carer", WEARER, ("webhook", carer_hook.url, SECRET))
        for tier, who in enumerate([mum, dad, carer], start=1):
            conn.execute(
                "INSERT INTO escalation_tiers (wearer_id, tier, contact_ids, ack_critical_s)"
                " VALUES (%s, %s, %s, 2)",
                (WEARER, tier, [who]),
            )
        conn.commit()
        notifier = start_notifier(tmp, db)
        try:
            press_sos(db, "w00001", 1)
            wait_for(lambda: len(mum_hook.requests) == 1, 10, "tier 1 (mum) to be told")
            assert dad_hook.requests == []  # not before her time is up
            wait_for(lambda: len(dad_hook.requests) == 1, 10, "tier 2 (dad) after 2 s")
            alert_id = conn.execute("SELECT alert_id FROM alerts").fetchone()[0]  # type: ignore[index]
            # Dad acknowledges (through the same SQL the API runs; the API test covers the route).
            from services.alerts import sql

            conn.execute(sql.ACKNOWLEDGE, {"alert_id": alert_id, "contact_id": dad})
            conn.commit()
            opened = datetime.now(UTC)
            wait_for(
                lambda: datetime.now(UTC) - opened > timedelta(seconds=3.5), 5, "tier 3's time"
            )
        finally:
            notifier.stop()
        assert carer_hook.requests == []
        tiers = [r[0] for r in conn.execute(
            "SELECT tier FROM outbox ORDER BY outbox_id")]  # fmt: skip
        assert tiers == [1, 2]
        actions = [r[0] for r in conn.execute(
            "SELECT action FROM alert_log ORDER BY log_id")]  # fmt: skip
        assert actions == ["opened", "notified", "escalated"]


def test_a_notifier_killed_mid_delivery_delivers_after_restart(
    db: str, tmp: Path, receiver: FarEnd
) -> None:
    receiver.delays = [30.0]  # the first attempt hangs: the notifier is killed during it
    with psycopg.connect(db) as conn:
        add_contact(conn, "mum", WEARER, ("webhook", receiver.url, SECRET))
    first = start_notifier(tmp, db, notifier_lease_s=2, http_timeout_s=60)
    press_sos(db, "w00001", 1)
    wait_for(lambda: len(receiver.requests) == 1, 10, "the first attempt to reach the receiver")
    first.kill()
    second = start_notifier(tmp, db, "notifier-2", notifier_lease_s=2)
    try:
        wait_for(lambda: count(db, "SELECT count(*) FROM outbox WHERE status = 'delivered'") == 1,
                 20, "delivery after the restart")  # fmt: skip
    finally:
        second.stop()
    assert len(set(_keys(receiver))) == 1 and len(receiver.requests) == 2
    assert count(db, "SELECT count(*) FROM deliveries WHERE ok") == 1


def test_email_reaches_a_real_relay_in_the_contacts_language(
    db: str, tmp: Path, smtp_relay: tuple[RecordingRelay, int]
) -> None:
    relay, port = smtp_relay
    with psycopg.connect(db) as conn:
        cid = add_contact(conn, "mum", WEARER, ("email", "mum@example.org", None))
        conn.execute("UPDATE contacts SET language = 'zh-CN' WHERE contact_id = %s", (cid,))
        conn.commit()
    notifier = start_notifier(tmp, db, smtp_host="127.0.0.1", smtp_port=port)
    try:
        press_sos(db, "w00001", 1, mode="silent")
        wait_for(lambda: len(relay.envelopes) == 1, 20, "the e-mail")
    finally:
        notifier.stop()
    (mail,) = relay.messages()
    assert mail["To"] == "mum <mum@example.org>"
    assert "静默" in mail["Subject"]


def test_offline_detection_fires_and_clears(db: str, tmp: Path) -> None:
    ingest(db, "w00001", UplinkKind.STATUS,
           Status(seq=1, t=datetime.now(UTC), bat=60).model_dump_json())  # fmt: skip
    notifier = start_notifier(tmp, db, offline_after_s=2)
    try:
        opened = "SELECT count(*) FROM alerts WHERE kind = 'offline' AND status = 'open'"
        wait_for(lambda: count(db, opened) == 1, 10, "the offline alert")
        with psycopg.connect(db) as conn:
            severity = conn.execute("SELECT severity FROM alerts").fetchone()[0]  # type: ignore[index]
        assert severity == 2  # medium: not known to be outside a safe fence
        ingest(db, "w00001", UplinkKind.STATUS,
               Status(seq=2, t=datetime.now(UTC), bat=60).model_dump_json())  # fmt: skip
        resolved = "SELECT count(*) FROM alerts WHERE kind = 'offline' AND auto_resolved"
        wait_for(lambda: count(db, resolved) == 1, 10, "the offline alert to clear")
        # Silent again: a new alert for the new silence, not a re-opening of the old one.
        wait_for(lambda: count(db, opened) == 1, 10, "a second offline alert")
    finally:
        notifier.stop()
    assert count(db, "SELECT count(*) FROM alerts WHERE kind = 'offline'") == 2
