"""Wearers and their devices. This is how a device becomes known: the ingestor refuses uplinks
from any device not provisioned here, and the broker refuses a watch whose credentials were not
issued here (``provision_device``, ``rotate_credentials``; docs/security.md)."""

from __future__ import annotations

import random
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import psycopg

from services.devices.credentials import (
    mosquitto_hash,
    new_device_id,
    new_password,
    storage_hash,
    verify_password,
)
from services.protocol import DEVICE_ID_RE

DEMO_NAMES = [
    "王秀英", "李桂英", "张淑珍", "刘玉兰", "陈建国", "杨国华", "赵秀兰", "黄德明",
    "周桂芳", "吴志强", "徐美华", "孙宝山", "胡玉珍", "朱振华", "高秀珍", "林福生",
]  # fmt: skip


def demo_device_id(index: int, prefix: str = "w") -> str:
    """The simulator numbers its watches the same way: w00001, w00002, …"""
    return f"{prefix}{index:05d}"


def provision(conn: psycopg.Connection, wearer_id: str, name: str, device_id: str) -> None:
    with conn.transaction():
        conn.execute(
            "INSERT INTO wearers (wearer_id, name) VALUES (%s, %s) ON CONFLICT DO NOTHING",
            (wearer_id, name),
        )
        conn.execute(
            "INSERT INTO devices (device_id, wearer_id) VALUES (%s, %s) ON CONFLICT DO NOTHING",
            (device_id, wearer_id),
        )


def seed_demo(conn: psycopg.Connection, devices: int, prefix: str = "w", first: int = 1) -> int:
    """Idempotently create one wearer per simulated watch; returns how many devices exist."""
    rng = random.Random(7)
    rows = []
    for i in range(first, first + devices):
        device_id = demo_device_id(i, prefix)
        rows.append((f"wearer-{device_id}", f"{rng.choice(DEMO_NAMES)} ({device_id})", device_id))
    with conn.transaction(), conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO wearers (wearer_id, name) VALUES (%s, %s) ON CONFLICT DO NOTHING",
            [(w, n) for w, n, _ in rows],
        )
        cur.executemany(
            "INSERT INTO devices (device_id, wearer_id) VALUES (%s, %s) ON CONFLICT DO NOTHING",
            [(d, w) for w, _, d in rows],
        )
    return len(rows)


def revoke(conn: psycopg.Connection, device_id: str) -> bool:
    """Revoke a device for good and delete its credentials; False if it was not active. The
    ingestor refuses it at once (within its cache time); the broker once its files are
    regenerated and reloaded."""
    with conn.transaction():
        cur = conn.execute(
            "UPDATE devices SET revoked_at = now() WHERE device_id = %s AND revoked_at IS NULL",
            (device_id,),
        )
        conn.execute("DELETE FROM device_credentials WHERE device_id = %s", (device_id,))
    return cur.rowcount == 1


# --- credentials ----------------------------------------------------------------------------


class ProvisioningError(ValueError):
    """A refusal, worded for the operator."""


@dataclass(frozen=True)
class IssuedCredentials:
    """What the watch needs to log in: username = device id, and the password, which exists
    nowhere else (the database keeps only hashes)."""

    device_id: str
    wearer_id: str
    password: str = field(repr=False)


_STORE_CREDENTIALS = """
INSERT INTO device_credentials (device_id, password_hash, broker_hash) VALUES (%s, %s, %s)
ON CONFLICT (device_id) DO UPDATE
SET password_hash = EXCLUDED.password_hash, broker_hash = EXCLUDED.broker_hash, issued_at = now()
"""


def _credential_row(device_id: str, password: str) -> tuple[str, str, str]:
    return device_id, storage_hash(password), mosquitto_hash(password)


def provision_device(
    conn: psycopg.Connection,
    wearer_id: str,
    device_id: str | None = None,
    wearer_name: str | None = None,
) -> IssuedCredentials:
    """A new device on ``wearer_id``'s wrist, with fresh credentials. The wearer must exist,
    unless ``wearer_name`` is given to create it. An existing device id is refused: a lost
    password is replaced with ``rotate_credentials``, and a revoked id stays revoked."""
    device_id = device_id or new_device_id()
    if not DEVICE_ID_RE.match(device_id):
        raise ProvisioningError(
            f"device id {device_id!r} is not allowed: 1-64 letters, digits, '-' or '_',"
            " starting with a letter or digit"
        )
    password = new_password()
    row = _credential_row(device_id, password)  # scrypt is slow: outside the transaction
    with conn.transaction():
        wearer = conn.execute("SELECT 1 FROM wearers WHERE wearer_id = %s", (wearer_id,))
        if wearer.fetchone() is None:
            if wearer_name is None:
                raise ProvisioningError(f"no wearer {wearer_id!r} (give a name to create one)")
            conn.execute(
                "INSERT INTO wearers (wearer_id, name) VALUES (%s, %s)", (wearer_id, wearer_name)
            )
        added = conn.execute(
            "INSERT INTO devices (device_id, wearer_id) VALUES (%s, %s) ON CONFLICT DO NOTHING",
            (device_id, wearer_id),
        )
        if added.rowcount != 1:
            revoked = conn.execute(
                "SELECT revoked_at IS NOT NULL FROM devices WHERE device_id = %s", (device_id,)
            ).fetchone()
            state = "revoked (revoked ids are never reused)" if revoked and revoked[0] else "active"
            raise ProvisioningError(f"device {device_id!r} already exists and is {state}")
        conn.execute(_STORE_CREDENTIALS, row)
    return IssuedCredentials(device_id, wearer_id, password)


def rotate_credentials(conn: psycopg.Connection, device_id: str) -> IssuedCredentials:
    """New credentials for an active device; the old password stops working once the broker
    files are regenerated and reloaded."""
    password = new_password()
    row = _credential_row(device_id, password)
    with conn.transaction():
        found = conn.execute(
            "SELECT wearer_id, revoked_at IS NOT NULL FROM devices WHERE device_id = %s FOR UPDATE",
            (device_id,),
        ).fetchone()
        if found is None:
            raise ProvisioningError(f"no device {device_id!r}")
        if found[1]:
            raise ProvisioningError(f"device {device_id!r} is revoked; provision a new one")
        conn.execute(_STORE_CREDENTIALS, row)
    return IssuedCredentials(device_id, found[0], password)


def check_device_password(conn: psycopg.Connection, device_id: str, password: str) -> bool:
    """Whether ``password`` is the current one of an active device."""
    row = conn.execute(
        "SELECT c.password_hash FROM device_credentials c JOIN devices d USING (device_id)"
        " WHERE c.device_id = %s AND d.revoked_at IS NULL",
        (device_id,),
    ).fetchone()
    return row is not None and verify_password(password, row[0])


def broker_logins(conn: psycopg.Connection) -> list[tuple[str, str]]:
    """(device id, Mosquitto hash) of every active device that has credentials, by id."""
    rows = conn.execute(
        "SELECT c.device_id, c.broker_hash FROM device_credentials c"
        " JOIN devices d USING (device_id) WHERE d.revoked_at IS NULL ORDER BY c.device_id"
    ).fetchall()
    return [(r[0], r[1]) for r in rows]


def count_devices_without_credentials(conn: psycopg.Connection) -> int:
    row = conn.execute(
        "SELECT count(*) FROM devices d WHERE d.revoked_at IS NULL"
        " AND NOT EXISTS (SELECT 1 FROM device_credentials c WHERE c.device_id = d.device_id)"
    ).fetchone()
    return int(row[0]) if row else 0


def issue_demo_credentials(
    conn: psycopg.Connection, device_ids: Iterable[str], known: Mapping[str, str]
) -> dict[str, str]:
    """Passwords for existing, active (e.g. seeded demo) devices, for the simulator's
    ``--credentials`` file. A password in ``known`` that is still the device's current one is
    kept, so running this again changes nothing; the others are issued afresh."""
    device_ids = list(device_ids)
    rows = conn.execute(
        "SELECT d.device_id, c.password_hash FROM devices d"
        " LEFT JOIN device_credentials c USING (device_id)"
        " WHERE d.device_id = ANY(%s) AND d.revoked_at IS NULL",
        (device_ids,),
    ).fetchall()
    current = {r[0]: r[1] for r in rows}
    missing = [d for d in device_ids if d not in current]
    if missing:
        more = f" and {len(missing) - 1} more" if len(missing) > 1 else ""
        raise ProvisioningError(
            f"device {missing[0]!r}{more} not provisioned or revoked (seed or provision first)"
        )
    out: dict[str, str] = {}
    fresh = []
    for d in device_ids:
        pw, stored = known.get(d), current[d]
        if pw is not None and stored is not None and verify_password(pw, stored):
            out[d] = pw
        else:
            out[d] = new_password()
            fresh.append(_credential_row(d, out[d]))
    if fresh:
        with conn.transaction(), conn.cursor() as cur:
            cur.executemany(_STORE_CREDENTIALS, fresh)
    return out
