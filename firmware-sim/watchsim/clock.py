"""The watches' clock: device time that may start in the past and run fast, never ahead.

``--clock-start-ago S --clock-speed X``: device time starts S seconds before the real clock and
runs X times as fast as it. The backend rejects device times more than a few minutes ahead of
its own clock, so device time is capped at the real clock: once it catches up (after
S / (X - 1) real seconds) it simply runs at real speed. Ten minutes of a wearer's life with
``--clock-start-ago 600 --clock-speed 20`` take about 32 s, every timestamp in the past.

Everything a watch does is in device time (fix rate, heartbeats, alarm re-sends, offline
periods, planned presses and scenarios); only the fleet's own bookkeeping (``--duration``,
``--drain-timeout``, progress lines) is in real seconds. Device time never goes backwards: if
the real clock is stepped back, device time stands still until the real clock passes it.
"""

from __future__ import annotations

import time
from collections.abc import Callable

MAX_SPEED = 1000.0


class SimClock:
    """``now()`` is device time (epoch seconds). ``wall`` and ``mono`` are for tests."""

    def __init__(
        self,
        speed: float = 1.0,
        start_ago_s: float = 0.0,
        *,
        wall: Callable[[], float] = time.time,
        mono: Callable[[], float] = time.monotonic,
    ) -> None:
        if not 0 < speed <= MAX_SPEED:
            raise ValueError(f"--clock-speed must be in (0, {MAX_SPEED:g}]")
        if not start_ago_s >= 0:
            raise ValueError("--clock-start-ago must be >= 0")
        self.speed = speed
        self.start_ago_s = start_ago_s
        self._wall = wall
        self._mono = mono
        self._mono0 = mono()
        self.real_start = wall()
        self.start = self.real_start - start_ago_s  # device time at the start of the run
        self._last = self.start

    @property
    def is_real_time(self) -> bool:
        """The default clock: device time is the real clock."""
        return self.speed == 1.0 and self.start_ago_s == 0.0

    def _fast(self) -> float:
        return self.start + self.speed * (self._mono() - self._mono0)

    def now(self) -> float:
        t = min(self._fast(), self._wall())
        self._last = max(self._last, t)
        return self._last

    def elapsed(self) -> float:
        """Device seconds since the start: what ``@S`` in ``--press``/``--wander`` counts."""
        return self.now() - self.start

    def rate(self) -> float:
        """Device seconds per real second right now: ``speed`` until caught up, then 1."""
        if self.speed <= 1.0:
            return self.speed
        return 1.0 if self._fast() >= self._wall() else self.speed

    def behind_s(self) -> float:
        """How far device time is behind the real clock (0 once caught up)."""
        return max(0.0, self._wall() - self.now())

    def catch_up_after_s(self) -> float | None:
        """Real seconds after the start at which device time reaches the real clock (None:
        never, it runs slower)."""
        if self.start_ago_s == 0.0:
            return 0.0
        return self.start_ago_s / (self.speed - 1.0) if self.speed > 1.0 else None
