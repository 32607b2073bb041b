"""Device credentials and the generated broker files, without a broker: hashes, the ACL's
rules, provisioning in the database, the CLI and the simulator's credentials file. That the
real Mosquitto accepts these files and enforces them: tests/integration/test_broker_acl.py."""

from __future__ import annotations

import base64
import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

from services.devices.broker_files import (
    ACL_FILE,
    COMMANDS,
    INGESTOR,
    OPS,
    PASSWORD_FILE,
    parse_owner,
    render_acl,
    render_password_file,
    service_accounts,
    write_broker_files,
)
from services.devices.credentials import (
    mosquitto_hash,
    new_device_id,
    new_password,
    service_password_problem,
    storage_hash,
    verify_mosquitto_hash,
    verify_password,
)
from services.mqtt_url import parse_mqtt_url
from services.protocol import DEVICE_ID_RE, Topics, UplinkKind
from services.storage.provisioning import (
    ProvisioningError,
    broker_logins,
    check_device_password,
    count_devices_without_credentials,
    issue_demo_credentials,
    provision_device,
    revoke,
    rotate_credentials,
    seed_demo,
)
from tests.support.procs import ROOT, anxin_env
from watchsim.plan import FleetConfig, parse_credentials

# --------------------------------------------------------------------------- hashes


@pytest.mark.skipif(shutil.which("mosquitto_passwd") is None, reason="needs mosquitto_passwd")
def test_the_broker_hash_is_byte_for_byte_what_mosquitto_passwd_writes(tmp_path: Path) -> None:
    path = tmp_path / "pw"
    subprocess.run(
        ["mosquitto_passwd", "-b", "-c", str(path), "w00001", "s3cret-pw"],
        check=True,
        capture_output=True,
    )
    user, theirs = path.read_text().strip().split(":", 1)
    assert user == "w00001" and theirs.startswith("$7$101$")
    assert verify_mosquitto_hash("s3cret-pw", theirs)
    assert not verify_mosquitto_hash("s3cret-pX", theirs)
    salt = base64.b64decode(theirs.split("$")[3])
    assert mosquitto_hash("s3cret-pw", salt=salt) == theirs


def test_each_hash_has_its_own_salt_and_verifies_only_its_password() -> None:
    pw = new_password()
    a, b = mosquitto_hash(pw), mosquitto_hash(pw)
    assert a != b and verify_mosquitto_hash(pw, a) and verify_mosquitto_hash(pw, b)
    assert not verify_mosquitto_hash(pw + "x", a)
    s1, s2 = storage_hash(pw), storage_hash(pw)
    assert s1.startswith("scrypt$") and s1 != s2
    assert verify_password(pw, s1) and not verify_password(pw[:-1], s1)
    assert not verify_password(pw, a) and not verify_mosquitto_hash(pw, s1)  # kinds never mix
    assert not verify_password(pw, "garbage") and not verify_mosquitto_hash(pw, "$7$x$y$z")


def test_device_passwords_are_long_random_and_url_safe() -> None:
    passwords = {new_password() for _ in range(50)}
    assert len(passwords) == 50
    for pw in passwords:
        assert len(pw) >= 32 and all(c.isalnum() or c in "-_" for c in pw)
    assert DEVICE_ID_RE.match(new_device_id())


def test_a_weak_service_password_is_refused() -> None:
    assert service_password_problem("short") is not None
    assert service_password_problem(new_password()) is None


# --------------------------------------------------------------------------- the ACL


def _acl_rules(text: str) -> list[tuple[str | None, str, str, str]]:
    """(user or None for patterns, kind, access, topic) of every rule line."""
    rules, user = [], None
    for line in text.splitlines():
        words = line.split()
        if not words or words[0].startswith("#"):
            continue
        if words[0] == "user":
            user = words[1]
        else:
            kind, access, topic = words
            rules.append((None if kind == "pattern" else user, kind, access, topic))
    return rules


def test_a_watch_may_write_only_its_own_uplinks_and_only_read_its_own_commands() -> None:
    topics = Topics("anxin")
    patterns = {(a, t) for u, k, a, t in _acl_rules(render_acl(topics, [])) if k == "pattern"}
    assert patterns == {("write", f"anxin/v1/dev/%u/{kind.value}") for kind in UplinkKind} | {
        ("read", "anxin/v1/dev/%u/cmd")
    }
    # Not writing its own cmd topic: a watch could forge its own alarm receipts.
    assert ("write", "anxin/v1/dev/%u/cmd") not in patterns
    assert not any("+" in t or "#" in t for _, t in patterns)


def test_the_acl_follows_the_configured_topic_prefix() -> None:
    topics = Topics("t0a1b2")
    text = render_acl(topics, service_accounts(topics))
    for _, _, _, topic in _acl_rules(text):
        assert topic.startswith("t0a1b2/v1/dev/") or topic == "$SYS/#", topic
    assert "anxin/" not in text


def test_service_accounts_get_what_their_service_does_and_nothing_else() -> None:
    topics = Topics("anxin")
    rules = _acl_rules(render_acl(topics, service_accounts(topics)))
    granted: dict[str, set[tuple[str, str]]] = {}
    for user, kind, access, topic in rules:
        if kind == "topic":
            granted.setdefault(user or "", set()).add((access, topic))
    assert granted[INGESTOR] == {
        ("read", f"anxin/v1/dev/+/{kind.value}") for kind in UplinkKind
    } | {("write", "anxin/v1/dev/+/cmd")}
    assert granted[COMMANDS] == {("write", "anxin/v1/dev/+/cmd")}
    assert granted[OPS] == {("read", "$SYS/#")}
    for name in granted:  # a device can never be provisioned under a service's name
        assert not DEVICE_ID_RE.match(name)


def test_the_password_file_refuses_what_mosquitto_would_misread() -> None:
    good = mosquitto_hash("x" * 32)
    assert render_password_file([("w00001", good)]) == f"w00001:{good}\n"
    for bad in [("a:b", good), ("a\nb", good), ("", good), ("w1", "plain")]:
        with pytest.raises(ValueError):
            render_password_file([bad])


def test_broker_files_hold_the_devices_and_only_the_configured_accounts(tmp_path: Path) -> None:
    topics = Topics("anxin")
    pw_path, acl_path = write_broker_files(
        tmp_path / "auth",
        topics,
        [("w00001", mosquitto_hash("a" * 32))],
        {INGESTOR: mosquitto_hash("b" * 32)},
    )
    assert [p.name for p in (pw_path, acl_path)] == [PASSWORD_FILE, ACL_FILE]
    users = [line.split(":")[0] for line in pw_path.read_text().splitlines()]
    assert users == ["w00001", INGESTOR]
    acl = acl_path.read_text()
    assert f"user {INGESTOR}" in acl and COMMANDS not in acl and OPS not in acl
    assert stat.S_IMODE(pw_path.stat().st_mode) == 0o640
    assert stat.S_IMODE(acl_path.stat().st_mode) == 0o644
    assert sorted(p.name for p in pw_path.parent.iterdir()) == [ACL_FILE, PASSWORD_FILE]


def test_owner_takes_names_or_numbers() -> None:
    assert parse_owner("1883:1884") == (1883, 1884)
    assert parse_owner("0") == (0, 0)
    assert parse_owner("root") == (0, 0)
    with pytest.raises(ValueError):
        parse_owner("no-such-user-anxin")


# --------------------------------------------------------------------------- the simulator


def test_each_simulated_watch_logs_in_as_its_own_device_id(tmp_path: Path) -> None:
    path = tmp_path / "creds.json"
    path.write_text(json.dumps({"w00001": "p1", "w00002": "p2"}))
    cfg = FleetConfig(
        broker=parse_mqtt_url("mqtt://shared:pw@broker:1884"),
        devices=2,
        credentials=parse_credentials(path),
    )
    cfg.validate()
    first, second = cfg.broker_for("w00001"), cfg.broker_for("w00002")
    assert (first.username, first.password, first.host, first.port) == (
        "w00001",
        "p1",
        "broker",
        1884,
    )
    assert (second.username, second.password) == ("w00002", "p2")
    assert "p1" not in repr(cfg)
    plain = FleetConfig(broker=parse_mqtt_url("mqtt://shared:pw@broker:1884"))
    assert plain.broker_for("w00001").username == "shared"


def test_the_simulator_refuses_a_credentials_file_that_misses_a_watch(tmp_path: Path) -> None:
    cfg = FleetConfig(broker=parse_mqtt_url("mqtt://h:1"), devices=3, credentials={"w00001": "x"})
    with pytest.raises(ValueError, match="no password for w00002 and 1 more"):
        cfg.validate()
    bad = tmp_path / "bad.json"
    bad.write_text('["w00001"]')
    with pytest.raises(ValueError, match="JSON object"):
        parse_credentials(bad)


# --------------------------------------------------------------------------- the database


def _all_text(db_url: str, device_id: str) -> str:
    with psycopg.connect(db_url) as conn:
        rows = conn.execute(
            "SELECT d::text, c::text FROM devices d LEFT JOIN device_credentials c"
            " USING (device_id) WHERE device_id = %s",
            (device_id,),
        ).fetchall()
    return repr(rows)


def test_provisioning_shows_the_password_once_and_keeps_only_hashes(db_url: str) -> None:
    with psycopg.connect(db_url) as conn:
        issued = provision_device(conn, "wearer-1", "w00042", wearer_name="王秀英")
        assert issued.device_id == "w00042" and issued.wearer_id == "wearer-1"
        assert issued.password not in repr(issued)
        assert check_device_password(conn, "w00042", issued.password)
        assert not check_device_password(conn, "w00042", issued.password[:-1] + "x")
        [(device, hashed)] = broker_logins(conn)
        assert device == "w00042" and verify_mosquitto_hash(issued.password, hashed)
        wearer = conn.execute("SELECT wearer_id FROM devices WHERE device_id = 'w00042'")
        assert wearer.fetchone() == ("wearer-1",)
        random_id = provision_device(conn, "wearer-1")
        assert DEVICE_ID_RE.match(random_id.device_id) and random_id.password != issued.password
    assert issued.password not in _all_text(db_url, "w00042")


def test_provisioning_refuses_bad_ids_unknown_wearers_and_existing_devices(db_url: str) -> None:
    with psycopg.connect(db_url) as conn:
        with pytest.raises(ProvisioningError, match="no wearer"):
            provision_device(conn, "nobody", "w00001")
        provision_device(conn, "wearer-1", "w00001", wearer_name="A")
        for bad in ["-x", "a/b", "a+", "x" * 65, "anxin.ingestor"]:
            with pytest.raises(ProvisioningError, match="not allowed"):
                provision_device(conn, "wearer-1", bad)
        with pytest.raises(ProvisioningError, match="already exists and is active"):
            provision_device(conn, "wearer-1", "w00001")
        assert conn.execute("SELECT count(*) FROM devices").fetchone() == (1,)


def test_revoking_deletes_the_credentials_for_good(db_url: str) -> None:
    with psycopg.connect(db_url) as conn:
        a = provision_device(conn, "wearer-1", "w00001", wearer_name="A")
        provision_device(conn, "wearer-1", "w00002")
        assert revoke(conn, "w00001") is True
        assert revoke(conn, "w00001") is False
        assert [d for d, _ in broker_logins(conn)] == ["w00002"]
        assert not check_device_password(conn, "w00001", a.password)
        assert conn.execute(
            "SELECT count(*) FROM device_credentials WHERE device_id = 'w00001'"
        ).fetchone() == (0,)
        with pytest.raises(ProvisioningError, match="revoked"):
            rotate_credentials(conn, "w00001")
        with pytest.raises(ProvisioningError, match="revoked"):
            provision_device(conn, "wearer-1", "w00001")


def test_rotating_replaces_the_password(db_url: str) -> None:
    with psycopg.connect(db_url) as conn:
        old = provision_device(conn, "wearer-1", "w00001", wearer_name="A")
        new = rotate_credentials(conn, "w00001")
        assert new.password != old.password and new.wearer_id == "wearer-1"
        assert check_device_password(conn, "w00001", new.password)
        assert not check_device_password(conn, "w00001", old.password)
        with pytest.raises(ProvisioningError, match="no device"):
            rotate_credentials(conn, "w09999")


def test_demo_credentials_are_kept_while_valid_and_reissued_otherwise(db_url: str) -> None:
    with psycopg.connect(db_url) as conn:
        seed_demo(conn, 3)
        assert count_devices_without_credentials(conn) == 3
        ids = ["w00001", "w00002", "w00003"]
        first = issue_demo_credentials(conn, ids, {})
        assert count_devices_without_credentials(conn) == 0
        again = issue_demo_credentials(conn, ids, {**first, "w00002": "wrong"})
        assert again["w00001"] == first["w00001"] and again["w00003"] == first["w00003"]
        assert again["w00002"] != first["w00002"]
        assert all(check_device_password(conn, d, again[d]) for d in ids)
        with pytest.raises(ProvisioningError, match="'w00004' not provisioned"):
            issue_demo_credentials(conn, ["w00004"], {})


# --------------------------------------------------------------------------- the CLI


def _anxin(*args: str, **settings: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "services.cli", "devices", *args],
        env=anxin_env(**settings),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_the_cli_provisions_revokes_and_writes_the_broker_files(
    db_url: str, tmp_path: Path
) -> None:
    out = _anxin("provision", "--wearer", "wearer-9", "--name", "李桂英", database_url=db_url)
    assert out.returncode == 0, out.stderr
    fields = dict(line.split(None, 1) for line in out.stdout.splitlines() if line.strip())
    device, password = fields["username"], fields["password"]
    assert "Shown once" in out.stderr
    provisioned = _anxin(
        "provision", "--wearer", "wearer-9", "--device", "w00007", "--json", database_url=db_url
    )
    creds = json.loads(provisioned.stdout)
    assert creds["username"] == creds["device_id"] == "w00007"

    services = {"broker_ingestor_password": "i" * 24, "broker_ops_password": "o" * 24}
    auth = tmp_path / "auth"
    done = _anxin(
        "broker-files", "--out", str(auth), database_url=db_url, topic_prefix="tq", **services
    )
    assert done.returncode == 0, done.stderr
    lines = dict(line.split(":", 1) for line in (auth / PASSWORD_FILE).read_text().splitlines())
    assert set(lines) == {device, "w00007", INGESTOR, OPS}
    assert verify_mosquitto_hash(password, lines[device])
    assert verify_mosquitto_hash(creds["password"], lines["w00007"])
    assert verify_mosquitto_hash("i" * 24, lines[INGESTOR])
    assert "pattern read tq/v1/dev/%u/cmd" in (auth / ACL_FILE).read_text()

    assert _anxin("revoke", "w00007", database_url=db_url).returncode == 0
    assert _anxin("revoke", "w00007", database_url=db_url).returncode == 1
    _anxin("broker-files", "--out", str(auth), database_url=db_url, **services)
    assert "w00007:" not in (auth / PASSWORD_FILE).read_text()

    weak = _anxin("broker-files", "--out", str(tmp_path / "x"), database_url=db_url,
                  broker_ingestor_password="short")  # fmt: skip
    assert weak.returncode != 0 and "ANXIN_BROKER_INGESTOR_PASSWORD" in weak.stderr
    assert not (tmp_path / "x").exists()


def test_issue_demo_writes_a_private_file_for_the_simulator(db_url: str, tmp_path: Path) -> None:
    with psycopg.connect(db_url) as conn:
        seed_demo(conn, 2)
    path = tmp_path / "sim" / "devices.json"
    assert (
        _anxin("issue-demo", "--devices", "2", "--out", str(path), database_url=db_url).returncode
        == 0
    )
    first = json.loads(path.read_text())
    assert sorted(first) == ["w00001", "w00002"]
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    again = _anxin("issue-demo", "--devices", "2", "--out", str(path), database_url=db_url)
    assert "2 kept, 0 new" in again.stdout and json.loads(path.read_text()) == first
    missing = _anxin("issue-demo", "--devices", "3", "--out", str(path), database_url=db_url)
    assert missing.returncode == 1 and "w00003" in missing.stderr
    assert os.path.getsize(path) > 0
