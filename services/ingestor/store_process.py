"""The batch store (batch_store.py) in a child process of the ingestor, behind a pipe.

Why a process: paho's network thread and the batch loop of one Python process share one GIL,
and profiles showed each slowing the other (docs/performance.md): one process stored about
half of what the broker could deliver. With the store in a child, the parent only reads MQTT,
batches, acknowledges and sends receipts, and the child decodes, decides fences and writes;
they run on two cores. The protocol: the parent sends a batch's received messages, the child
answers, in order, with what to confirm (``Stored``), or None when it gave up because the
ingestor is stopping; the parent sends the next batch before the answer comes (at most
``WINDOW`` unanswered). Nothing is acknowledged that the child did not commit.

The child is forked while the ingestor still has a single thread (``start``), so it shares
the parent's imported modules instead of importing them again; it ignores SIGINT and SIGTERM
and stops when the parent says so (``close``) or goes away (its pipe ends).
"""

from __future__ import annotations

import contextlib
import gc
import logging
import multiprocessing as mp
import os
import signal
import threading
from multiprocessing.connection import Connection
from typing import Any

from services.ingestor.batch_store import BatchStore, Stored
from services.ingestor.pipeline import Received
from services.settings import Settings

log = logging.getLogger("anxin.ingestor")
POLL_S = 0.2  # how often a waiting parent looks at its stop event and at the child
CLOSE_WAIT_S = 30.0


class StoreProcessDied(RuntimeError):
    """The child ended without answering: the ingestor stops (unacknowledged messages are
    redelivered to its session when it is restarted)."""


class StoreProcess:
    """A ``BatchStore`` in a child process: ``open`` and ``close`` as it, and ``store`` split
    in two, ``send`` and ``receive``, so that the next batch is in the pipe while the child
    stores this one and the child never waits for the parent."""

    WINDOW = 2  # batches handed over and not yet answered, at most

    def __init__(self, settings: Settings, takes_fixes: bool) -> None:
        self.settings = settings
        self.takes_fixes = takes_fixes
        self._proc: Any = None
        self._pipe: Connection | None = None
        self._stop: Any = None

    def start(self) -> None:
        """Start the child (once). Forked if this process has one thread (a fork copies only
        the calling thread, so a lock another thread held would stay held in the child);
        spawned otherwise."""
        if self._proc is not None:
            return
        fork = threading.active_count() == 1
        ctx = mp.get_context("fork" if fork else "spawn")
        if fork:
            # What exists now (the imported modules, mostly) leaves the garbage collector's
            # reach, so neither process's collections write to those pages and they stay
            # shared after the fork (the ``gc.freeze`` documentation's advice for forking).
            gc.freeze()
        self._pipe, child_end = ctx.Pipe()
        self._stop = ctx.Event()
        self._proc = ctx.Process(
            target=_serve,
            args=(
                child_end,
                self._pipe,
                self.settings,
                self.takes_fixes,
                self._stop,
                log.getEffectiveLevel(),
            ),
            name="anxin-ingest-store",
            daemon=True,  # never outlives the ingestor
        )
        self._proc.start()
        child_end.close()
        log.info("store process %d started", self._proc.pid)

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def open(self, stop: threading.Event) -> bool:
        self.start()
        return self._answer(stop) == "ready"

    def send(self, received: list[Received]) -> None:
        """Hand a batch over; its answer comes from ``receive``, answers in sending order.
        The caller keeps at most ``WINDOW`` batches unanswered."""
        assert self._pipe is not None, "open() first"
        try:
            self._pipe.send([tuple(r) for r in received])  # plain tuples: the cheapest to pickle
        except OSError as err:  # the child is gone and its end of the pipe with it
            raise self._died() from err

    def receive(self, stop: threading.Event) -> Stored | None:
        """The answer for the oldest batch sent and not yet answered."""
        answer = self._answer(stop)
        assert answer is None or isinstance(answer, Stored), answer
        return answer

    def housekeeping(self) -> None:
        """The child does its own, between batches."""

    def close(self) -> None:
        if self._proc is None or self._pipe is None:
            return
        with contextlib.suppress(OSError):  # already gone
            self._pipe.send(None)
        self._proc.join(CLOSE_WAIT_S)
        if self._proc.is_alive():
            log.error("store process did not stop in %.0f s; terminating it", CLOSE_WAIT_S)
            self._proc.terminate()
            self._proc.join(5)
        self._pipe.close()

    def _answer(self, stop: threading.Event) -> Any:
        """The child's next answer. While waiting, pass a stop on (the child then gives up
        retrying a batch during a database outage) and notice the child's death."""
        assert self._pipe is not None
        while not self._pipe.poll(POLL_S):
            if stop.is_set():
                self._stop.set()
            if not self._proc.is_alive():
                break
        try:
            return self._pipe.recv()
        except (EOFError, OSError) as err:
            raise self._died() from err

    def _died(self) -> StoreProcessDied:
        """What a send or a receive raises once the child is gone (its exit code: None while
        it is not reaped yet)."""
        code = self._proc.exitcode if self._proc is not None else None
        return StoreProcessDied(f"the store process ended (exit code {code})")


def _serve(
    pipe: Connection,
    parent_end: Connection,
    settings: Settings,
    takes_fixes: bool,
    stop: Any,
    level: int,
) -> None:
    """The child: open the store, then answer each batch until told to close, or until the
    parent is gone (killed: its end of the pipe closes, and this process is re-parented)."""
    parent_end.close()  # a fork copies it: held here, our end would never see the parent go
    parent = os.getppid()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when to stop
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    if not logging.getLogger().handlers:  # spawned: forked children keep the parent's
        logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    store = BatchStore(settings, takes_fixes)
    try:
        pipe.send("ready" if store.open(stop) else "stopped")
        while os.getppid() == parent:
            store.housekeeping()
            if not pipe.poll(1.0):
                continue
            batch = pipe.recv()
            if batch is None:
                return  # told to close
            pipe.send(store.store([Received._make(m) for m in batch], stop))
    except (EOFError, BrokenPipeError):
        pass  # the parent's end of the pipe closed: it went away, as below
    except Exception:
        log.exception("store process failed")
        raise
    finally:
        store.close()
    log.warning("store process: the ingestor went away; stopping")
