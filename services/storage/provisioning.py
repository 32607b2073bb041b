"""Wearers and their devices. Until accounts exist (people issue) this is how a device becomes
known: the ingestor refuses uplinks from any device not provisioned here."""

from __future__ import annotations

import random

import psycopg

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


def revoke(conn: psycopg.Connection, device_id: str) -> None:
    with conn.transaction():
        conn.execute(
            "UPDATE devices SET revoked_at = now() WHERE device_id = %s AND revoked_at IS NULL",
            (device_id,),
        )


def seed_demo_contacts(conn: psycopg.Connection, wearer_ids: list[str]) -> tuple[int, int]:
    """A family (caring for the first wearer) and a community caregiver (caring for every demo
    wearer), with the family first and the caregiver second in the first wearer's escalation.
    Idempotent: found again by name. Returns (family contact id, caregiver contact id)."""

    def contact(name: str, role: str) -> int:
        row = conn.execute("SELECT contact_id FROM contacts WHERE name = %s", (name,)).fetchone()
        if row is None:
            row = conn.execute(
                "INSERT INTO contacts (name, role) VALUES (%s, %s) RETURNING contact_id",
                (name, role),
            ).fetchone()
        assert row is not None
        return int(row[0])

    with conn.transaction():
        family = contact("Demo family (王家)", "family")
        carer = contact("Demo caregiver (社区照护中心)", "caregiver")
        conn.execute(
            "INSERT INTO care (contact_id, wearer_id) SELECT %s, unnest(%s::text[])"
            " ON CONFLICT DO NOTHING",
            (carer, wearer_ids),
        )
        if wearer_ids:
            first = wearer_ids[0]
            conn.execute(
                "INSERT INTO care (contact_id, wearer_id) VALUES (%s, %s) ON CONFLICT DO NOTHING",
                (family, first),
            )
            conn.execute(
                "INSERT INTO escalation_tiers (wearer_id, tier, contact_ids) VALUES"
                " (%s, 1, %s), (%s, 2, %s) ON CONFLICT DO NOTHING",
                (first, [family], first, [carer]),
            )
    return family, carer
