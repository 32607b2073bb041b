"""The alerts feed of one contact (a family member or a caregiver): every unresolved alert of
the wearers in their care, as JSON, and live as Server-Sent Events.

The SSE stream is resumable: each event's ``id`` is its feed id, and a client that reconnects
with ``Last-Event-ID`` (browsers do it by themselves) first gets every change it missed.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Header, HTTPException, Path, Query, Request
from fastapi.responses import StreamingResponse
from psycopg import AsyncConnection
from psycopg.rows import DictRow

from services.api.alert_schemas import Alert, CareFeed, Counts, KindLabel
from services.api.deps import Caller, ConnDep, get_pool
from services.api.feed_hub import FeedHub, FeedRow
from services.api.privacy import location_gate, record_read
from services.api.routes.contacts import own_or_operator
from services.api.schemas import COMMON
from services.people.access import Level

router = APIRouter(prefix="/v1/contacts", tags=["feed"], responses=COMMON)

ContactId = Annotated[int, Path(ge=1, le=2**62)]
KEEPALIVE_S = 15.0


async def care_wearers(conn: AsyncConnection[DictRow], contact_id: int) -> list[str]:
    cur = await conn.execute(
        "SELECT c.contact_id, array_remove(array_agg(care.wearer_id), NULL) AS wearers"
        " FROM contacts c LEFT JOIN care USING (contact_id) WHERE c.contact_id = %s"
        " GROUP BY c.contact_id",
        (contact_id,),
    )
    row = await cur.fetchone()
    if row is None:
        raise HTTPException(status_code=404, detail=f"no contact {contact_id}")
    return list(row["wearers"])


@router.get(
    "/{contact_id}/alerts",
    response_model=CareFeed,
    responses={404: {"description": "No such contact"}},
)
async def care_feed(
    conn: ConnDep,
    caller: Caller,
    contact_id: ContactId,
    wearer_id: Annotated[str | None, Query(max_length=80)] = None,
    kind: KindLabel | None = None,
) -> CareFeed:
    """Unresolved alerts of the contact's wearers: most severe first, then oldest first. The
    counts are of the filtered list."""
    own_or_operator(caller, contact_id)
    wearers = await care_wearers(conn, contact_id)
    if wearer_id is not None:
        wearers = [w for w in wearers if w == wearer_id]
    cur = await conn.execute(
        "SELECT alert FROM alert_public WHERE wearer_id = ANY(%s) AND status <> 'resolved'"
        " AND (%s::text IS NULL OR kind = %s) ORDER BY severity DESC, opened_at, alert_id"
        " LIMIT 1000",
        (wearers, kind, kind),
    )
    alerts = [Alert.model_validate(r["alert"]) for r in await cur.fetchall()]
    by = {
        s: sum(1 for a in alerts if a.severity == s) for s in ("critical", "high", "medium", "low")
    }
    return CareFeed(counts=Counts(total=len(alerts), **by), alerts=alerts)


def sse_event(row: FeedRow) -> str:
    data = json.dumps(row.alert, separators=(",", ":"), ensure_ascii=False)
    return f"id: {row.feed_id}\nevent: {row.type}\ndata: {data}\n\n"


@router.get(
    "/{contact_id}/feed",
    response_class=StreamingResponse,
    responses={
        200: {
            "description": "text/event-stream: `alert.opened`, `alert.updated`,"
            " `alert.escalated`, `alert.acknowledged`, `alert.resolved`; data is the Alert",
            "content": {"text/event-stream": {"schema": {"type": "string"}}},
        },
        404: {"description": "No such contact"},
    },
)
async def live_feed(
    request: Request,
    conn: ConnDep,
    caller: Caller,
    contact_id: ContactId,
    last_event_id: Annotated[
        int | None,
        Header(alias="Last-Event-ID", ge=0, le=2**62, description="Resume after this id"),
    ] = None,
    after: Annotated[
        int | None,
        Query(ge=0, le=2**62, description="Same as Last-Event-ID, for clients without headers"),
    ] = None,
) -> StreamingResponse:
    """Server-Sent Events: each change of an alert of the contact's wearers as it happens.
    Alerts carry locations: opening the feed is audited for each wearer, who is told."""
    own_or_operator(caller, contact_id)
    hub: FeedHub = request.app.state.feed_hub
    # The request's one connection (the session check's too): it goes back to the pool when
    # this function returns; the stream takes one only a backlog page at a time.
    wearers = frozenset(await care_wearers(conn, contact_id))
    for wearer_id in sorted(wearers):
        gate = await location_gate(conn, caller, wearer_id)
        if gate.level is not Level.NONE:
            await record_read(conn, caller, gate, wearer_id, "live_feed")
    pool = await get_pool(request)
    await hub.ready()
    sub, mark = hub.subscribe(wearers)
    resume = last_event_id if last_event_id is not None else after

    async def stream() -> AsyncIterator[str]:
        try:
            yield "retry: 2000\n\n"
            last = mark
            if resume is not None:
                last = resume
                async for row in _backlog(pool, wearers, resume, mark):
                    yield sse_event(row)
                    last = row.feed_id
                last = max(last, mark)
            while True:
                try:
                    row = await asyncio.wait_for(sub.queue.get(), KEEPALIVE_S)
                except TimeoutError:
                    if await request.is_disconnected():
                        return
                    yield ": keepalive\n\n"
                    continue
                if row is None:
                    return  # too slow: the client resumes from the table
                if row.feed_id > last:
                    yield sse_event(row)
                    last = row.feed_id
        finally:
            hub.unsubscribe(sub)

    return StreamingResponse(
        stream(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


async def _backlog(
    pool: Any, wearers: frozenset[str], after: int, upto: int
) -> AsyncIterator[FeedRow]:
    """What the client missed, read from the table in pages (a connection is held only for
    one page at a time, never for the life of the stream)."""
    while after < upto:
        async with pool.connection() as conn:
            cur = await conn.execute(
                "SELECT feed_id, wearer_id, type, alert FROM alert_feed"
                " WHERE feed_id > %s AND feed_id <= %s AND wearer_id = ANY(%s)"
                " ORDER BY feed_id LIMIT 500",
                (after, upto, list(wearers)),
            )
            rows = await cur.fetchall()
        if not rows:
            return
        for r in rows:
            yield FeedRow(r["feed_id"], r["wearer_id"], r["type"], r["alert"])
        after = rows[-1]["feed_id"]
