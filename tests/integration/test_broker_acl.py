"""The real Mosquitto 2.0, started with the password and ACL files that ``anxin devices
broker-files`` generates (``allow_anonymous false``), enforces device identity: a watch logs in
as its device id, publishes only under its own topics, reads only its own commands; a revoked
watch is cut off once the files are regenerated and the broker reloaded (SIGHUP).

Payloads name no device (services/protocol.py): the topic is the identity, and the broker now
guarantees that the topic's device id is the login's. Whatever still gets through (a revoked
watch before the reload) is refused by the ingestor: ``test_a_revoked_watch_that_still_gets_
through_is_dead_lettered`` here, ``test_an_unprovisioned_device_is_refused`` in
test_ingest_payloads.py and ``test_unknown_and_revoked_devices_are_refused_with_their_payload``
in tests/test_plan.py.

Mosquitto 2.0.11 as measured here: a bad login gets CONNACK 0x87 "Not authorized"; a denied
QoS 1 publish gets PUBACK 0x87 (MQTT 5) and is dropped; a subscription is granted whatever the
ACL says, and the read rule is applied to each message delivered (so a watch's ``#`` or
``$share/…`` subscription receives nothing that is not its own); a will is checked when it is
published, not at CONNECT.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import paho.mqtt.client as mqtt
import psycopg
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from services.devices.broker_files import COMMANDS, INGESTOR, OPS
from services.devices.credentials import new_password
from services.protocol import Alarm, AlarmReceipt, Fix, Topics, UplinkKind
from services.storage.provisioning import provision_device, revoke
from tests.support.broker import MosquittoProcess
from tests.support.procs import ROOT, AnxinProcess, anxin_env
from tests.support.stack import count, start_ingestor, wait_for

ACCEPTED = {0x00, 0x10}  # PUBACK "Success" / "No matching subscribers"
NOT_AUTHORIZED = 0x87
BAD_LOGIN = {0x86, 0x87}  # "Bad user name or password" / "Not authorized"
A, B = "w00001", "w00002"


class Client:
    """One MQTT 5 login, recording what the broker answers and delivers."""

    def __init__(
        self,
        port: int,
        username: str | None,
        password: str | None,
        client_id: str | None = None,
        clean_start: bool = True,
    ) -> None:
        self.c = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id or f"test-{username}-{time.monotonic_ns()}",
            protocol=mqtt.MQTTv5,
        )
        if username is not None:
            self.c.username_pw_set(username, password)
        self.connack: ReasonCode | None = None
        self.answered = threading.Event()
        self.dropped = threading.Event()
        self.messages: list[tuple[str, bytes]] = []
        self.pubacks: dict[int, ReasonCode] = {}
        self.c.on_connect = self._on_connect
        self.c.on_disconnect = lambda c, u, f, rc, p: self.dropped.set()
        self.c.on_message = lambda c, u, m: self.messages.append((m.topic, m.payload))
        self.c.on_publish = lambda c, u, mid, rc, p: self.pubacks.__setitem__(mid, rc)
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = 3600
        self.c.connect("127.0.0.1", port, clean_start=clean_start, properties=props)
        self.c.loop_start()
        assert self.answered.wait(10), "no CONNACK"
        if self.refused:
            self.c.loop_stop()  # paho would otherwise keep trying

    def _on_connect(self, c, u, flags, rc: ReasonCode, p) -> None:
        self.connack = rc
        self.answered.set()

    @property
    def refused(self) -> bool:
        return self.connack is not None and self.connack.is_failure

    def subscribe(self, *filters: str) -> None:
        done = threading.Event()
        self.c.on_subscribe = lambda c, u, mid, rcs, p: done.set()
        self.c.subscribe([(f, 1) for f in filters])
        assert done.wait(10), "no SUBACK"

    def publish(self, topic: str, payload: bytes = b"{}", retain: bool = False) -> int:
        """Publish at QoS 1; the PUBACK's reason code."""
        info = self.c.publish(topic, payload, qos=1, retain=retain)
        wait_for(lambda: info.mid in self.pubacks, 10, f"PUBACK for {topic}", every=0.01)
        return self.pubacks[info.mid].value

    def topics_received(self) -> set[str]:
        return {t for t, _ in self.messages}

    def close(self) -> None:
        self.c.disconnect()
        self.c.loop_stop()


@dataclass
class AuthedStack:
    """A Mosquitto that requires logins, its database, and every login's password."""

    broker: MosquittoProcess
    db_url: str
    prefix: str
    auth_dir: Path
    passwords: dict[str, str]
    group: str  # the ingestors' shared-subscription group: a secret (see the module doc)
    clients: list[Client] = field(default_factory=list)

    def start_ingestor(self, tmp: Path) -> AnxinProcess:
        url = self.url_for(INGESTOR)
        return start_ingestor(tmp, url, self.db_url, self.prefix, ingestor_group=self.group)

    @property
    def topics(self) -> Topics:
        return Topics(self.prefix)

    def service_env(self) -> dict[str, str]:
        return {
            "broker_ingestor_password": self.passwords[INGESTOR],
            "broker_commands_password": self.passwords[COMMANDS],
            "broker_ops_password": self.passwords[OPS],
        }

    def anxin_devices(self, *args: str) -> subprocess.CompletedProcess[str]:
        env = anxin_env(database_url=self.db_url, topic_prefix=self.prefix, **self.service_env())
        done = subprocess.run(
            [sys.executable, "-m", "services.cli", "devices", *args],
            env=env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr
        return done

    def regenerate(self) -> None:
        self.anxin_devices("broker-files", "--out", str(self.auth_dir))

    def login(self, username: str | None, password: str | None = None, **kw) -> Client:
        if username is not None and password is None:
            password = self.passwords[username]
        client = Client(self.broker.port, username, password, **kw)
        self.clients.append(client)
        return client

    def url_for(self, username: str) -> str:
        return self.broker.url_for(username, self.passwords[username])


@pytest.fixture
def stack(tmp_path: Path, db_url: str, topic_prefix: str) -> Iterator[AuthedStack]:
    passwords = {INGESTOR: new_password(), COMMANDS: new_password(), OPS: new_password()}
    with psycopg.connect(db_url) as conn:
        for device, wearer in ((A, "wearer-a"), (B, "wearer-b")):
            passwords[device] = provision_device(conn, wearer, device, wearer_name=wearer).password
    auth_dir = tmp_path / "auth"
    s = AuthedStack(
        MosquittoProcess(tmp_path / "broker", auth_dir=auth_dir),
        db_url,
        topic_prefix,
        auth_dir,
        passwords,
        group=f"ingestors-{new_password()}",
    )
    s.regenerate()
    s.broker.start()
    yield s
    for client in s.clients:
        client.close()
    s.broker.stop()


def _fix_payload(seq: int) -> bytes:
    return (
        Fix(seq=seq, t=datetime.now(UTC), lat=31.23, lon=121.47, acc=10).model_dump_json().encode()
    )


_DYING = """
import sys, threading, paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
port, user, password, client_id, will = sys.argv[1:]
c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
c.username_pw_set(user, password)
c.will_set(will, b'{"v": 1, "online": false}', qos=1)
c.on_connect = lambda *a: print("connected", flush=True)
c.connect("127.0.0.1", int(port))
c.loop_forever()
"""


def _dying_client(stack: AuthedStack, user: str, client_id: str, will: str) -> subprocess.Popen:
    """A watch process logged in as ``user`` with a will on ``will``, to be SIGKILLed once it
    says it is connected."""
    proc = subprocess.Popen(
        [sys.executable, "-c", _DYING, str(stack.broker.port), user, stack.passwords[user],
         client_id, will],
        stdout=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    assert proc.stdout is not None and proc.stdout.readline().strip() == "connected"
    return proc


# --------------------------------------------------------------------------- logging in


def test_a_bad_or_missing_login_is_refused_at_connect(stack: AuthedStack) -> None:
    p = stack.passwords
    attempts = {
        "anonymous": (None, None),
        "wrong password": (A, p[A][:-2] + "xx"),
        "unknown user": ("w09999", p[A]),
        "another watch's password": (A, p[B]),
        "a watch's password for a service": (INGESTOR, p[A]),
    }
    for what, (user, password) in attempts.items():
        client = stack.login(user, password)
        assert client.refused and client.connack.value in BAD_LOGIN, (what, client.connack)
    for user in (A, B, INGESTOR, COMMANDS, OPS):
        assert not stack.login(user).refused, user


# --------------------------------------------------------------------------- publishing


def test_a_watch_cannot_publish_under_another_watchs_topics(stack: AuthedStack) -> None:
    t = stack.topics
    ingestor = stack.login(INGESTOR)
    ingestor.subscribe(*t.shared_uplink_filters(stack.group))
    a = stack.login(A)
    for kind in UplinkKind:
        assert a.publish(t.uplink(B, kind), _fix_payload(1)) == NOT_AUTHORIZED, kind
    assert a.publish(t.uplink(B, UplinkKind.STATE), b'{"online": false}', retain=True) == (
        NOT_AUTHORIZED
    )
    assert a.publish(t.uplink(A, UplinkKind.LOC), _fix_payload(2)) in ACCEPTED
    wait_for(lambda: ingestor.messages, 10, "A's own fix at the ingestor account")
    time.sleep(0.3)
    assert ingestor.topics_received() == {t.uplink(A, UplinkKind.LOC)}
    late = stack.login(INGESTOR)  # nothing of A's was retained under B's name either
    late.subscribe(t.uplink(B, UplinkKind.STATE))
    time.sleep(0.3)
    assert late.messages == []


def test_a_watch_cannot_write_commands_not_even_its_own(stack: AuthedStack) -> None:
    """Else a watch could forge its own alarm receipts, or another watch's commands."""
    t = stack.topics
    a, b = stack.login(A), stack.login(B)
    a.subscribe(t.command(A))
    b.subscribe(t.command(B))
    assert a.publish(t.command(A), b"forged") == NOT_AUTHORIZED
    assert a.publish(t.command(B), b"forged") == NOT_AUTHORIZED
    time.sleep(0.3)
    assert a.messages == [] and b.messages == []


def test_a_will_on_another_watchs_topic_is_dropped(stack: AuthedStack) -> None:
    """The will is checked when the broker publishes it: a watch that dies cannot set another
    watch offline (or write its commands); its own offline will goes through."""
    t = stack.topics
    ingestor = stack.login(INGESTOR)
    ingestor.subscribe(*t.uplink_filters())
    b = stack.login(B)
    b.subscribe(t.command(B))
    wills = [t.uplink(B, UplinkKind.STATE), t.command(B), t.uplink(A, UplinkKind.STATE)]
    procs = [_dying_client(stack, A, f"dying-{n}", will) for n, will in enumerate(wills)]
    for p in procs:
        p.send_signal(signal.SIGKILL)
        p.wait(5)
    wait_for(lambda: ingestor.messages, 10, "A's own will")
    time.sleep(0.5)
    assert ingestor.topics_received() == {t.uplink(A, UplinkKind.STATE)}
    assert b.messages == []


# --------------------------------------------------------------------------- reading


def test_a_watch_reads_only_its_own_commands(stack: AuthedStack) -> None:
    t = stack.topics
    a, b = stack.login(A), stack.login(B)
    spy_filters = [t.command(B), t.command("+"), f"{stack.prefix}/#", "#",
                   f"$share/spy/{t.command('+')}"]  # fmt: skip
    a.subscribe(t.command(A), *spy_filters)
    b.subscribe(t.command(B))
    commands = stack.login(COMMANDS)
    assert commands.publish(t.command(B), b"for B") in ACCEPTED
    assert commands.publish(t.command(A), b"for A") in ACCEPTED
    wait_for(lambda: a.messages and b.messages, 10, "both commands")
    time.sleep(0.3)
    assert b.messages == [(t.command(B), b"for B")]
    assert a.topics_received() == {t.command(A)}


def test_a_watch_cannot_eavesdrop_on_other_watches_uplinks(stack: AuthedStack) -> None:
    """Nor take a share of them away from the ingestors by guessing their group's name."""
    t = stack.topics
    ingestor = stack.login(INGESTOR)
    ingestor.subscribe(*t.shared_uplink_filters(stack.group))
    a = stack.login(A)
    loc = t.uplink("+", UplinkKind.LOC)
    a.subscribe(loc, f"{stack.prefix}/#", "#", f"$share/spy/{loc}", f"$share/ingestors/{loc}")
    b = stack.login(B)
    for seq in range(1, 11):
        assert b.publish(t.uplink(B, UplinkKind.LOC), _fix_payload(seq)) in ACCEPTED
    wait_for(lambda: len(ingestor.messages) == 10, 10, "B's fixes at the ingestor account")
    time.sleep(0.3)
    assert a.messages == []


def test_a_watch_that_knows_the_ingestors_group_takes_a_share_of_every_uplink(
    stack: AuthedStack,
) -> None:
    """Measured limit of Mosquitto 2.0's acl_file: it grants every SUBSCRIBE (subscribe ACLs
    are not implemented) and applies the read rule only when delivering. A watch that joins the
    ingestors' shared group is dealt its turn of every uplink, which the read rule then drops:
    half the fixes of all watches are lost. Hence the group name is a secret of the ingestor
    replicas (ANXIN_INGESTOR_GROUP, required by docker-compose.yml; docs/security.md)."""
    t = stack.topics
    ingestor = stack.login(INGESTOR)
    ingestor.subscribe(*t.shared_uplink_filters(stack.group))
    a = stack.login(A)
    a.subscribe(*t.shared_uplink_filters(stack.group))
    b = stack.login(B)
    for seq in range(1, 11):
        assert b.publish(t.uplink(B, UplinkKind.LOC), _fix_payload(seq)) in ACCEPTED
    time.sleep(1.0)
    assert a.messages == []
    assert 3 <= len(ingestor.messages) <= 7, len(ingestor.messages)  # about every other one


def test_a_watch_using_another_watchs_client_id_gets_none_of_its_commands(
    stack: AuthedStack,
) -> None:
    """Mosquitto cannot bind a client id to a login, so A can take over B's session (and
    kick B off: docs/security.md); the read rule still keeps B's commands from A."""
    t = stack.topics
    b = stack.login(B, client_id=f"watch-{B}", clean_start=False)
    b.subscribe(t.command(B))
    b.close()
    commands = stack.login(COMMANDS)
    assert commands.publish(t.command(B), b"queued for B") in ACCEPTED
    thief = stack.login(A, client_id=f"watch-{B}", clean_start=False)
    assert not thief.refused
    time.sleep(1.0)
    assert thief.messages == []


def test_the_ops_account_sees_broker_health_and_no_wearer_data(stack: AuthedStack) -> None:
    t = stack.topics
    ops = stack.login(OPS)
    ops.subscribe("$SYS/broker/version", f"{stack.prefix}/#")
    a = stack.login(A)
    assert a.publish(t.uplink(A, UplinkKind.LOC), _fix_payload(1)) in ACCEPTED
    wait_for(lambda: ops.messages, 10, "$SYS/broker/version")
    time.sleep(0.3)
    assert ops.topics_received() == {"$SYS/broker/version"}
    assert ops.publish(t.command(A), b"x") == NOT_AUTHORIZED


# --------------------------------------------------------------------------- the ingestor


def test_the_ingestor_account_reads_through_its_shared_subscription_and_sends_receipts(
    tmp_path: Path, stack: AuthedStack
) -> None:
    t = stack.topics
    # Shared subscriptions are the ingestor's default: $share/ingestors/{prefix}/v1/dev/+/…
    ingestor = stack.start_ingestor(tmp_path)
    try:
        a = stack.login(A)
        a.subscribe(t.command(A))
        assert a.publish(t.uplink(A, UplinkKind.LOC), _fix_payload(10)) in ACCEPTED
        alarm = Alarm(seq=11, t=datetime.now(UTC), type="sos", mode="silent")
        assert (
            a.publish(t.uplink(A, UplinkKind.ALARM), alarm.model_dump_json().encode()) in ACCEPTED
        )
        wait_for(lambda: a.messages, 20, "the alarm receipt")
        receipt = AlarmReceipt.model_validate_json(a.messages[0][1])
        assert receipt.seqs == [11]
        assert count(stack.db_url, "SELECT count(*) FROM positions WHERE device_id = %s", (A,)) == 1
        assert count(stack.db_url, "SELECT count(*) FROM alarms WHERE device_id = %s", (A,)) == 1
    finally:
        ingestor.stop()
    assert "refused" not in ingestor.log()


def test_a_revoked_watch_that_still_gets_through_is_dead_lettered(
    tmp_path: Path, stack: AuthedStack
) -> None:
    """Between the revocation and the broker's reload the old files still let the watch in:
    the ingestor is the second line and refuses it (it keeps the payload, with the reason)."""
    t = stack.topics
    with psycopg.connect(stack.db_url) as conn:
        revoke(conn, A)
    ingestor = stack.start_ingestor(tmp_path)
    try:
        a = stack.login(A)  # the broker has not been told yet
        assert not a.refused
        assert a.publish(t.uplink(A, UplinkKind.LOC), _fix_payload(1)) in ACCEPTED
        wait_for(
            lambda: count(stack.db_url, "SELECT count(*) FROM dead_letters") == 1, 20, "refusal"
        )
    finally:
        ingestor.stop()
    with psycopg.connect(stack.db_url) as conn:
        row = conn.execute("SELECT device_id, topic, reason FROM dead_letters").fetchone()
    assert row == (
        A,
        t.uplink(A, UplinkKind.LOC),
        f"device {A!r} is revoked: not provisioned to publish",
    )
    assert count(stack.db_url, "SELECT count(*) FROM positions") in ACCEPTED


# --------------------------------------------------------------------------- revocation


def test_a_revoked_watch_is_cut_off_when_the_files_are_regenerated_and_reloaded(
    stack: AuthedStack,
) -> None:
    t = stack.topics
    a, b = stack.login(A), stack.login(B)
    stack.anxin_devices("revoke", A)
    assert a.publish(t.uplink(A, UplinkKind.LOC), _fix_payload(1)) in ACCEPTED  # not reloaded yet
    stack.regenerate()
    stack.broker.reload()
    assert a.dropped.wait(10), "the connected revoked watch was not disconnected"
    again = stack.login(A)
    assert again.refused and again.connack.value in BAD_LOGIN
    assert not b.dropped.is_set()
    assert b.publish(t.uplink(B, UplinkKind.LOC), _fix_payload(1)) in ACCEPTED


def test_a_newly_provisioned_watch_can_log_in_after_the_reload(stack: AuthedStack) -> None:
    out = stack.anxin_devices("provision", "--wearer", "wearer-a", "--device", "w00003", "--json")
    password = json.loads(out.stdout)["password"]
    assert stack.login("w00003", password).refused  # the broker does not know it yet
    stack.regenerate()
    stack.broker.reload()
    wait_for(lambda: not stack.login("w00003", password).refused, 10, "the new login")


# --------------------------------------------------------------------------- end to end


def test_simulated_watches_with_their_own_credentials_reach_the_database(
    tmp_path: Path, stack: AuthedStack
) -> None:
    """Provision three watches (CLI), write the broker files, reload; the ingestor logs in as
    its service account, each simulated watch as its own device id; every fix is stored."""
    creds = {}
    for n in (1, 2, 3):
        device = f"e{n:05d}"
        out = stack.anxin_devices(
            "provision", "--wearer", f"wearer-e{n}", "--name", f"E{n}", "--device", device, "--json"
        )
        creds[device] = json.loads(out.stdout)["password"]
    creds_file = tmp_path / "watches.json"
    creds_file.write_text(json.dumps(creds))
    stack.regenerate()
    stack.broker.reload()
    ingestor = stack.start_ingestor(tmp_path)
    try:
        sim = AnxinProcess(
            ["sim", "--devices", "3", "--device-prefix", "e", "--rate", "5", "--fixes", "10",
             "--press", "2:sos:silent@1", "--seed", "7", "--credentials", str(creds_file)],
            anxin_env(mqtt_url=stack.broker.url, topic_prefix=stack.prefix),
            tmp_path / "sim.log",
        ).start()  # fmt: skip
        assert sim.wait(90) == 0, sim.log()[-3000:]
        wait_for(
            lambda: count(stack.db_url, "SELECT count(*) FROM positions") == 30, 20, "30 fixes"
        )
    finally:
        ingestor.stop()
    by_device = count(stack.db_url, "SELECT count(DISTINCT device_id) FROM positions")
    assert by_device == 3
    assert count(stack.db_url, "SELECT count(*) FROM alarms WHERE device_id = 'e00002'") == 1
    assert count(stack.db_url, "SELECT count(*) FROM dead_letters") in ACCEPTED
    assert "cannot connect" not in sim.log()
