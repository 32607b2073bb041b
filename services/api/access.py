"""The caller's relation to a wearer, looked up once per request, and the 404/403 answers.

Every route that names a wearer (or something of a wearer's: an alert, a fence) calls
``require_wearer`` before touching data; the route-walking test (tests/integration/
test_authorization.py) fails for any route that forgets.
"""

from __future__ import annotations

from fastapi import HTTPException
from psycopg import AsyncConnection
from psycopg.rows import DictRow

from services.api.deps import Principal
from services.people.access import Action, Level, may

# The caller's relation to the wearer, as columns any query about a wearer can carry along
# (services/api/privacy.py adds what a location read needs, to ask it all in one look).
RELATION_COLUMNS = """
EXISTS (SELECT 1 FROM wearers WHERE wearer_id = %(w)s) AS exists,
(SELECT role FROM guardianships
 WHERE wearer_id = %(w)s AND user_id = %(u)s AND status = 'active') AS family_role,
EXISTS (SELECT 1 FROM care_grants WHERE wearer_id = %(w)s AND org_id = %(o)s) AS cares
"""


def relation_params(p: Principal, wearer_id: str) -> dict[str, object]:
    return {"w": wearer_id, "u": p.user_id, "o": p.org_id}


def level_of(row: DictRow | None, p: Principal) -> Level:
    """The level a row of ``RELATION_COLUMNS`` gives the caller."""
    if row is None or not row["exists"]:
        return Level.NONE
    if p.operator:
        return Level.OPERATOR
    if row["family_role"] == "guardian":
        return Level.GUARDIAN
    if row["family_role"] == "family":
        return Level.FAMILY
    if row["cares"] and p.role in ("caregiver", "org_admin"):
        return Level.CAREGIVER
    return Level.NONE


def check_allowed(level: Level, wearer_id: str, action: Action) -> Level:
    """404 when the caller has no relation to the wearer (or there is no such wearer: the two
    look the same to a stranger), 403 when the relation does not allow ``action``."""
    if level is Level.NONE:
        raise HTTPException(status_code=404, detail=f"no wearer {wearer_id!r}")
    if not may(level, action):
        raise HTTPException(
            status_code=403,
            detail=f"your relation to this wearer ({level.name.lower()}) does not allow"
            f" {action.value.replace('_', ' ')}",
        )
    return level


async def wearer_level(conn: AsyncConnection[DictRow], p: Principal, wearer_id: str) -> Level:
    cur = await conn.execute(f"SELECT {RELATION_COLUMNS}", relation_params(p, wearer_id))
    return level_of(await cur.fetchone(), p)


async def require_wearer(
    conn: AsyncConnection[DictRow], p: Principal, wearer_id: str, action: Action
) -> Level:
    """The caller's level with the wearer, if it allows ``action`` (else 404/403)."""
    return check_allowed(await wearer_level(conn, p, wearer_id), wearer_id, action)


VISIBLE_WEARERS = """
SELECT wearer_id FROM guardianships WHERE user_id = %(u)s AND status = 'active'
UNION SELECT wearer_id FROM care_grants WHERE org_id = %(o)s AND %(caregiver)s
"""


async def visible_wearers(conn: AsyncConnection[DictRow], p: Principal) -> list[str] | None:
    """The wearers the caller may see at all; None for the operator (all of them)."""
    if p.operator:
        return None
    cur = await conn.execute(
        VISIBLE_WEARERS,
        {"u": p.user_id, "o": p.org_id, "caregiver": p.role in ("caregiver", "org_admin")},
    )
    return [r["wearer_id"] for r in await cur.fetchall()]


async def alert_wearer(conn: AsyncConnection[DictRow], alert_id: int) -> str:
    cur = await conn.execute("SELECT wearer_id FROM alerts WHERE alert_id = %s", (alert_id,))
    row = await cur.fetchone()
    if row is None:
        raise HTTPException(status_code=404, detail=f"no alert {alert_id}")
    return row["wearer_id"]
