"""The ingestor's device access cache: answers are reused for at most its ttl, unknown devices
are never cached, and wearer ids come back as the interned strings the fence cache uses."""

from __future__ import annotations

import sys

import pytest

from services.ingestor import access as access_module
from services.ingestor.access import DeviceAccessCache
from services.ingestor.pipeline import Access


class Devices:
    """A connection stand-in: the ``devices`` table, counting the lookups that reach it."""

    def __init__(self, rows: dict[str, tuple[bool, str]]) -> None:
        self.rows = rows
        self.asked: list[list[str]] = []

    def execute(self, query: str, params: tuple) -> Devices:
        self.asked.append(sorted(params[0]))
        self._found = [(d, *self.rows[d]) for d in params[0] if d in self.rows]
        return self

    def fetchall(self) -> list[tuple]:
        return self._found


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    now = [1000.0]
    monkeypatch.setattr(access_module.time, "monotonic", lambda: now[0])
    return now


def test_answers_are_reused_within_the_ttl_and_asked_again_after_it(clock: list[float]) -> None:
    db = Devices({"w1": (True, "wearer-" + "w1"), "w2": (False, "wearer-w2")})
    cache = DeviceAccessCache(ttl_s=30)
    got = cache.lookup(db, ["w1", "w2", "ghost"])  # type: ignore[arg-type]
    assert got == {"w1": Access.ACTIVE, "w2": Access.REVOKED, "ghost": Access.UNKNOWN}
    assert cache.wearer_of("w1") is sys.intern("wearer-w1") and cache.wearer_of("ghost") is None
    for t in (1010.0, 1020.0, 1029.0):  # within the ttl: from the cache
        clock[0] = t
        cache.lookup(db, ["w1", "w2"])  # type: ignore[arg-type]
    assert db.asked == [["ghost", "w1", "w2"]]
    clock[0] = 1031.0  # past the ttl since the first answer: asked again
    cache.lookup(db, ["w1"])  # type: ignore[arg-type]
    assert db.asked[-1] == ["w1"]


def test_an_unknown_device_is_asked_every_time_so_provisioning_works_at_once(
    clock: list[float],
) -> None:
    db = Devices({})
    cache = DeviceAccessCache(ttl_s=30)
    assert cache.lookup(db, ["new"]) == {"new": Access.UNKNOWN}  # type: ignore[arg-type]
    db.rows["new"] = (True, "wearer-new")  # provisioned meanwhile
    assert cache.lookup(db, ["new"]) == {"new": Access.ACTIVE}  # type: ignore[arg-type]
    assert len(db.asked) == 2


def test_no_answer_outlives_the_ttl_after_a_quiet_spell(clock: list[float]) -> None:
    db = Devices({"w1": (True, "wearer-w1")})
    cache = DeviceAccessCache(ttl_s=30)
    cache.lookup(db, ["w1"])  # type: ignore[arg-type]
    db.rows["w1"] = (False, "wearer-w1")  # revoked
    clock[0] += 40  # one lookup after a long quiet spell must not see the old answer
    assert cache.lookup(db, ["w1"]) == {"w1": Access.REVOKED}  # type: ignore[arg-type]
