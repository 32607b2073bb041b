"""Alerts raised by the ingestor's own stages (decode → plan → store with fences and alerts)
in a real database: one alert per device, kind and fence; a bad fix never loses an alarm;
outbox and feed rows commit with the alert."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from geofences.model import Fence, FenceKind
from services.ingestor.alert_stage import apply_alerts
from services.ingestor.decode import Limits
from services.ingestor.fence_stage import FenceCache, apply_fences
from services.ingestor.pipeline import Access, Received, decode_all, prepare_batch
from services.ingestor.store import store_batch
from services.protocol import Alarm, Fix, Status, Topics, UplinkKind
from services.storage.fences import save_fences
from services.storage.provisioning import seed_demo

TOPICS = Topics("anxin")
T0 = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=30)
DEVICE, WEARER = "w00001", "wearer-w00001"
HOME = (31.2300, 121.4700)  # lat, lon


class Stack:
    """The ingestor's store stage with fences and alerts, in-process."""

    def __init__(self, conn: psycopg.Connection) -> None:
        self.conn = conn
        self.fences = FenceCache(refresh_s=0)
        self.seq = 0

    def send(self, *messages: tuple[UplinkKind, str]) -> None:
        received = [Received(TOPICS.uplink(DEVICE, k), p.encode(), T0) for k, p in messages]
        plan = prepare_batch(decode_all(received, TOPICS, Limits()), {DEVICE: Access.ACTIVE})
        self.fences.refresh(self.conn, force=True)
        self.conn.commit()

        def wearer_of(device_id: str) -> str:
            return f"wearer-{device_id}"

        store_batch(
            self.conn,
            plan,
            lambda c, p: apply_fences(c, p, self.fences.index, wearer_of),
            lambda c, p, e: apply_alerts(c, p, e, wearer_of),
        )
        self.conn.commit()

    def fix(self, minutes: float, lat: float, lon: float, acc: float = 10.0, bat: int = 80):
        self.seq += 1
        f = Fix(seq=self.seq, t=T0 + timedelta(minutes=minutes), lat=lat, lon=lon, acc=acc,
                bat=bat)  # fmt: skip
        return (UplinkKind.LOC, f.model_dump_json())

    def alarm(self, minutes: float, type_: str = "sos", mode: str = "audible", fix=None):
        self.seq += 1
        a = Alarm(seq=self.seq, t=T0 + timedelta(minutes=minutes), type=type_, mode=mode, fix=fix)
        return (UplinkKind.ALARM, a.model_dump_json())

    def status(self, minutes: float, bat: int, charging: bool = False, worn: bool | None = None):
        self.seq += 1
        s = Status(seq=self.seq, t=T0 + timedelta(minutes=minutes), bat=bat, charging=charging,
                   worn=worn)  # fmt: skip
        return (UplinkKind.STATUS, s.model_dump_json())

    def alerts(self) -> list[dict]:
        return [
            r[0]
            for r in self.conn.execute(
                "SELECT alert FROM alert_public ORDER BY alert_id"
            ).fetchall()
        ]

    def one(self, sql: str, *params: object) -> object:
        row = self.conn.execute(sql, params).fetchone()  # type: ignore[arg-type]
        return row[0] if row else None


@pytest.fixture
def stack(db_url: str) -> Iterator[Stack]:
    with psycopg.connect(db_url) as conn:
        seed_demo(conn, 1)
        conn.commit()
        yield Stack(conn)


def _contact_with_webhook(conn: psycopg.Connection, name: str, wearer: str = WEARER) -> int:
    cid = conn.execute(
        "INSERT INTO contacts (name) VALUES (%s) RETURNING contact_id", (name,)
    ).fetchone()[0]  # type: ignore[index]
    conn.execute("INSERT INTO care VALUES (%s, %s)", (cid, wearer))
    conn.execute(
        "INSERT INTO contact_channels (contact_id, kind, address, secret)"
        " VALUES (%s, 'webhook', %s, 's')",
        (cid, f"http://127.0.0.1:9/{name}"),
    )
    conn.commit()
    return cid


def test_a_repeated_sos_press_joins_the_open_alert_and_a_resend_does_not(stack: Stack) -> None:
    first = stack.alarm(1, mode="silent", fix={"t": T0.isoformat(), "lat": 31.23, "lon": 121.47,
                                              "acc": 15})  # fmt: skip
    stack.send(first)
    stack.send(first)  # the watch re-sent it (receipt lost): same seq, already stored
    stack.send(stack.alarm(2, mode="silent"))  # pressed again
    alerts = stack.alerts()
    assert len(alerts) == 1
    a = alerts[0]
    assert (a["kind"], a["severity"], a["status"]) == ("sos_silent", "critical", "open")
    assert a["occurrences"] == 2
    assert stack.one("SELECT count(*) FROM alert_events") == 2
    assert [r[0] for r in stack.conn.execute("SELECT type FROM alert_feed ORDER BY feed_id")] == [
        "alert.opened",
        "alert.updated",
    ]


@pytest.mark.parametrize(
    "fix, problem",
    [
        (None, "no fix"),
        ({"t": T0.isoformat(), "lat": 0, "lon": 0, "acc": 20}, "0, 0"),
        ({"t": T0.isoformat(), "lat": 95, "lon": 121.47, "acc": 20}, "invalid"),
        ({"t": T0.isoformat(), "lat": 31.3, "lon": 121.5, "acc": 2500}, "2500 m"),
    ],
)
def test_an_sos_with_a_bad_fix_raises_its_alert_with_the_last_known_location(
    stack: Stack, fix: dict | None, problem: str
) -> None:
    stack.send(stack.fix(0, *HOME, acc=30))
    stack.send(stack.alarm(12, fix=fix))
    (a,) = stack.alerts()
    assert a["kind"] == "sos_audible" and a["status"] == "open"
    loc = a["location"]
    assert loc["source"] == "last_known"
    assert (loc["lat"], loc["lon"], loc["acc"]) == (HOME[0], HOME[1], 30.0)
    assert datetime.fromisoformat(loc["t"]) == T0  # the age is shown from this
    assert problem in loc["fix_problem"] or (problem == "invalid" and loc["fix_problem"])


def test_an_sos_from_a_watch_never_located_still_opens_its_alert(stack: Stack) -> None:
    stack.send(stack.alarm(1, type_="fall"))
    (a,) = stack.alerts()
    assert (a["kind"], a["severity"], a["location"]) == ("fall", "critical", None)


def test_an_alert_writes_its_outbox_rows_in_the_same_transaction(stack: Stack) -> None:
    mum = _contact_with_webhook(stack.conn, "mum")
    stack.send(stack.alarm(1))
    rows = stack.conn.execute(
        "SELECT contact_id, channel, reason, tier, status FROM outbox"
    ).fetchall()
    assert rows == [(mum, "webhook", "opened", 1, "pending")]
    assert stack.one("SELECT tier FROM alerts") == 1


def test_battery_alert_opens_at_15_rises_at_5_and_clears_when_charged(stack: Stack) -> None:
    stack.send(stack.status(0, 40))
    assert stack.alerts() == []
    stack.send(stack.status(1, 15))
    stack.send(stack.fix(2, *HOME, bat=14))  # the same level again: no new update
    (a,) = stack.alerts()
    assert (a["kind"], a["severity"], a["occurrences"]) == ("battery", "low", 1)
    stack.send(stack.status(3, 5))
    (a,) = stack.alerts()
    assert (a["severity"], a["occurrences"]) == ("medium", 2)
    stack.send(stack.status(4, 17))  # inside the hysteresis band: nothing changes
    assert stack.alerts()[0]["status"] == "open"
    stack.send(stack.status(5, 6, charging=True))
    (a,) = stack.alerts()
    assert (a["status"], a["auto_resolved"]) == ("resolved", True)


def _save_home_fence(conn: psycopg.Connection, kind: FenceKind = FenceKind.SAFE) -> str:
    lat, lon = HOME
    d = 0.002  # about 200 m
    ring = [[lon - d, lat - d], [lon + d, lat - d], [lon + d, lat + d], [lon - d, lat + d],
            [lon - d, lat - d]]  # fmt: skip
    fence = Fence("5b0c2f3e-0000-4000-8000-000000000001", WEARER, "home", kind,
                  {"type": "Polygon", "coordinates": [ring]}, margin_m=10, dwell_s=0)  # fmt: skip
    save_fences(conn, [fence], replace=False)
    conn.commit()
    return fence.fence_id


def test_leaving_a_safe_fence_alerts_and_coming_back_resolves_it(stack: Stack) -> None:
    fence_id = _save_home_fence(stack.conn)
    stack.send(stack.fix(0, *HOME))
    stack.send(stack.fix(1, HOME[0] + 0.01, HOME[1]))  # ~1 km north
    (a,) = stack.alerts()
    assert (a["kind"], a["severity"], a["fence"]["name"]) == ("fence_exit", "high", "home")
    assert a["fence"]["fence_id"] == fence_id and a["location"]["source"] == "fix"
    stack.send(stack.fix(2, *HOME))
    (a,) = stack.alerts()
    assert (a["status"], a["auto_resolved"]) == ("resolved", True)
    actions = [r[0] for r in stack.conn.execute("SELECT action FROM alert_log ORDER BY log_id")]
    assert actions == ["opened", "auto_resolved"]


def test_entering_a_nogo_fence_alerts(stack: Stack) -> None:
    _save_home_fence(stack.conn, FenceKind.NOGO)
    stack.send(stack.fix(0, HOME[0] + 0.01, HOME[1]))
    stack.send(stack.fix(1, *HOME))
    (a,) = stack.alerts()
    assert (a["kind"], a["severity"]) == ("fence_enter", "high")


def test_a_critical_alert_never_resolves_itself(stack: Stack) -> None:
    stack.send(stack.alarm(1))
    with stack.conn.transaction():
        from services.alerts.model import AlertKind, Clear
        from services.alerts.store import AlertWrites

        writes = AlertWrites(stack.conn, datetime.now(UTC))
        assert writes.clear(Clear(DEVICE, AlertKind.SOS_AUDIBLE)) == []
        writes.finish()
    assert stack.alerts()[0]["status"] == "open"


def test_feed_rows_follow_commit_order(stack: Stack) -> None:
    stack.send(stack.alarm(1))
    stack.send(stack.status(2, 4))
    stack.send(stack.status(3, 90))
    rows = stack.conn.execute("SELECT feed_id, type FROM alert_feed ORDER BY feed_id").fetchall()
    assert [t for _, t in rows] == ["alert.opened", "alert.opened", "alert.resolved"]
    assert [i for i, _ in rows] == sorted(i for i, _ in rows)


def test_a_watch_taken_off_alerts_and_putting_it_back_on_resolves_it(stack: Stack) -> None:
    stack.send(stack.status(0, 80, worn=True))  # worn, nothing open: nothing happens
    stack.send(stack.alarm(1, type_="removed"), stack.status(1, 80, worn=False))
    (a,) = stack.alerts()
    assert (a["kind"], a["severity"], a["status"]) == ("removed", "high", "open")
    stack.send(stack.status(5, 80, worn=True))
    (a,) = stack.alerts()
    assert (a["status"], a["auto_resolved"]) == ("resolved", True)
