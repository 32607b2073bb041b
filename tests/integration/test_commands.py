"""Commands to a watch end to end, all real processes: the API queues them, the notifier's
dispatcher publishes them to Mosquitto, the simulated watch carries them out and acknowledges,
the ingestor settles them. Locate, speed-dial, listen-in (consent, guardians only, audited),
a command that waits in the broker for a watch that is off, and one that expires."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from psycopg.types.json import Jsonb

from services.commands.queue import ENQUEUE, NOTIFY, new_command_id
from services.protocol import Ack, UplinkKind
from services.storage.provisioning import seed_demo
from tests.conftest import ADMIN_URL, RUN_ID
from tests.support.broker import MosquittoProcess
from tests.support.people import AUTH_SECRET, make_user, relate, token_for
from tests.support.procs import AnxinProcess, anxin_env, free_port
from tests.support.stack import Watch, api_up, start_ingestor, wait_for

WEARER, DEVICE = "wearer-w00001", "w00001"
GUARDIAN_PHONE, FAMILY_PHONE = "+8613800138000", "+8613900139000"


@dataclass
class Backend:
    """Ingestor, notifier (with the dispatcher) and API over one database, and who is who."""

    tmp: Path
    broker: MosquittoProcess
    db_url: str
    prefix: str
    api_url: str
    guardian: str  # access tokens
    family: str
    guardian_name: str
    guardian_id: int

    def call(self, token: str, method: str, path: str, **kw: Any) -> httpx.Response:
        return httpx.request(
            method, self.api_url + path, headers={"Authorization": f"Bearer {token}"},
            timeout=10, **kw,
        )  # fmt: skip

    def command(self, command_id: str, wearer_id: str = WEARER) -> dict[str, Any]:
        r = self.call(self.guardian, "GET", f"/v1/wearers/{wearer_id}/commands/{command_id}")
        assert r.status_code == 200, r.text
        return r.json()

    def wait_status(
        self, command_id: str, status: str, timeout: float = 15, wearer_id: str = WEARER
    ) -> dict[str, Any]:
        seen: dict[str, Any] = {}

        def reached() -> bool:
            seen.update(self.command(command_id, wearer_id))
            return seen["status"] == status

        wait_for(reached, timeout, f"command {command_id} to be {status} (now: {seen})", 0.2)
        return seen

    def sim(self, name: str) -> AnxinProcess:
        """One simulated watch (w00001), slow scheduled fixes, until stopped (SIGTERM)."""
        env = anxin_env(mqtt_url=self.broker.url, topic_prefix=self.prefix)
        summary = self.tmp / f"{name}.json"
        return AnxinProcess(
            ["sim", "--devices", "1", "--rate", "0.02", "--duration", "55", "--seed", "9",
             "--summary", str(summary)],
            env, self.tmp / f"{name}.log",
        ).start()  # fmt: skip

    def summary(self, name: str) -> dict[str, Any]:
        return json.loads((self.tmp / f"{name}.json").read_text())["devices"][DEVICE]

    def online(self) -> bool:
        return bool(self.one("SELECT online FROM device_state WHERE device_id = %s", DEVICE))

    def one(self, sql: str, *params: object) -> Any:
        with psycopg.connect(self.db_url) as conn:
            row = conn.execute(sql, params).fetchone()  # type: ignore[arg-type]
        return row[0] if row else None


@pytest.fixture(scope="module")
def backend(
    tmp_path_factory: pytest.TempPathFactory, broker: MosquittoProcess, template_db: str
) -> Iterator[Backend]:
    """One backend for this file's tests (their processes take most of their time); each
    test leaves the watch off, and the tests use the watches so that none sees another's
    commands: the lifecycle and the offline one w00001, the two notifiers w00002."""
    tmp_path = tmp_path_factory.mktemp("commands")
    topic_prefix = f"t{uuid.uuid4().hex[:10]}"
    name = f"anxin_t_{RUN_ID}_cmd_{uuid.uuid4().hex[:6]}"
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template_db}"')
    db_url = f"{ADMIN_URL.rsplit('/', 1)[0]}/{name}"
    with psycopg.connect(db_url) as conn:
        seed_demo(conn, 2)
        conn.execute("INSERT INTO wearers (wearer_id, name) VALUES ('wearer-nowatch', '无表')")
    guardian = make_user(db_url, "Wang Ming", phone=GUARDIAN_PHONE)
    family = make_user(db_url, "Wang Li", phone=FAMILY_PHONE)
    for wearer in (WEARER, "wearer-w00002", "wearer-nowatch"):
        relate(db_url, wearer, guardian, "guardian")
        relate(db_url, wearer, family, "family")
    # Started side by side (each takes seconds to import), stopped side by side.
    notifier = notifier_process(tmp_path / "notifier.log", db_url, broker.url, topic_prefix)
    port = free_port()
    api = AnxinProcess(
        ["api"],
        # The operator token too, while `anxin api` still asks for one.
        anxin_env(
            database_url=db_url, auth_secret=AUTH_SECRET, api_port=port, api_token="operator-x"
        ),
        tmp_path / "api.log",
    ).start()
    url = f"http://127.0.0.1:{port}"
    running = [notifier, api]

    try:
        running.append(start_ingestor(tmp_path, broker.url, db_url, topic_prefix))
        wait_for(lambda: "dispatcher connected" in notifier.log(), 20, "the command dispatcher")
        wait_for(lambda: api_up(url), 20, "the API")
        yield Backend(
            tmp_path, broker, db_url, topic_prefix, url,
            token_for(db_url, guardian), token_for(db_url, family), "Wang Ming", guardian,
        )  # fmt: skip
    finally:
        with ThreadPoolExecutor() as pool:
            list(pool.map(AnxinProcess.stop, running))
        with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def notifier_process(log: Path, db_url: str, mqtt_url: str, prefix: str) -> AnxinProcess:
    env = anxin_env(database_url=db_url, mqtt_url=mqtt_url, topic_prefix=prefix)
    return AnxinProcess(["notify"], env, log).start()


def test_each_command_completes_its_lifecycle_with_the_simulated_watch(backend: Backend) -> None:
    b = backend
    sim = b.sim("sim")
    try:
        wait_for(b.online, 20, "the simulated watch to be online")
        w = f"/v1/wearers/{WEARER}"

        # Locate now: family may ask; the watch answers with a fix taken now, then the ack.
        r = b.call(b.family, "POST", f"{w}/commands/locate")
        assert r.status_code == 202, r.text
        locate = r.json()
        assert (locate["kind"], locate["device_id"]) == ("locate", DEVICE)
        assert locate["status"] in ("pending", "sent")
        done = b.wait_status(locate["command_id"], "acknowledged")
        assert done["sent_at"] is not None and done["acked_at"] is not None
        ack_seq = b.one(
            "SELECT seq FROM command_acks WHERE device_id = %s AND cmd = %s",
            DEVICE, locate["command_id"],
        )  # fmt: skip
        fix_t = b.one(
            "SELECT t FROM positions WHERE device_id = %s AND seq = %s", DEVICE, ack_seq - 1
        )
        assert fix_t is not None, "the fresh fix sent just before the ack is stored"
        assert fix_t >= datetime.fromisoformat(locate["created_at"])

        # Speed-dial: the guardian only; every bad number named.
        numbers = [GUARDIAN_PHONE, FAMILY_PHONE]
        r = b.call(b.family, "PUT", f"{w}/speed-dial", json={"numbers": numbers})
        assert r.status_code == 403, r.text
        r = b.call(b.guardian, "PUT", f"{w}/speed-dial",
                   json={"numbers": [GUARDIAN_PHONE, "13800138000", GUARDIAN_PHONE]})  # fmt: skip
        assert r.status_code == 422, r.text
        problems = r.json()["detail"]["problems"]
        assert len(problems) == 2 and "E.164" in problems[0] and "already" in problems[1]
        too_many = [f"+86138001380{i:02d}" for i in range(6)]
        r = b.call(b.guardian, "PUT", f"{w}/speed-dial", json={"numbers": too_many})
        assert r.status_code == 422 and "1 to 5" in r.text
        r = b.call(b.guardian, "PUT", f"{w}/speed-dial", json={"numbers": numbers})
        assert r.status_code == 202, r.text
        b.wait_status(r.json()["command_id"], "acknowledged")

        # Listen-in: never for family; not without the wearer's consent; only a family phone.
        body = {"number": FAMILY_PHONE}
        r = b.call(b.family, "POST", f"{w}/commands/listen-in", json=body)
        assert r.status_code == 403, r.text
        r = b.call(b.guardian, "POST", f"{w}/commands/listen-in", json=body)
        assert r.status_code == 409 and "consent" in r.json()["detail"], r.text
        # A note PostgreSQL cannot store is a 422, not a 500 (found by schemathesis).
        r = b.call(b.guardian, "POST", f"{w}/consents/listen-in", json={"note": "ok\u0000no"})
        assert r.status_code == 422 and "NUL" in r.text, r.text
        note = {"note": "Agreed at home on 2026-11-20, her son witnessed it"}
        r = b.call(b.guardian, "POST", f"{w}/consents/listen-in", json=note)
        assert r.status_code == 201 and r.json()["active"], r.text
        r = b.call(b.guardian, "POST", f"{w}/commands/listen-in", json={"number": "+4930123456"})
        assert r.status_code == 422 and "not the phone" in r.text, r.text
        r = b.call(b.guardian, "POST", f"{w}/commands/listen-in", json=body)
        assert r.status_code == 202, r.text
        listen = b.wait_status(r.json()["command_id"], "acknowledged")
        lifetime = datetime.fromisoformat(listen["expires_at"]) - datetime.fromisoformat(
            listen["created_at"]
        )
        assert lifetime.total_seconds() == 300  # a late call-back is worse than none
        assert b.one(
            "SELECT array_agg(viewer || '/' || user_id) FROM location_audit"
            " WHERE wearer_id = %s AND action = 'listen_in'",
            WEARER,
        ) == [f"{b.guardian_name}/{b.guardian_id}"]

        # The history, newest first; a listen-in is shown only to whoever may ask for one.
        kinds = [c["kind"] for c in b.call(b.guardian, "GET", f"{w}/commands").json()["commands"]]
        assert kinds[:3] == ["listen_in", "speed_dial", "locate"]
        seen = b.call(b.family, "GET", f"{w}/commands").json()["commands"]
        assert [c["kind"] for c in seen][:2] == ["speed_dial", "locate"]
        r = b.call(b.family, "GET", f"{w}/commands/{listen['command_id']}")
        assert r.status_code == 404

        # Consent withdrawn: no more listen-in.
        assert b.call(b.guardian, "DELETE", f"{w}/consents/listen-in").status_code == 204
        assert b.call(b.guardian, "GET", f"{w}/consents/listen-in").json()["active"] is False
        r = b.call(b.guardian, "POST", f"{w}/commands/listen-in", json=body)
        assert r.status_code == 409 and "withdrawn" in r.json()["detail"], r.text

        # A wearer without a watch: nothing to send to.
        r = b.call(b.family, "POST", "/v1/wearers/wearer-nowatch/commands/locate")
        assert r.status_code == 409 and "no active watch" in r.json()["detail"], r.text
    finally:
        sim.stop()
        wait_for(lambda: not b.online(), 10, "the watch to be off")
    watch = b.summary("sim")
    assert watch["speed_dial"] == numbers
    assert [c["number"] for c in watch["listen_ins"]] == [FAMILY_PHONE]
    assert watch["ui_events"] == []  # the listen-in showed and sounded nothing
    assert [(c["type"], c["ok"]) for c in watch["commands"]] == [
        ("locate", True), ("speed_dial", True), ("listen_in", True),
    ]  # fmt: skip


def queue_notice(db_url: str, viewer: str, device_id: str = DEVICE) -> str:
    """A "viewed by" notice, queued as the API's location reads queue it."""
    command_id = new_command_id()
    with psycopg.connect(db_url) as conn:
        conn.execute(
            ENQUEUE,
            {"command_id": command_id, "device_id": device_id, "wearer_id": f"wearer-{device_id}",
             "kind": "viewed_by", "payload": Jsonb({"viewer": viewer, "at": "2026-11-25T09:00Z"}),
             "requested_by": None, "ttl_s": 3600},
        )  # fmt: skip
        conn.execute(NOTIFY, (command_id,))
    return command_id


def test_a_command_waits_in_the_broker_while_the_watch_is_off_and_a_stale_one_expires(
    backend: Backend,
) -> None:
    b = backend
    first = b.sim("first")  # the watch's persistent session exists from its first connect on
    wait_for(b.online, 20, "the simulated watch to be online")
    first.stop()
    wait_for(lambda: not b.online(), 10, "the watch to be off")

    notice = queue_notice(b.db_url, "Wang Li")
    r = b.call(b.family, "POST", f"/v1/wearers/{WEARER}/commands/locate", json={"ttl_s": 2})
    assert r.status_code == 202, r.text
    stale = r.json()["command_id"]
    # The other watch never connected: the broker has no session to keep a command in.
    r = b.call(b.family, "POST", "/v1/wearers/wearer-w00002/commands/locate", json={"ttl_s": 2})
    assert r.status_code == 202, r.text
    lost = r.json()["command_id"]
    b.wait_status(notice, "sent")  # the broker holds it for the watch
    b.wait_status(stale, "expired", timeout=10)
    gone = b.wait_status(lost, "expired", timeout=10, wearer_id="wearer-w00002")
    assert "no session" in gone["detail"]

    # Another watch cannot answer this watch's command.
    impostor = Watch(b.broker.url, b.prefix, "w00002")
    try:
        impostor.publish(UplinkKind.ACK, Ack(seq=1, t=datetime.now(UTC), cmd=notice, ok=False)
                         .model_dump_json())  # fmt: skip
        wait_for(lambda: b.one("SELECT count(*) FROM command_acks WHERE cmd = %s", notice) == 1,
                 10, "the impostor's ack to be stored")  # fmt: skip
    finally:
        impostor.close()
    assert b.command(notice)["status"] == "sent"

    second = b.sim("second")  # the watch is back: the notice reaches it, the stale locate not
    try:
        done = b.wait_status(notice, "acknowledged")
    finally:
        second.stop()
        wait_for(lambda: not b.online(), 10, "the watch to be off")
    assert done["detail"] is None
    watch = b.summary("second")
    assert watch["ui_events"] == ["notice:viewed-by"]
    assert [n["viewer"] for n in watch["notices"]] == ["Wang Li"]
    assert [c["id"] for c in watch["commands"]] == [notice]  # the broker dropped the stale one
    assert b.command(stale)["status"] == "expired"


def test_two_notifiers_send_each_command_once(backend: Backend) -> None:
    b = backend
    other = notifier_process(b.tmp / "notifier-2.log", b.db_url, b.broker.url, b.prefix)
    watch = Watch(b.broker.url, b.prefix, "w00002")  # online, sees all that is sent to it
    try:
        wait_for(lambda: "dispatcher connected" in other.log(), 20, "the second dispatcher")
        ids = [queue_notice(b.db_url, f"viewer {i}", "w00002") for i in range(30)]
        wait_for(lambda: len(watch.received) >= len(ids), 10, "the notices")
        sent = "SELECT count(*) FROM commands WHERE status = 'sent' AND command_id = ANY(%s)"
        wait_for(lambda: b.one(sent, ids) == len(ids), 10, "all to be marked sent")
    finally:
        watch.close()
        other.stop()
    got = [json.loads(p)["id"] for p in watch.received]
    assert sorted(got) == sorted(ids)  # each once
