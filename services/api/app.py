"""The family API: FastAPI app factory. Routers live in routes/, one per resource."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

from services.api.feed_hub import FeedHub
from services.api.routes import (
    alerts,
    commands,
    contacts,
    devices,
    escalation,
    feed,
    fences,
    health,
    wearers,
)
from services.notifier.vapid import public_key
from services.settings import Settings


def create_app(settings: Settings) -> FastAPI:
    if not settings.database_url:
        raise ValueError("the API needs ANXIN_DATABASE_URL")
    if settings.api_token is None or not settings.api_token.get_secret_value():
        raise ValueError("the API needs ANXIN_API_TOKEN: it refuses to serve locations openly")

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        pool = AsyncConnectionPool(
            settings.database_url,
            min_size=1,
            max_size=10,
            open=False,
            kwargs={"row_factory": dict_row, "autocommit": True},
            check=AsyncConnectionPool.check_connection,
            name="api",
        )
        await pool.open(wait=False)
        app.state.pool = pool
        hub = FeedHub(settings.database_url)
        await hub.start()
        app.state.feed_hub = hub
        try:
            yield
        finally:
            await hub.stop()
            await pool.close()

    app = FastAPI(
        title="Anxin family API",
        version="1.0.0",
        description="Where a wearer is, where they have been, and how their watch is doing."
        " Every route but /healthz needs `Authorization: Bearer <ANXIN_API_TOKEN>`.",
        lifespan=lifespan,
    )
    app.state.api_token = settings.api_token.get_secret_value()
    app.state.offline_after_s = settings.offline_after_s
    vapid = settings.vapid_private_key
    app.state.vapid_public_key = public_key(vapid.get_secret_value()) if vapid else None
    app.include_router(health.router)
    app.include_router(devices.router)
    app.include_router(wearers.router)
    app.include_router(fences.router)
    app.include_router(escalation.router)
    app.include_router(alerts.router)
    app.include_router(contacts.router)
    app.include_router(feed.router)
    app.include_router(commands.router)
    return app
