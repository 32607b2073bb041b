"""The live feed's one listener per API process: LISTEN anxin_feed, read new feed rows once,
hand each to the SSE clients whose wearers it concerns.

Every client does not poll the database: one connection listens, one query per wake-up reads
what is new, and the rows fan out to in-memory queues. A client too slow to keep up (its
queue full) is cut off; its browser reconnects with ``Last-Event-ID`` and catches up from the
table, so nothing is lost. Feed ids become visible in order (sql.FEED_LOCK), so "everything
after id N" is a complete answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg import AsyncConnection

from services.alerts import sql

log = logging.getLogger("anxin.api.feed")

QUEUE_SIZE = 1000
SAFETY_POLL_S = 1.0


@dataclass(frozen=True, slots=True)
class FeedRow:
    feed_id: int
    wearer_id: str
    type: str
    alert: dict[str, Any]


@dataclass(eq=False)
class Subscriber:
    wearers: frozenset[str]
    queue: asyncio.Queue[FeedRow | None] = field(default_factory=lambda: asyncio.Queue(QUEUE_SIZE))
    overflowed: bool = False


class FeedHub:
    def __init__(self, conninfo: str) -> None:
        self.conninfo = conninfo
        self.last_id = 0
        self._subscribers: set[Subscriber] = set()
        self._task: asyncio.Task[None] | None = None
        self._ready = asyncio.Event()

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="feed-hub")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def ready(self, timeout: float = 10.0) -> None:
        await asyncio.wait_for(self._ready.wait(), timeout)

    def subscribe(self, wearers: frozenset[str]) -> tuple[Subscriber, int]:
        """Register, and say up to which id the client must read from the table itself:
        every later row will arrive in its queue."""
        sub = Subscriber(wearers)
        self._subscribers.add(sub)
        return sub, self.last_id

    def unsubscribe(self, sub: Subscriber) -> None:
        self._subscribers.discard(sub)

    async def _run(self) -> None:
        delay = 0.5
        while True:
            try:
                async with await AsyncConnection.connect(self.conninfo, autocommit=True) as conn:
                    await conn.execute(f"LISTEN {sql.FEED_CHANNEL}")
                    if not self._ready.is_set():
                        cur = await conn.execute("SELECT COALESCE(max(feed_id), 0) FROM alert_feed")
                        row = await cur.fetchone()
                        self.last_id = row[0] if row else 0
                        self._ready.set()
                    delay = 0.5
                    while True:
                        await self._read_new(conn)
                        async for _ in conn.notifies(timeout=SAFETY_POLL_S, stop_after=1):
                            pass
            except asyncio.CancelledError:
                raise
            except (psycopg.Error, OSError) as err:
                log.warning("feed listener lost its connection (%s); retrying", err)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)

    async def _read_new(self, conn: AsyncConnection[Any]) -> None:
        while True:
            cur = await conn.execute(
                "SELECT feed_id, wearer_id, type, alert FROM alert_feed WHERE feed_id > %s"
                " ORDER BY feed_id LIMIT 500",
                (self.last_id,),
            )
            rows = [FeedRow(*r) for r in await cur.fetchall()]
            for row in rows:
                self._dispatch(row)
                self.last_id = row.feed_id
            if len(rows) < 500:
                return

    def _dispatch(self, row: FeedRow) -> None:
        for sub in list(self._subscribers):
            if row.wearer_id not in sub.wearers or sub.overflowed:
                continue
            try:
                sub.queue.put_nowait(row)
            except asyncio.QueueFull:
                # Drop everything queued (not just the oldest: the client must not skip a row
                # and then resume after it) and end the stream; the client resumes from the
                # table after the last id it received.
                sub.overflowed = True
                while not sub.queue.empty():
                    sub.queue.get_nowait()
                sub.queue.put_nowait(None)
