"""Distance to a fence's boundary in numpy, exact, over every cached fence's boundary segments.

Why not ``shapely.distance``: measured on this machine (300k pairs, fences of 20–60
vertices), GEOS's point-to-boundary distance cost about 1.3 µs a pair and needs a Point
object per pair; this costs about a third of that (0.47 µs) and allocates nothing per pair.
Membership stays a Shapely call (``contains_xy`` on the prepared polygon); only the *distance*
is done here, tested against ``Point.within`` / ``boundary.distance``
(tests/test_geofence_engine.py).

Layout: each ring's segments are cut into chunks of ``CHUNK`` consecutive segments (the last
one padded with zero-length segments at the ring's closing vertex, which is on the boundary,
so padding never changes a minimum), each with its bounding box. For each (point, fence) pair:
the distance to a chunk's box is a lower bound for its segments; the chunk with the lowest
bound is measured segment by segment first, then only the chunks whose box is nearer than
that result (0.3 per pair on the benchmark's fences, out of about 7). Everything runs in
blocks of pairs so the temporaries stay in cache.

The pool is slot-keyed like ``FenceIndex``: replacing a fence appends its chunks and leaves
the old range as garbage; when garbage outgrows the live chunks the pool compacts itself
(amortised O(1) per change, never a rebuild per change).
"""

from __future__ import annotations

import numpy as np
import shapely

CHUNK = 8  # segments per chunk (a power of two): 4–8 measured best; 16 culls too coarsely
BLOCK_PAIRS = 8192  # pairs per numpy block: 2048 is 3 % faster alone, 8192 scales on 2 threads
MINX, MINY, MAXX, MAXY = range(4)
AX, AY, DX, DY, INV = range(5)


def fence_chunks(shape: shapely.Geometry) -> tuple[np.ndarray, np.ndarray]:
    """(box (4, m), seg (5, m, CHUNK)) for every ring of every part of ``shape``."""
    rings = shapely.get_rings(shapely.get_parts(shape))
    coords = shapely.get_coordinates(rings)
    n_coords = shapely.get_num_coordinates(rings)
    n_segs = n_coords - 1
    padded = -(-n_segs // CHUNK) * CHUNK
    ring_start = np.cumsum(n_coords) - n_coords
    # Segment j of ring r runs from vertex min(j, n) to min(j + 1, n): past the end, the
    # padding collapses onto the closing vertex.
    j = np.arange(int(padded.sum())) - np.repeat(np.cumsum(padded) - padded, padded)
    last = np.repeat(n_segs, padded)
    base = np.repeat(ring_start, padded)
    a = coords[base + np.minimum(j, last)]
    b = coords[base + np.minimum(j + 1, last)]
    d = b - a
    len2 = d[:, 0] ** 2 + d[:, 1] ** 2
    inv = np.divide(1.0, len2, out=np.zeros_like(len2), where=len2 > 0)
    seg = np.stack((a[:, 0], a[:, 1], d[:, 0], d[:, 1], inv)).reshape(5, -1, CHUNK)
    lo = np.minimum(a, b).reshape(-1, CHUNK, 2).min(axis=1)
    hi = np.maximum(a, b).reshape(-1, CHUNK, 2).max(axis=1)
    box = np.vstack((lo.T, hi.T))
    return box, seg


class SegmentPool:
    """Boundary chunks per slot, contiguous per slot, in two flat arrays."""

    def __init__(self, slots: int = 64) -> None:
        self.box = np.zeros((4, 256))
        self.seg = np.zeros((5, 256, CHUNK))
        self.used = 0
        self.live = 0
        self.start = np.zeros(slots, dtype=np.intp)
        self.count = np.zeros(slots, dtype=np.intp)

    def grow_slots(self, slots: int) -> None:
        self.start = np.concatenate((self.start, np.zeros(slots - len(self.start), np.intp)))
        self.count = np.concatenate((self.count, np.zeros(slots - len(self.count), np.intp)))

    def set(self, slot: int, shape: shapely.Geometry) -> None:
        """Give ``slot`` the boundary of ``shape`` (replacing what it had)."""
        self.clear(slot)
        box, seg = fence_chunks(shape)
        m = box.shape[1]
        if self.used + m > self.box.shape[1]:
            self._move(slice(0, self.used), max(2 * self.box.shape[1], self.used + m))
        self.box[:, self.used : self.used + m] = box
        self.seg[:, self.used : self.used + m] = seg
        self.start[slot], self.count[slot] = self.used, m
        self.used += m
        self.live += m

    def clear(self, slot: int) -> None:
        self.live -= int(self.count[slot])
        self.count[slot] = 0
        if self.used > 4096 and self.used - self.live > self.live:
            self._compact()

    def _move(self, keep: np.ndarray | slice, cap: int) -> None:
        """Copy chunks ``keep`` (in order) to the front of fresh arrays of ``cap`` chunks."""
        box, seg = np.zeros((4, cap)), np.zeros((5, cap, CHUNK))
        kept = self.box[:, keep]
        box[:, : kept.shape[1]] = kept
        seg[:, : kept.shape[1]] = self.seg[:, keep]
        self.box, self.seg, self.used = box, seg, kept.shape[1]

    def _compact(self) -> None:
        slots = np.flatnonzero(self.count)
        k = self.count[slots]
        new_start = np.cumsum(k) - k
        keep = np.repeat(self.start[slots] - new_start, k) + np.arange(int(k.sum()))
        self._move(keep, max(256, 2 * len(keep)))
        self.live = len(keep)
        self.start[slots] = new_start

    def distances(self, slots: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Unsigned distance from (x[i], y[i]) to the boundary of the fence in ``slots[i]``
        (every slot must hold a boundary). Pairs sorted by slot read the pool in order."""
        finite = np.isfinite(x) & np.isfinite(y)
        if not finite.all():  # a NaN fix has no distance (and would upset the culling)
            out = np.full(len(slots), np.nan)
            out[finite] = self.distances(slots[finite], x[finite], y[finite])
            return out
        n = len(slots)
        out = np.empty(n)
        counts, starts = self.count[slots], self.start[slots]
        for b0 in range(0, n, BLOCK_PAIRS):
            b = slice(b0, min(n, b0 + BLOCK_PAIRS))
            out[b] = self._block(starts[b], counts[b], x[b], y[b])
        return out

    def _block(self, starts: np.ndarray, k: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        n = len(k)
        first = np.cumsum(k) - k
        chunk = np.repeat(starts - first, k) + np.arange(int(first[-1] + k[-1]))
        pair = np.repeat(np.arange(n), k)
        box = np.take(self.box, chunk, axis=1)
        px, py = np.repeat(x, k), np.repeat(y, k)
        # Lower bound per chunk: squared distance to its box.
        low = box[MINX] - px
        np.maximum(low, px - box[MAXX], out=low)
        np.maximum(low, 0.0, out=low)
        ey = box[MINY] - py
        np.maximum(ey, py - box[MAXY], out=ey)
        np.maximum(ey, 0.0, out=ey)
        low *= low
        ey *= ey
        low += ey
        # 1. Measure, per pair, the chunk with the lowest bound (the first, on a tie).
        lowest = np.minimum.reduceat(low, first)
        hit = np.flatnonzero(low == np.repeat(lowest, k))
        hit = hit[np.r_[True, pair[hit[1:]] != pair[hit[:-1]]]]
        best = self._nearest_in(chunk[hit], x, y)
        # 2. Only chunks whose box is nearer than that can hold a nearer segment.
        low[hit] = np.inf
        more = np.flatnonzero(low < np.repeat(best, k))
        if len(more):
            p = pair[more]
            np.minimum.at(best, p, self._nearest_in(chunk[more], x[p], y[p]))
        return np.sqrt(best, out=best)

    def _nearest_in(self, chunks: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Squared distance from (x[i], y[i]) to the nearest segment of chunk ``chunks[i]``."""
        seg = np.take(self.seg, chunks, axis=1)
        wx = x[:, None] - seg[AX]
        wy = y[:, None] - seg[AY]
        t = wx * seg[DX]
        t += wy * seg[DY]
        t *= seg[INV]
        np.clip(t, 0.0, 1.0, out=t)
        step = t * seg[DX]
        wx -= step
        np.multiply(t, seg[DY], out=step)
        wy -= step
        wx *= wx
        wy *= wy
        wx += wy
        # Minimum over the CHUNK columns by halving: numpy reduces a short axis slowly.
        while wx.shape[1] > 1:
            half = wx.shape[1] // 2
            wx = np.minimum(wx[:, :half], wx[:, half:])
        return wx[:, 0]
