"""Which devices may publish (provisioned, not revoked) and whose wrist they are on. Cached
briefly, because every batch asks and the answer rarely changes; a revocation takes effect
within ``ttl_s``."""

from __future__ import annotations

import time
from collections.abc import Iterable

import psycopg

from services.ingestor.pipeline import Access


class DeviceAccessCache:
    def __init__(self, ttl_s: float = 30.0) -> None:
        self.ttl_s = ttl_s
        self._known: dict[str, tuple[Access, float]] = {}
        self._wearers: dict[str, str] = {}

    def lookup(self, conn: psycopg.Connection, device_ids: Iterable[str]) -> dict[str, Access]:
        now = time.monotonic()
        out: dict[str, Access] = {}
        missing = []
        for d in device_ids:
            hit = self._known.get(d)
            if hit is not None and now - hit[1] < self.ttl_s:
                out[d] = hit[0]
            else:
                missing.append(d)
        if missing:
            rows = conn.execute(
                "SELECT device_id, revoked_at IS NULL, wearer_id FROM devices"
                " WHERE device_id = ANY(%s)",
                (missing,),
            ).fetchall()
            found = {r[0]: Access.ACTIVE if r[1] else Access.REVOKED for r in rows}
            self._wearers.update({r[0]: r[2] for r in rows})
            for d in missing:
                out[d] = found.get(d, Access.UNKNOWN)
                if d in found:  # unknown ids are not cached: provisioning works at once
                    self._known[d] = (out[d], now)
        return out

    def wearer_of(self, device_id: str) -> str | None:
        """The wearer a device was bound to when last looked up (fences belong to wearers)."""
        return self._wearers.get(device_id)
