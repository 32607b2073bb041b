"""Real servers for the tests: the machine's PostgreSQL (a fresh database per test, cloned from
one migrated template per run) and a private Mosquitto started with the project's own config
on a free port (the machine's broker runs Debian's defaults, which drop queued QoS 1 messages).
Each test also gets its own topic prefix."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from aiosmtpd.controller import Controller

from tests.support.broker import MosquittoProcess
from tests.support.far_ends import RecordingRelay
from tests.support.procs import free_port

ADMIN_URL = os.environ.get("ANXIN_TEST_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
RUN_ID = uuid.uuid4().hex[:8]


def _db_url(name: str) -> str:
    base = ADMIN_URL.rsplit("/", 1)[0]
    return f"{base}/{name}"


@pytest.fixture(scope="session")
def template_db() -> Iterator[str]:
    from services.storage.migrate import migrate

    name = f"anxin_tmpl_{RUN_ID}"
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    migrate(_db_url(name), retention_days=90, days_ahead=2)
    yield name
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def db_url(template_db: str) -> Iterator[str]:
    """A fresh, migrated database for this test alone."""
    name = f"anxin_t_{RUN_ID}_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template_db}"')
    yield _db_url(name)
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MosquittoProcess]:
    """One private Mosquitto for the run; tests that kill a broker start their own."""
    b = MosquittoProcess(tmp_path_factory.mktemp("mosquitto"))
    b.start()
    yield b
    b.stop()


@pytest.fixture
def topic_prefix() -> str:
    return f"t{uuid.uuid4().hex[:10]}"


@pytest.fixture
def tmp(tmp_path: Path) -> Path:
    return tmp_path


@pytest.fixture
def smtp_relay() -> Iterator[tuple[RecordingRelay, int]]:
    """A real SMTP relay (aiosmtpd) on a free port that keeps what it accepts."""
    handler = RecordingRelay()
    port = free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield handler, port
    finally:
        controller.stop()
