"""The fence cache and its vectorised distance test: many (fix, fence) pairs in one pass.

``FenceIndex`` keeps every fence compiled once: its local metric frame and its projected shape,
``shapely.prepare``-d, in slot-indexed numpy arrays, and its boundary segments in a flat pool
(``segments.py``). A batch of pairs becomes gathers from those arrays, one Shapely ufunc call
for membership (``contains_xy`` over the prepared polygons, aligned with the pairs) and a
blocked numpy pass for the distance to the boundary — no Python loop per pair. Aligned arrays
(rather than grouping pairs by fence) suit the ingestor's batches, where most fences see one
fix per batch; a fence seen twice simply appears twice. Large batches are split across
threads: both Shapely and numpy release the GIL in their inner loops.

The distance is numpy rather than ``shapely.distance`` on prepared boundaries because that
measured nearly three times as slow here and needs a Point object per pair (segments.py).
Circles need no Shapely at all: their signed distance is closed-form numpy (``metric.py``).

Changes are incremental: ``upsert`` compiles one fence into a free or reused slot and
``remove`` frees one; arrays grow by doubling, so nothing is ever rebuilt wholesale.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import shapely

from geofences.metric import circle_signed_distance, compile_fence, wrap_lon
from geofences.model import Fence
from geofences.segments import SegmentPool

PARALLEL_MIN_PAIRS = 20_000  # below this a thread hand-off costs more than it saves


class FenceIndex:
    """The ingestor's fence cache: compiled fences by id, by wearer, and as slot arrays."""

    def __init__(self, fences: Iterable[Fence] = (), *, threads: int | None = None) -> None:
        self.threads = max(1, threads if threads is not None else min(4, os.cpu_count() or 1))
        self._pool: ThreadPoolExecutor | None = None
        self._slot: dict[str, int] = {}
        self._fences: list[Fence | None] = []
        self._free: list[int] = []
        self._by_wearer: dict[str, dict[str, None]] = {}  # insertion-ordered set of ids
        self._wearer_slots: dict[str, tuple[int, ...]] = {}
        self._cap = 0
        self.segments = SegmentPool()
        self._grow()
        for f in fences:
            self.upsert(f)

    # -- the cache ------------------------------------------------------------------------
    def _grow(self) -> None:
        """Double the slot arrays (amortised O(1) per upsert) and free the new slots."""
        old_cap = self._cap
        self._alloc(max(64, 2 * old_cap))
        self._free.extend(range(self._cap - 1, old_cap - 1, -1))

    def _alloc(self, cap: int) -> None:
        def grow(a: np.ndarray | None, fill: object, dtype: object) -> np.ndarray:
            new = np.full(cap, fill, dtype=dtype)
            if a is not None:
                new[: self._cap] = a[: self._cap]
            return new

        old = self._cap > 0
        self.lat0 = grow(self.lat0 if old else None, np.nan, float)
        self.lon0 = grow(self.lon0 if old else None, np.nan, float)
        self.kx = grow(self.kx if old else None, np.nan, float)
        self.ky = grow(self.ky if old else None, np.nan, float)
        self.radius = grow(self.radius if old else None, np.nan, float)  # NaN: not a circle
        self.margin = grow(self.margin if old else None, np.nan, float)
        self.poly = grow(self.poly if old else None, None, object)
        self.bbox = np.vstack(
            [grow(self.bbox[i] if old else None, np.nan, float) for i in range(4)]
        )
        if cap > len(self.segments.start):
            self.segments.grow_slots(cap)
        self._fences.extend([None] * (cap - self._cap))
        self._cap = cap

    def upsert(self, fence: Fence) -> None:
        """Add or replace one fence (compiles only this fence)."""
        cf = compile_fence(fence)
        slot = self._slot.get(fence.fence_id)
        if slot is None:
            if not self._free:
                self._grow()
            slot = self._free.pop()
            self._slot[fence.fence_id] = slot
        else:
            old = self._fences[slot]
            if old is not None and old.wearer_id != fence.wearer_id:
                self._forget_wearer(old.wearer_id, fence.fence_id)
        self._fences[slot] = fence
        self.lat0[slot], self.lon0[slot] = cf.frame.lat0, cf.frame.lon0
        self.kx[slot], self.ky[slot] = cf.frame.kx, cf.frame.ky
        self.margin[slot] = fence.margin_m
        if cf.shape is None:
            self.radius[slot] = cf.radius_m
            self.poly[slot] = None
            self.bbox[:, slot] = np.nan
            self.segments.clear(slot)
        else:
            shapely.prepare(cf.shape)
            self.radius[slot] = np.nan
            self.poly[slot] = cf.shape
            self.bbox[:, slot] = cf.shape.bounds
            self.segments.set(slot, cf.shape)
        self._by_wearer.setdefault(fence.wearer_id, {})[fence.fence_id] = None
        self._refresh_wearer(fence.wearer_id)

    def remove(self, fence_id: str) -> None:
        """Forget one fence (a no-op for an unknown id)."""
        slot = self._slot.pop(fence_id, None)
        if slot is None:
            return
        fence = self._fences[slot]
        self._fences[slot] = None
        self.poly[slot] = None
        self.radius[slot] = np.nan
        self.bbox[:, slot] = np.nan
        self.segments.clear(slot)
        self._free.append(slot)
        if fence is not None:
            self._forget_wearer(fence.wearer_id, fence_id)

    def _forget_wearer(self, wearer_id: str, fence_id: str) -> None:
        ids = self._by_wearer.get(wearer_id, {})
        ids.pop(fence_id, None)
        if not ids:
            self._by_wearer.pop(wearer_id, None)
        self._refresh_wearer(wearer_id)

    def _refresh_wearer(self, wearer_id: str) -> None:
        ids = self._by_wearer.get(wearer_id)
        if ids:
            self._wearer_slots[wearer_id] = tuple(self._slot[f] for f in ids)
        else:
            self._wearer_slots.pop(wearer_id, None)

    def __len__(self) -> int:
        return len(self._slot)

    def __contains__(self, fence_id: object) -> bool:
        return fence_id in self._slot

    def get(self, fence_id: str) -> Fence | None:
        slot = self._slot.get(fence_id)
        return None if slot is None else self._fences[slot]

    def fences_of(self, wearer_id: str) -> list[Fence]:
        return [self._fences[s] for s in self._wearer_slots.get(wearer_id, ())]  # type: ignore[misc]

    def wearer_slots(self, wearer_id: str) -> tuple[int, ...]:
        """Slots of a wearer's fences (for batch pairing without id lookups per pair)."""
        return self._wearer_slots.get(wearer_id, ())

    def fence_at(self, slot: int) -> Fence:
        fence = self._fences[slot]
        if fence is None:
            raise KeyError(f"slot {slot} is free")
        return fence

    def slots(self, fence_ids: Sequence[str]) -> np.ndarray:
        """Fence ids → slots (KeyError for an unknown id)."""
        return np.fromiter(map(self._slot.__getitem__, fence_ids), np.intp, len(fence_ids))

    # -- the vectorised test ----------------------------------------------------------------
    def signed_distances(
        self, fence_ids: Sequence[str], lat: np.ndarray, lon: np.ndarray
    ) -> np.ndarray:
        """Signed distance in metres (> 0 inside, < 0 outside, holes count as outside) from
        fix ``i`` at (lat[i], lon[i]) to the boundary of fence ``fence_ids[i]``.

        The id lookups are Python work under the GIL (about a quarter of the time of a large
        batch); resolving them run by run while the pool measured earlier runs was tried
        and measured slower (the lookups and the workers then fight over the GIL)."""
        return self.signed_distances_at(self.slots(fence_ids), lat, lon)

    def signed_distances_at(
        self, slots: np.ndarray, lat: np.ndarray, lon: np.ndarray
    ) -> np.ndarray:
        """``signed_distances`` by slot (the batch engine's path): one sorted run, cut into
        one piece per thread when the batch is large."""
        slots = np.asarray(slots, dtype=np.intp)
        lat = np.asarray(lat, dtype=float)
        lon = np.asarray(lon, dtype=float)
        n = len(slots)
        if self.threads == 1 or n < PARALLEL_MIN_PAIRS:
            return self._run(slots, lat, lon)
        order = np.argsort(slots, kind="stable")
        slots, lat, lon = slots[order], lat[order], lon[order]
        cuts = np.linspace(0, n, self.threads + 1).astype(int).tolist()
        futures = [
            self._executor().submit(self._pairs, slots[a:b], lat[a:b], lon[a:b])
            for a, b in itertools.pairwise(cuts)
        ]
        out = np.empty(n)
        out[order] = np.concatenate([f.result() for f in futures])
        return out

    def _executor(self) -> ThreadPoolExecutor:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.threads, thread_name_prefix="fences")
        return self._pool

    def _run(self, slots: np.ndarray, lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
        """Pairs taken in slot order, so every pass reads the cache in memory order
        (measured 1.4x faster than a shuffled batch)."""
        order = np.argsort(slots, kind="stable")
        out = np.empty(len(slots))
        out[order] = self._pairs(slots[order], lat[order], lon[order])
        return out

    def _pairs(self, slots: np.ndarray, lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
        """One run of pairs: circles in closed form, polygons by ``_polygons``."""
        out = np.empty(len(slots))
        circle = ~np.isnan(self.radius[slots])
        if circle.any():
            ci = np.flatnonzero(circle)
            cs = slots[ci]
            out[ci] = circle_signed_distance(
                self.lat0[cs], self.lon0[cs], self.radius[cs], lat[ci], lon[ci]
            )
            pi = np.flatnonzero(~circle)
            slots, lat, lon = slots[pi], lat[pi], lon[pi]
        else:
            pi = slice(None)
        if len(slots):
            x = wrap_lon(lon - self.lon0[slots]) * self.kx[slots]
            y = (lat - self.lat0[slots]) * self.ky[slots]
            out[pi] = self._polygons(slots, x, y)
        return out

    def _polygons(self, slots: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Polygon pairs: membership by Shapely on the prepared shapes, distance by numpy.
        A point outside the fence's bounding box is outside: only the others go to
        ``contains_xy`` (the envelope test GEOS would do first, in bulk: 30 % faster here)."""
        box = self.bbox[:, slots]
        maybe = np.flatnonzero((x >= box[0]) & (y >= box[1]) & (x <= box[2]) & (y <= box[3]))
        inside = np.zeros(len(x), dtype=bool)
        inside[maybe] = shapely.contains_xy(self.poly[slots[maybe]], x[maybe], y[maybe])
        dist = self.segments.distances(slots, x, y)
        return np.where(inside, dist, -dist)
