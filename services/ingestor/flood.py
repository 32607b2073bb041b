"""Stage 2b, the flood limit: one device may not drown the others.

A watch sends a fix every 10–60 s, a heartbeat a minute and, back from a spell offline, its
buffer as ONE ``batch`` message. A device whose messages come far faster than that is broken (a
firmware loop) or hostile; unchecked, its fixes would fill the batches, ``positions`` and the
fence stage while every other wearer waits. So each device has a token bucket: ``burst``
messages at once, ``rate_per_s`` sustained. A message over the limit is not stored as data: it
is dead-lettered whole, with a reason that starts ``rate_limited``, and counted. Nothing is
dropped silently.

Never limited:
- alarms: an SOS must always get through. A limited ``batch`` gives up its fixes, not its
  alarms, which are taken out and stored as usual;
- ``state`` (online/offline, the will): folding it costs less than dead-lettering it;
- messages decode already rejected: they are dead letters either way.

The bucket's clock. Receive time alone would punish the innocent: after an ingestor or database
outage the broker hands over every device's backlog at once. So a bucket refills by how far
the device's own clock **or** the receive clock has moved on since its last message, whichever
moved more. A backlog drained at full speed carries device times spread over the outage and
passes; a watch whose clock steps back still refills by real time; a flood of fixes stamped
"now" is limited. A device that forges old, steadily increasing device times can outrun it:
this guards against broken watches, while a hostile one is revoked (``devices.revoked_at``).

Trial and commit: the same messages can be planned twice (the database was away and the batch
is retried), so a batch charges a ``FloodTrial``, and the limiter adopts the trial's buckets
only after the batch's transaction has committed.
"""

from __future__ import annotations

from collections import Counter, OrderedDict
from datetime import datetime
from typing import NamedTuple

from services.ingestor.items import AckIn, AlarmIn, FixIn, Item, Rejected, StatusIn

RATE_LIMITED = "rate_limited"
MAX_TRACKED_DEVICES = 100_000  # least recently heard first out; a fresh bucket is full anyway


class Bucket(NamedTuple):  # one per message charged: a tuple is the cheapest to make
    tokens: float
    device_clock: float  # newest device time seen, epoch seconds
    receive_clock: float  # newest receive time seen, epoch seconds


class FloodLimiter:
    """Per-device token buckets. Memory is bounded: at most ``max_devices`` buckets."""

    def __init__(
        self, rate_per_s: float, burst: int, max_devices: int = MAX_TRACKED_DEVICES
    ) -> None:
        if rate_per_s <= 0 or burst < 1 or max_devices < 1:
            raise ValueError("a flood limit needs rate_per_s > 0, burst >= 1, max_devices >= 1")
        self.rate_per_s = rate_per_s
        self.burst = burst
        self.max_devices = max_devices
        self._buckets: OrderedDict[str, Bucket] = OrderedDict()
        self._unreported: Counter[str] = Counter()

    @property
    def tracked_devices(self) -> int:
        return len(self._buckets)

    def trial(self) -> FloodTrial:
        return FloodTrial(self)

    def bucket(self, device_id: str) -> Bucket | None:
        return self._buckets.get(device_id)

    def forget_refilled(self, now: float) -> int:
        """Drop the buckets that have refilled by ``now`` (epoch seconds, the receive clock).
        A device heard again then starts from a fresh bucket, which is full: the same answer
        (only a clock that later steps back refills by its own time from the newer point),
        without keeping ~300 bytes for every one of 100,000 quiet watches. Returns how many."""
        rate, burst = self.rate_per_s, self.burst
        full = [d for d, b in self._buckets.items()
                if b.tokens + (now - b.receive_clock) * rate >= burst]  # fmt: skip
        for device_id in full:
            del self._buckets[device_id]
        return len(full)

    def take_report(self) -> Counter[str]:
        """Messages limited per device since the last call (for the periodic log line)."""
        report, self._unreported = self._unreported, Counter()
        return report

    def _adopt(self, buckets: dict[str, Bucket], limited: Counter[str]) -> None:
        for device_id, bucket in buckets.items():
            self._buckets[device_id] = bucket
            self._buckets.move_to_end(device_id)
        while len(self._buckets) > self.max_devices:
            self._buckets.popitem(last=False)
        self._unreported.update(limited)


class FloodTrial:
    """The limiter as one batch sees it: charges go to a copy until ``commit()``."""

    def __init__(self, limiter: FloodLimiter) -> None:
        self._limiter = limiter
        self._changed: dict[str, Bucket] = {}
        self.limited: Counter[str] = Counter()

    def charge(self, device_id: str, device_t: float, received_t: float) -> bool:
        """Take one token from the device's bucket; False if it has none."""
        lim = self._limiter
        prior = self._changed.get(device_id) or lim.bucket(device_id)
        if prior is None:
            tokens, device_clock, receive_clock = float(lim.burst), device_t, received_t
        else:
            moved = max(device_t - prior.device_clock, received_t - prior.receive_clock, 0.0)
            tokens = min(float(lim.burst), prior.tokens + moved * lim.rate_per_s)
            device_clock = max(prior.device_clock, device_t)
            receive_clock = max(prior.receive_clock, received_t)
        allowed = tokens >= 1.0
        if allowed:
            tokens -= 1.0
        self._changed[device_id] = Bucket(tokens, device_clock, receive_clock)
        return allowed

    def admit(
        self, topic: str, payload: bytes, received_at: datetime, items: list[Item]
    ) -> list[Item]:
        """One message's decoded items, or, over the limit, one dead letter for the whole
        message plus the alarms it carried."""
        # The common message is one fix: no lists, no generator (this runs for every message).
        if len(items) == 1:
            only = items[0]
            if type(only) not in _CHARGED:
                return items
            device_id, device_t = only.device_id, _device_time(only)  # type: ignore[arg-type]
        else:
            data = [i for i in items if type(i) in _CHARGED]
            if not data:
                return items
            device_id = data[0].device_id
            device_t = max(_device_time(i) for i in data)  # type: ignore[arg-type]
        if self.charge(device_id, device_t.timestamp(), received_at.timestamp()):
            return items
        self.limited[device_id] += 1
        alarms = [i for i in items if isinstance(i, AlarmIn)]
        lim = self._limiter
        reason = (
            f"{RATE_LIMITED}: device {device_id!r} is over its limit of {lim.burst} messages at"
            f" once and {lim.rate_per_s:g} a second (ANXIN_DEVICE_BURST, ANXIN_DEVICE_RATE_PER_S);"
            " not stored"
        )
        if alarms:
            reason += f"; its {len(alarms)} alarm(s) were taken out and stored"
        return [Rejected(topic, device_id, payload, reason, received_at), *alarms]

    def commit(self) -> None:
        """The batch is stored: the limiter takes these buckets (call once)."""
        self._limiter._adopt(self._changed, self.limited)
        self._changed = {}


_CHARGED = frozenset((FixIn, StatusIn, AckIn))  # exact types: items are final dataclasses


def _device_time(item: FixIn | StatusIn | AckIn) -> datetime:
    if type(item) is FixIn:
        return item.fix.t
    if type(item) is StatusIn:
        return item.status.t
    return item.ack.t  # type: ignore[union-attr]
