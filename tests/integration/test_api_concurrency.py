"""Many families at once against the real ``anxin api`` process: more requests in flight than
the API has database connections (10), and live feeds that stay open. A logged-in caller's
session is checked on the request's own connection; a request that took a second one while
holding the first could wait forever for its peers (found by bench.api_latency at 90 % load:
every request of a family user hung for the pool's 5 s and got a 503)."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import httpx
import psycopg
import pytest

from services.storage.provisioning import seed_demo
from tests.support.people import AUTH_SECRET, make_user, relate, token_for
from tests.support.procs import AnxinProcess, anxin_env, free_port
from tests.support.stack import api_up, wait_for

POOL_SIZE = 10  # services/api/app.py
T = TypeVar("T")


def run_in_thread(coro: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run`` in a thread of its own: in a process whose Playwright session is open
    (tests/browser, when pytest-xdist gives this worker both) the main thread's loop runs."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result()


@dataclass
class FamilyApi:
    url: str
    token: str
    contact_id: int

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


@pytest.fixture
def family_api(tmp_path: Path, db_url: str) -> Iterator[FamilyApi]:
    with psycopg.connect(db_url) as conn:
        seed_demo(conn, 3)
    user = make_user(db_url, "Daughter")
    relate(db_url, "wearer-w00001", user, "guardian")
    with psycopg.connect(db_url) as conn:
        row = conn.execute("SELECT contact_id FROM contacts WHERE user_id = %s", (user,)).fetchone()
    assert row is not None
    port = free_port()
    env = anxin_env(database_url=db_url, auth_secret=AUTH_SECRET, api_port=port)
    proc = AnxinProcess(["api"], env, tmp_path / "api.log").start()
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: api_up(url), 20, "the API")
        yield FamilyApi(url, token_for(db_url, user), row[0])
    finally:
        proc.stop()


def _client(api: FamilyApi, connections: int) -> httpx.AsyncClient:
    limits = httpx.Limits(max_connections=connections)
    return httpx.AsyncClient(base_url=api.url, headers=api.headers, timeout=20, limits=limits)


async def _many_reads(api: FamilyApi, n: int) -> list[int]:
    async with _client(api, n) as client:
        replies = await asyncio.gather(
            *(client.get("/v1/wearers/wearer-w00001/location") for _ in range(n))
        )
    return [r.status_code for r in replies]


@pytest.mark.timeout(60)
def test_more_family_reads_at_once_than_database_connections_all_succeed(
    family_api: FamilyApi,
) -> None:
    statuses = run_in_thread(_many_reads(family_api, 4 * POOL_SIZE))
    assert statuses == [200] * (4 * POOL_SIZE)


async def _reads_while_feeds_are_open(api: FamilyApi, feeds: int) -> tuple[list[int], int]:
    """``feeds`` live feeds opened at once (their first bytes received), then a location
    read."""
    async with _client(api, feeds + 5) as client:
        streams = [
            client.stream("GET", f"/v1/contacts/{api.contact_id}/feed") for _ in range(feeds)
        ]
        opened = await asyncio.gather(*(s.__aenter__() for s in streams))
        try:
            for r in opened:
                await anext(r.aiter_bytes())  # the stream is live: its "retry:" line came
            read = await client.get("/v1/wearers/wearer-w00001/location")
        finally:
            for s in streams:
                await s.__aexit__(None, None, None)
    return [r.status_code for r in opened], read.status_code


@pytest.mark.timeout(60)
def test_open_live_feeds_hold_no_database_connection(family_api: FamilyApi) -> None:
    opened, read = run_in_thread(_reads_while_feeds_are_open(family_api, POOL_SIZE + 2))
    assert opened == [200] * (POOL_SIZE + 2)
    assert read == 200
