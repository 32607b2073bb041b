"""The demo's people: a family (guardian of the first demo wearer) and a community care centre
whose caregiver was granted every demo wearer, with the family first and the caregiver second
in the first wearer's escalation. Passwords are new on every start and printed by the demo.

Idempotent: the accounts are found again by e-mail (their passwords reset).
"""

from __future__ import annotations

from dataclasses import dataclass

import psycopg

from services.people.passwords import hash_password

FAMILY_EMAIL = "family@demo.anxin"
CARER_EMAIL = "carer@demo.anxin"
ORG_NAME = "静安社区照护中心 (demo)"


@dataclass(frozen=True)
class DemoPeople:
    family_email: str
    family_password: str
    family_contact: int
    carer_email: str
    carer_password: str
    carer_contact: int


def _user(
    conn: psycopg.Connection, email: str, name: str, role: str, org_id: int | None, password: str
) -> tuple[int, int]:
    row = conn.execute(
        "INSERT INTO users (email, name, role, org_id, password_hash) VALUES (%s, %s, %s, %s, %s)"
        " ON CONFLICT (lower(email)) DO UPDATE SET password_hash = excluded.password_hash,"
        " failed_logins = 0, locked_until = NULL RETURNING user_id",
        (email, name, role, org_id, hash_password(password)),
    ).fetchone()
    assert row is not None
    contact = conn.execute(
        "SELECT contact_id FROM contacts WHERE user_id = %s", (row[0],)
    ).fetchone()
    if contact is None:
        contact = conn.execute(
            "INSERT INTO contacts (name, role, user_id) VALUES (%s, %s, %s) RETURNING contact_id",
            (name, "family" if role == "family" else "caregiver", row[0]),
        ).fetchone()
    assert contact is not None
    return int(row[0]), int(contact[0])


def seed_demo_people(
    conn: psycopg.Connection, wearer_ids: list[str], family_password: str, carer_password: str
) -> DemoPeople:
    with conn.transaction():
        org = conn.execute(
            "INSERT INTO organisations (name) VALUES (%s) ON CONFLICT (name)"
            " DO UPDATE SET name = excluded.name RETURNING org_id",
            (ORG_NAME,),
        ).fetchone()
        assert org is not None
        family, family_contact = _user(
            conn, FAMILY_EMAIL, "王小明 (demo family)", "family", None, family_password
        )
        _, carer_contact = _user(
            conn, CARER_EMAIL, "李护士 (demo caregiver)", "caregiver", org[0], carer_password
        )
        first = wearer_ids[:1]
        conn.execute(
            "INSERT INTO guardianships (wearer_id, user_id, role, status, accepted_at)"
            " SELECT w, %s, 'guardian', 'active', now() FROM unnest(%s::text[]) w"
            " ON CONFLICT DO NOTHING",
            (family, first),
        )
        conn.execute(
            "INSERT INTO care_grants (wearer_id, org_id) SELECT w, %s FROM unnest(%s::text[]) w"
            " ON CONFLICT DO NOTHING",
            (org[0], wearer_ids),
        )
        conn.execute(
            "INSERT INTO care (contact_id, wearer_id) SELECT %s, w FROM unnest(%s::text[]) w"
            " UNION ALL SELECT %s, w FROM unnest(%s::text[]) w ON CONFLICT DO NOTHING",
            (family_contact, first, carer_contact, wearer_ids),
        )
        conn.execute(
            "INSERT INTO escalation_tiers (wearer_id, tier, contact_ids) SELECT w, t, c"
            " FROM unnest(%s::text[]) w, (VALUES (1, %s::bigint[]), (2, %s::bigint[])) v(t, c)"
            " ON CONFLICT DO NOTHING",
            (first, [family_contact], [carer_contact]),
        )
    return DemoPeople(
        FAMILY_EMAIL, family_password, family_contact, CARER_EMAIL, carer_password, carer_contact
    )
