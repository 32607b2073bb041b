"""Which devices may publish (provisioned, not revoked) and whose wrist they are on. Cached
briefly, because every batch asks and the answer rarely changes; a revocation takes effect
within ``ttl_s``."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable

import psycopg

from services.ingestor.pipeline import Access


class DeviceAccessCache:
    """Two generations of answers, each ``ttl_s / 2`` long: an answer is used for at most
    ``ttl_s``, and the cache holds no timestamp per device. With 100,000 devices that is
    ~150 bytes a device instead of ~365 (a dict of (access, time) plus a dict of wearers);
    wearer ids are interned, so they are the very strings the fence cache keys on."""

    def __init__(self, ttl_s: float = 30.0) -> None:
        self.ttl_s = ttl_s
        self._current: dict[str, tuple[Access, str]] = {}
        self._previous: dict[str, tuple[Access, str]] = {}
        self._rotated_at = time.monotonic()  # when the current generation began
        self._previous_since = self._rotated_at  # when the previous one began

    def lookup(self, conn: psycopg.Connection, device_ids: Iterable[str]) -> dict[str, Access]:
        now = time.monotonic()
        if now - self._rotated_at >= self.ttl_s / 2:
            self._previous, self._previous_since = self._current, self._rotated_at
            self._current, self._rotated_at = {}, now
        if now - self._previous_since >= self.ttl_s:  # its oldest answer is too old now
            self._previous = {}
        out: dict[str, Access] = {}
        missing = []
        for d in device_ids:
            hit = self._current.get(d) or self._previous.get(d)
            if hit is not None:
                out[d] = hit[0]
            else:
                missing.append(d)
        if missing:
            rows = conn.execute(
                "SELECT device_id, revoked_at IS NULL, wearer_id FROM devices"
                " WHERE device_id = ANY(%s)",
                (missing,),
            ).fetchall()
            for device_id, active, wearer_id in rows:
                access = Access.ACTIVE if active else Access.REVOKED
                # Unknown ids are not cached: provisioning works at once.
                self._current[device_id] = (access, sys.intern(wearer_id))
                out[device_id] = access
            for d in missing:
                out.setdefault(d, Access.UNKNOWN)
        return out

    def wearer_of(self, device_id: str) -> str | None:
        """The wearer a device was bound to when last looked up (fences belong to wearers)."""
        hit = self._current.get(device_id) or self._previous.get(device_id)
        return hit[1] if hit is not None else None
