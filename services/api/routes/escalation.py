"""A wearer's escalation tiers: who is told first, who next, and how long each has to
acknowledge (services/alerts/escalation.py has the rule)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Path

from services.api.access import require_wearer
from services.api.alert_schemas import Escalation, TierIn
from services.api.deps import Caller, ConnDep
from services.api.schemas import COMMON
from services.people.access import Action

router = APIRouter(prefix="/v1/wearers", tags=["escalation"], responses=COMMON)

WearerId = Annotated[str, Path(max_length=80)]
_NOT_FOUND = {404: {"description": "No such wearer (or contact)"}}


async def _tiers(conn: ConnDep, wearer_id: str) -> Escalation:
    cur = await conn.execute("SELECT 1 FROM wearers WHERE wearer_id = %s", (wearer_id,))
    if await cur.fetchone() is None:
        raise HTTPException(status_code=404, detail=f"no wearer {wearer_id!r}")
    cur = await conn.execute(
        "SELECT contact_ids, ack_critical_s, ack_high_s FROM escalation_tiers"
        " WHERE wearer_id = %s ORDER BY tier",
        (wearer_id,),
    )
    return Escalation(tiers=[TierIn(**r) for r in await cur.fetchall()])


@router.get("/{wearer_id}/escalation", response_model=Escalation, responses=_NOT_FOUND)
async def get_escalation(conn: ConnDep, caller: Caller, wearer_id: WearerId) -> Escalation:
    """Empty tiers mean: everyone caring for the wearer is told at once, no escalation."""
    await require_wearer(conn, caller, wearer_id, Action.VIEW_ALERTS)
    return await _tiers(conn, wearer_id)


@router.put("/{wearer_id}/escalation", response_model=Escalation, responses=_NOT_FOUND)
async def set_escalation(
    conn: ConnDep, caller: Caller, wearer_id: WearerId, body: Escalation
) -> Escalation:
    """Replace the tiers (tier 1 first). Alerts already open keep the tier they reached.
    Only the guardian (or the operator) sets them."""
    await require_wearer(conn, caller, wearer_id, Action.MANAGE_WEARER)
    await _tiers(conn, wearer_id)
    wanted = sorted({c for t in body.tiers for c in t.contact_ids})
    cur = await conn.execute(
        "SELECT array_agg(c) AS missing FROM unnest(%s::bigint[]) c"
        " WHERE NOT EXISTS (SELECT 1 FROM contacts WHERE contact_id = c)",
        (wanted,),
    )
    row = await cur.fetchone()
    if row is not None and row["missing"]:
        raise HTTPException(status_code=404, detail=f"no contacts {sorted(row['missing'])}")
    async with conn.transaction():
        await conn.execute("DELETE FROM escalation_tiers WHERE wearer_id = %s", (wearer_id,))
        for n, tier in enumerate(body.tiers, start=1):
            await conn.execute(
                "INSERT INTO escalation_tiers (wearer_id, tier, contact_ids, ack_critical_s,"
                " ack_high_s) VALUES (%s, %s, %s, %s, %s)",
                (wearer_id, n, tier.contact_ids, tier.ack_critical_s, tier.ack_high_s),
            )
    return await _tiers(conn, wearer_id)
