"""The wearer's privacy, in the guardian's hands: who looked (the audit), everything stored
about the wearer (export), and deleting the wearer with all of it.

Export and delete find the wearer's rows by schema, not by a hand-kept list: every table with a
``wearer_id`` or ``device_id`` column (positions and dead letters have no foreign key, for
speed), so a table added later cannot be forgotten. A test checks that nothing is left.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Response
from psycopg import AsyncConnection, sql
from psycopg.rows import DictRow
from pydantic import BaseModel

from services.api.access import require_wearer
from services.api.deps import Caller, ConnDep
from services.api.privacy import viewer_name
from services.api.schemas import COMMON
from services.people.access import Action

router = APIRouter(prefix="/v1/wearers", tags=["privacy"], responses=COMMON)

WearerId = Annotated[str, Path(max_length=80)]
_NOT_FOUND = {
    404: {"description": "No such wearer (for you)"},
    403: {"description": "Guardian only"},
}


class AuditEntry(BaseModel):
    audit_id: int
    at: datetime
    viewer: str
    user_id: int | None
    action: str
    precision: str
    notified: bool


@router.get("/{wearer_id}/audit", response_model=list[AuditEntry], responses=_NOT_FOUND)
async def audit(
    conn: ConnDep,
    caller: Caller,
    wearer_id: WearerId,
    before: Annotated[int | None, Query(ge=1, le=2**62)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[AuditEntry]:
    """Who looked at the wearer's location (latest, history, live feed) or listened in, and
    whether the watch was told; newest first. The guardian's to read."""
    await require_wearer(conn, caller, wearer_id, Action.READ_AUDIT)
    cur = await conn.execute(
        "SELECT audit_id, at, viewer, user_id, action, precision, notified FROM location_audit"
        " WHERE wearer_id = %s AND (%s::bigint IS NULL OR audit_id < %s)"
        " ORDER BY audit_id DESC LIMIT %s",
        (wearer_id, before, before, limit),
    )
    return [AuditEntry(**r) for r in await cur.fetchall()]


async def wearer_tables(conn: AsyncConnection[DictRow]) -> list[tuple[str, str]]:
    """(table, key column) for every base table holding a wearer's or a device's rows."""
    cur = await conn.execute(
        "SELECT c.table_name, c.column_name FROM information_schema.columns c"
        " JOIN information_schema.tables t USING (table_schema, table_name)"
        " WHERE c.table_schema = current_schema() AND t.table_type = 'BASE TABLE'"
        " AND c.column_name IN ('wearer_id', 'device_id')"
        " AND NOT EXISTS (SELECT 1 FROM pg_inherits i JOIN pg_class k ON k.oid = i.inhrelid"
        "                 WHERE k.relname = c.table_name)"  # partitions: read via the parent
        " ORDER BY c.table_name, c.column_name DESC",
    )
    out: dict[str, str] = {}
    for r in await cur.fetchall():
        out.setdefault(r["table_name"], r["column_name"])  # wearer_id wins over device_id
    return sorted(out.items())


async def _devices(conn: AsyncConnection[DictRow], wearer_id: str) -> list[str]:
    cur = await conn.execute("SELECT device_id FROM devices WHERE wearer_id = %s", (wearer_id,))
    return [r["device_id"] for r in await cur.fetchall()]


@router.get("/{wearer_id}/export", responses=_NOT_FOUND)
async def export(conn: ConnDep, caller: Caller, wearer_id: WearerId) -> dict[str, Any]:
    """Everything stored about the wearer, table by table, as JSON (the guardian's right to a
    copy). Audited."""
    await require_wearer(conn, caller, wearer_id, Action.EXPORT_DELETE)
    await conn.execute(
        "INSERT INTO location_audit (wearer_id, user_id, viewer, action) VALUES (%s, %s, %s,"
        " 'export')",
        (wearer_id, caller.user_id, viewer_name(caller)),
    )
    devices = await _devices(conn, wearer_id)
    tables: dict[str, list[dict[str, Any]]] = {}
    for table, column in await wearer_tables(conn):
        key: Any = wearer_id if column == "wearer_id" else devices
        op = "=" if column == "wearer_id" else "= ANY"
        query = sql.SQL("SELECT to_jsonb(x) AS row FROM {} x WHERE {} " + op + " (%s)").format(
            sql.Identifier(table), sql.Identifier(column)
        )
        cur = await conn.execute(query, (key,))
        rows = [r["row"] for r in await cur.fetchall()]
        if rows:
            tables[table] = rows
    return {"wearer_id": wearer_id, "exported_at": datetime.now(UTC).isoformat(), "tables": tables}


@router.delete("/{wearer_id}", status_code=204, responses=_NOT_FOUND)
async def delete_wearer(conn: ConnDep, caller: Caller, wearer_id: WearerId) -> Response:
    """The wearer and everything about them: positions, alarms, alerts, fences, audit, the
    devices (their credentials stop working). Cannot be undone."""
    await require_wearer(conn, caller, wearer_id, Action.EXPORT_DELETE)
    devices = await _devices(conn, wearer_id)
    async with conn.transaction():
        for table, column in await wearer_tables(conn):
            if column == "device_id":
                await conn.execute(
                    sql.SQL("DELETE FROM {} WHERE device_id = ANY(%s)").format(
                        sql.Identifier(table)
                    ),
                    (devices,),
                )
        await conn.execute("DELETE FROM wearers WHERE wearer_id = %s", (wearer_id,))
    return Response(status_code=204)
