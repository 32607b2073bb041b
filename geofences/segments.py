"""Membership and distance to a fence's boundary in numpy, to a fraction of a micrometre for
fences of a few kilometres, over every cached fence's boundary chunks.

Why not Shapely: measured on this machine (300k pairs, fences of 20–60 vertices), GEOS's
point-to-boundary distance cost about 1.3 µs a pair and needs a Point object per pair; this
costs about a third of that and allocates nothing per pair. Membership was ``contains_xy`` on
prepared Shapely polygons until the fleet's memory budget (300,000 fences) was measured: a
compiled GEOS polygon of 6–12 vertices costs ~550 bytes and its preparation ~170 more, four
times what its boundary costs here. The crossing count below answers the same question from the
chunks the distance already keeps. Both are tested against ``Point.within`` /
``boundary.distance`` (tests/test_geofence_engine.py).

Layout: each ring's segments are cut into chunks of ``CHUNK`` consecutive segments, stored as
their ``CHUNK + 1`` vertices (the last chunk padded by repeating the ring's closing vertex:
zero-length segments on the boundary never change a minimum and never cross a ray), each chunk
with its bounding box. Vertices only — not the segment vectors and inverse lengths, which cost
2.5x the memory and are recomputed in a few vectorised operations per visited chunk — and as
int32 on a grid per fence: a fence's frame metres divided by its ``scale``, the step that puts
its farthest vertex at ±(2³¹ - 1). 88 bytes a chunk instead of 352. Rounding moves a vertex by
at most 2.3e-10 of the fence's half-extent (0.1 mm for a fence 1,000 km across, far beyond
any valid one), where float32 would move it by 6e-8 of it (1.5 mm for a fence 50 km across:
over the 1 mm the engine is tested to). One grid per fence, not per chunk: a vertex two
chunks share is then the same number in both, so a ray through it is counted once. Points
are brought onto the grid (one division per pair) and distances back to metres at the end.

Distance, per (point, fence) pair: the distance to a chunk's box is a lower bound for its
segments; the chunk with the lowest bound is measured segment by segment first, then only the
chunks whose box is nearer than that result (0.3 per pair on the benchmark's fences, out of
about 7). Membership: a ray from the point towards +x crosses the boundary an odd number of
times iff the point is inside (holes and the parts of a MultiPolygon included: the rings of a
valid fence do not cross); only chunks whose box spans the point's y and reaches right of it
can be crossed. Both run in blocks of pairs so the temporaries stay in cache.

A point exactly on the boundary is inside or outside depending on rounding (GEOS says outside),
but its distance is 0 (or within rounding of it) either way, and the decision only compares
the signed distance with ±(accuracy + margin), so no decision depends on it.

The pool is slot-keyed like ``FenceIndex``: replacing a fence appends its chunks and leaves the
old range as garbage; when garbage outgrows the live chunks the pool compacts itself (amortised
O(1) per change, never a rebuild per change). New capacity is ``np.zeros`` (calloc): pages not
yet written cost no resident memory, so doubling costs address space, not RSS.
"""

from __future__ import annotations

import numpy as np

CHUNK = 8  # segments per chunk (a power of two): 4–8 measured best; 16 culls too coarsely
BLOCK_PAIRS = 8192  # pairs per numpy block: 2048 is 3 % faster alone, 8192 scales on 2 threads
MINX, MINY, MAXX, MAXY = range(4)
TINY = np.finfo(float).tiny
QMAX = 2**31 - 1  # int32 steps from a fence's origin to its farthest vertex


def ring_chunks(
    x: np.ndarray, y: np.ndarray, n_coords: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Chunks of many closed rings at once: ``x``, ``y`` (int32 grid steps) hold every ring's
    positions one ring after another (the last repeating the first), ``n_coords`` each ring's
    count. Returns (box (4, m), vertices (2, m, CHUNK + 1), chunks per ring)."""
    n_coords = np.asarray(n_coords, dtype=np.intp)
    n_segs = n_coords - 1
    per_ring = -(-n_segs // CHUNK)
    ring_start = np.cumsum(n_coords) - n_coords
    ring = np.repeat(np.arange(len(n_coords)), per_ring)
    k = np.arange(len(ring)) - np.repeat(np.cumsum(per_ring) - per_ring, per_ring)
    # Vertex j of chunk k is ring vertex min(k * CHUNK + j, n): past the end, the padding
    # collapses onto the closing vertex.
    j = np.minimum(k[:, None] * CHUNK + np.arange(CHUNK + 1), n_segs[ring][:, None])
    idx = ring_start[ring][:, None] + j
    px, py = x[idx], y[idx]
    box = np.vstack((px.min(axis=1), py.min(axis=1), px.max(axis=1), py.max(axis=1)))
    return box, np.stack((px, py)), per_ring


def grid_scale(half_extent: np.ndarray) -> np.ndarray:
    """Metres per int32 step for fences whose farthest vertex is ``half_extent`` metres from
    their frame's origin (1 for a degenerate fence, whose vertices are all 0)."""
    return np.where(half_extent > 0, half_extent / QMAX, 1.0)


class SegmentPool:
    """Boundary chunks per slot, contiguous per slot, in two flat arrays."""

    def __init__(self, slots: int = 64) -> None:
        self.box = np.zeros((4, 256), dtype=np.int32)
        self.pts = np.zeros((2, 256, CHUNK + 1), dtype=np.int32)
        self.used = 0
        self.live = 0
        self.start = np.zeros(slots, dtype=np.int32)  # int32: 8 bytes a slot less than intp
        self.count = np.zeros(slots, dtype=np.int32)
        self.scale = np.ones(slots)  # metres per grid step

    def grow_slots(self, slots: int) -> None:
        for name in ("start", "count", "scale"):
            old = getattr(self, name)
            new = np.zeros(slots, dtype=old.dtype)
            new[: len(old)] = old
            setattr(self, name, new)

    def set_many(
        self,
        slots: np.ndarray,
        box: np.ndarray,
        pts: np.ndarray,
        counts: np.ndarray,
        scales: np.ndarray,
    ) -> None:
        """Give each of ``slots`` (distinct) its chunks: ``counts[i]`` consecutive chunks of
        ``box`` / ``pts`` for ``slots[i]``, in order, on a grid of ``scales[i]`` metres a step
        (replacing what the slots had)."""
        self.live -= int(self.count[slots].sum())
        self.count[slots] = 0
        self.scale[slots] = scales
        m = box.shape[1]
        if self.used + m > self.box.shape[1]:
            self._move(slice(0, self.used), max(2 * self.box.shape[1], self.used + m))
        self.box[:, self.used : self.used + m] = box
        self.pts[:, self.used : self.used + m] = pts
        self.start[slots] = self.used + np.cumsum(counts) - counts
        self.count[slots] = counts
        self.used += m
        self.live += m
        self._maybe_compact()

    def clear(self, slots: np.ndarray | int) -> None:
        self.live -= int(np.sum(self.count[slots]))
        self.count[slots] = 0
        self._maybe_compact()

    def _maybe_compact(self) -> None:
        if self.used > 4096 and self.used - self.live > self.live:
            self._compact()

    def _move(self, keep: np.ndarray | slice, cap: int) -> None:
        """Copy chunks ``keep`` (in order) to the front of fresh arrays of ``cap`` chunks."""
        box = np.zeros((4, cap), dtype=np.int32)
        pts = np.zeros((2, cap, CHUNK + 1), dtype=np.int32)
        kept = self.box[:, keep]
        box[:, : kept.shape[1]] = kept
        pts[:, : kept.shape[1]] = self.pts[:, keep]
        self.box, self.pts, self.used = box, pts, kept.shape[1]

    def _compact(self) -> None:
        slots = np.flatnonzero(self.count)
        k = self.count[slots]
        new_start = np.cumsum(k) - k
        keep = np.repeat(self.start[slots] - new_start, k) + np.arange(int(k.sum()))
        self._move(keep, max(256, 2 * len(keep)))
        self.live = len(keep)
        self.start[slots] = new_start

    def signed_distances(self, slots: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Signed distance (> 0 inside) from (x[i], y[i]) to the boundary of the fence in
        ``slots[i]`` (every slot must hold a boundary). Pairs sorted by slot read the pool in
        order."""
        finite = np.isfinite(x) & np.isfinite(y)
        if not finite.all():  # a NaN fix has no distance (and would upset the culling)
            out = np.full(len(slots), np.nan)
            out[finite] = self.signed_distances(slots[finite], x[finite], y[finite])
            return out
        n = len(slots)
        out = np.empty(n)
        counts, starts, scale = self.count[slots], self.start[slots], self.scale[slots]
        x, y = x / scale, y / scale  # onto each fence's grid
        for b0 in range(0, n, BLOCK_PAIRS):
            b = slice(b0, min(n, b0 + BLOCK_PAIRS))
            out[b] = self._block(starts[b], counts[b], x[b], y[b])
        out *= scale
        return out

    def _block(self, starts: np.ndarray, k: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        n = len(k)
        first = np.cumsum(k) - k
        chunk = np.repeat(starts - first, k) + np.arange(int(first[-1] + k[-1]))
        pair = np.repeat(np.arange(n), k)
        box = np.take(self.box, chunk, axis=1)
        px, py = np.repeat(x, k), np.repeat(y, k)
        # Membership: the chunks a ray from the point towards +x may cross.
        ray = np.flatnonzero((box[MINY] <= py) & (py < box[MAXY]) & (px < box[MAXX]))
        p = pair[ray]
        crossings = np.bincount(p, self._crossings(chunk[ray], x[p], y[p]), minlength=n)
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
        np.sqrt(best, out=best)
        return np.where(crossings % 2 == 1, best, -best)

    def _crossings(self, chunks: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """How many segments of chunk ``chunks[i]`` a ray from (x[i], y[i]) towards +x crosses.
        A segment spans the ray's y half-open (the rule GEOS's ray counter uses, so a ray
        through a vertex counts once); it is crossed right of the point when the point lies
        left of an upward segment or right of a downward one."""
        vx, vy = np.take(self.pts, chunks, axis=1).astype(float)
        ax, ay, bx, by = vx[:, :-1], vy[:, :-1], vx[:, 1:], vy[:, 1:]
        yc, xc = y[:, None], x[:, None]
        a_above, b_above = ay > yc, by > yc
        side = (bx - ax) * (yc - ay) - (by - ay) * (xc - ax)
        crossed = (b_above & ~a_above & (side > 0)) | (a_above & ~b_above & (side < 0))
        return crossed.sum(axis=1)

    def _nearest_in(self, chunks: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Squared distance from (x[i], y[i]) to the nearest segment of chunk ``chunks[i]``
        (grid units)."""
        vx, vy = np.take(self.pts, chunks, axis=1).astype(float)
        ax, ay = vx[:, :-1], vy[:, :-1]
        dx = vx[:, 1:] - ax
        dy = vy[:, 1:] - ay
        wx = x[:, None] - ax
        wy = y[:, None] - ay
        t = wx * dx
        t += wy * dy
        len2 = dx * dx
        len2 += dy * dy
        np.maximum(len2, TINY, out=len2)  # a zero-length (padding) segment: t = 0 / TINY = 0
        t /= len2
        np.clip(t, 0.0, 1.0, out=t)
        dx *= t
        dy *= t
        wx -= dx
        wy -= dy
        wx *= wx
        wy *= wy
        wx += wy
        # Minimum over the CHUNK columns by halving: numpy reduces a short axis slowly.
        while wx.shape[1] > 1:
            half = wx.shape[1] // 2
            wx = np.minimum(wx[:, :half], wx[:, half:])
        return wx[:, 0]
