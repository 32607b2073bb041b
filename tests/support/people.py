"""People for tests: users, relations and access tokens made directly in the database (the
auth routes' own tests go through the API; other tests only need someone to be)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import psycopg

from services.people.passwords import hash_password
from services.people.tokens import issue_access_token, new_refresh_token, refresh_hash

AUTH_SECRET = "test-auth-secret-not-a-real-one"
PASSWORD = "correct horse battery staple"
_HASH = hash_password(PASSWORD)  # once per run: Argon2 is slow on purpose


def make_org(db_url: str, name: str) -> int:
    with psycopg.connect(db_url) as conn:
        row = conn.execute(
            "INSERT INTO organisations (name) VALUES (%s) RETURNING org_id", (name,)
        ).fetchone()
    assert row is not None
    return int(row[0])


def make_user(
    db_url: str,
    name: str,
    role: str = "family",
    org_id: int | None = None,
    phone: str | None = None,
) -> int:
    """A user with PASSWORD, and their contact (alerts reach users as contacts)."""
    email = f"{name.lower().replace(' ', '.')}.{uuid.uuid4().hex[:6]}@example.org"
    with psycopg.connect(db_url) as conn:
        row = conn.execute(
            "INSERT INTO users (email, name, role, org_id, password_hash, phone)"
            " VALUES (%s, %s, %s, %s, %s, %s) RETURNING user_id",
            (email, name, role, org_id, _HASH, phone),
        ).fetchone()
        assert row is not None
        conn.execute(
            "INSERT INTO contacts (name, role, user_id) VALUES (%s, %s, %s)",
            (name, "family" if role == "family" else "caregiver", row[0]),
        )
    return int(row[0])


def relate(db_url: str, wearer_id: str, user_id: int, role: str = "family") -> None:
    """An active relation (guardian, or family that accepted), and the care row that lets
    alerts reach them."""
    with psycopg.connect(db_url) as conn:
        conn.execute(
            "INSERT INTO guardianships (wearer_id, user_id, role, status, accepted_at)"
            " VALUES (%s, %s, %s, 'active', now())",
            (wearer_id, user_id, role),
        )
        conn.execute(
            "INSERT INTO care (contact_id, wearer_id) SELECT contact_id, %s FROM contacts"
            " WHERE user_id = %s ON CONFLICT DO NOTHING",
            (wearer_id, user_id),
        )


def grant_care(db_url: str, wearer_id: str, org_id: int) -> None:
    with psycopg.connect(db_url) as conn:
        conn.execute("INSERT INTO care_grants (wearer_id, org_id) VALUES (%s, %s)",
                     (wearer_id, org_id))  # fmt: skip
        conn.execute(
            "INSERT INTO care (contact_id, wearer_id) SELECT c.contact_id, %s FROM contacts c"
            " JOIN users u ON u.user_id = c.user_id WHERE u.org_id = %s ON CONFLICT DO NOTHING",
            (wearer_id, org_id),
        )


def token_for(db_url: str, user_id: int, secret: str = AUTH_SECRET) -> str:
    """An access token of a fresh session of this user."""
    session_id = str(uuid.uuid4())
    now = datetime.now(UTC)
    with psycopg.connect(db_url) as conn:
        conn.execute(
            "INSERT INTO sessions (session_id, user_id, refresh_hash, expires_at)"
            " VALUES (%s, %s, %s, %s)",
            (session_id, user_id, refresh_hash(new_refresh_token()), now + timedelta(days=1)),
        )
    return issue_access_token(secret, session_id, user_id, now, 900)
