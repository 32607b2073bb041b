"""The family API: FastAPI app factory. Routers live in routes/, one per resource."""

from __future__ import annotations

import gc
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import psycopg
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from services.api.feed_hub import FeedHub
from services.api.routes import (
    alerts,
    auth,
    commands,
    contacts,
    devices,
    escalation,
    feed,
    fences,
    health,
    people,
    privacy,
    wearers,
)
from services.api.schemas import UNAVAILABLE
from services.notifier.vapid import public_key
from services.settings import Settings
from services.web.routes import router as web_router

log = logging.getLogger("anxin.api")
POOL_WAIT_S = 5.0  # a request waits this long for a connection before it gets a 503


def create_app(settings: Settings) -> FastAPI:
    if not settings.database_url:
        raise ValueError("the API needs ANXIN_DATABASE_URL")
    auth_secret = settings.auth_secret.get_secret_value() if settings.auth_secret else None
    operator = settings.api_token.get_secret_value() if settings.api_token else None
    if not auth_secret and not operator:
        raise ValueError(
            "the API needs ANXIN_AUTH_SECRET (for people's logins) and/or ANXIN_API_TOKEN"
            " (the operator's token): it refuses to serve locations openly"
        )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        pool = AsyncConnectionPool(
            settings.database_url,
            min_size=1,
            max_size=10,
            open=False,
            kwargs={"row_factory": dict_row, "autocommit": True},
            # No check on every checkout (a round trip on every request): a connection that
            # died with a database restart fails its request with a 503 and is discarded.
            timeout=POOL_WAIT_S,
            name="api",
        )
        await pool.open(wait=False)
        app.state.pool = pool
        hub = FeedHub(settings.database_url)
        await hub.start()
        app.state.feed_hub = hub
        # Everything loaded so far (FastAPI, pydantic, the routes) lives as long as the
        # process: keep it out of the collector's full passes, which otherwise walk it all
        # and pause every request in flight.
        gc.freeze()
        try:
            yield
        finally:
            await hub.stop()
            await pool.close()

    app = FastAPI(
        title="Anxin family API",
        version="1.0.0",
        description="Where a wearer is, where they have been, and how their watch is doing."
        " Every route but /healthz, registration and login needs `Authorization: Bearer"
        " <access token>` (POST /v1/auth/login) — or the operator's ANXIN_API_TOKEN. What each"
        " person may see and do with a wearer: docs/permissions.md.",
        responses=UNAVAILABLE,
        lifespan=lifespan,
    )
    app.state.api_token = operator
    app.state.auth_secret = auth_secret
    app.state.settings = settings
    app.state.offline_after_s = settings.offline_after_s
    vapid = settings.vapid_private_key
    app.state.vapid_public_key = public_key(vapid.get_secret_value()) if vapid else None

    @app.exception_handler(UnicodeEncodeError)
    @app.exception_handler(psycopg.DataError)
    async def _unstorable_value(request: Request, exc: Exception) -> JSONResponse:
        """Defence in depth behind the request models (services/api/text.py, bounded ids): a
        value PostgreSQL cannot hold (SQLSTATE class 22: NUL in text, invalid Unicode, a
        number out of range) is the caller's mistake (422), not the server's (500)."""
        log.info("unstorable value in %s %s: %s", request.method, request.url.path,
                 getattr(exc, "sqlstate", None) or type(exc).__name__)  # fmt: skip
        return JSONResponse(
            status_code=422,
            content={"detail": "a value cannot be stored: text with NUL characters or invalid"
                     " Unicode, or a number out of range"},
        )  # fmt: skip

    @app.exception_handler(psycopg.OperationalError)
    @app.exception_handler(PoolTimeout)
    async def _database_unavailable(request: Request, exc: Exception) -> JSONResponse:
        """The database is down or restarting: say so, and when to try again, instead of a
        500. The pool has already dropped the connection that failed."""
        log.warning("database unavailable: %s", type(exc).__name__)
        return JSONResponse(
            status_code=503,
            content={"detail": "the database is unavailable: try again in a moment"},
            headers={"Retry-After": "1"},
        )

    app.include_router(health.router)
    app.include_router(auth.router)
    app.include_router(people.router)
    app.include_router(privacy.router)
    app.include_router(devices.router)
    app.include_router(wearers.router)
    app.include_router(fences.router)
    app.include_router(escalation.router)
    app.include_router(alerts.router)
    app.include_router(contacts.router)
    app.include_router(feed.router)
    app.include_router(commands.router)
    app.include_router(web_router)
    return app
