"""Fixtures the integration tests share (the servers themselves are in tests/conftest.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from services.storage.provisioning import seed_demo
from tests.support.broker import MosquittoProcess
from tests.support.procs import AnxinProcess
from tests.support.stack import start_ingestor


@pytest.fixture
def stack(
    tmp_path: Path, broker: MosquittoProcess, db_url: str, topic_prefix: str
) -> Iterator[tuple[AnxinProcess, str]]:
    """A running ingestor over a database with the demo devices w00001 … w00003."""
    with psycopg.connect(db_url) as conn:
        seed_demo(conn, 3)
    ingestor = start_ingestor(tmp_path, broker.url, db_url, topic_prefix)
    yield ingestor, db_url
    ingestor.stop()
