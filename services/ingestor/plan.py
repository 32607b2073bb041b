"""Stage 3, plan a batch: decide what the store stage writes, without touching the database.

Drops in-batch duplicates, and folds a device's many messages into one update of its latest
state, so that the store stage issues a fixed number of statements per batch whatever its size.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import NamedTuple

from services.ingestor.items import AckIn, AlarmIn, FixIn, Item, Rejected, StateIn, StatusIn


class Seen(NamedTuple):
    """A device's liveness after this batch: newest receive time and online flag."""

    last_seen: datetime
    online: bool


class Battery(NamedTuple):
    t: datetime
    percent: int
    charging: bool | None


@dataclass
class BatchPlan:
    fixes: list[FixIn] = field(default_factory=list)
    alarms: list[AlarmIn] = field(default_factory=list)
    acks: list[AckIn] = field(default_factory=list)
    rejected: list[Rejected] = field(default_factory=list)
    seen: dict[str, Seen] = field(default_factory=dict)
    newest_fix: dict[str, FixIn] = field(default_factory=dict)
    battery: dict[str, Battery] = field(default_factory=dict)
    worn: dict[str, tuple[datetime, bool]] = field(default_factory=dict)  # newest "worn" flag

    @property
    def fix_days(self) -> set[date]:
        return {f.fix.t.date() for f in self.fixes}

    def receipts(self) -> dict[str, list[int]]:
        """Alarm sequence numbers to confirm per device once the batch has committed. A
        re-sent alarm that is already stored is confirmed again: its first receipt was lost."""
        out: dict[str, list[int]] = {}
        for a in self.alarms:
            out.setdefault(a.device_id, []).append(a.alarm.seq)
        return out


def plan_batch(items: Iterable[Item]) -> BatchPlan:
    plan = BatchPlan()
    fix_keys: set[tuple[str, datetime, int]] = set()
    alarm_keys: set[tuple[str, int, datetime]] = set()
    for item in items:
        if isinstance(item, Rejected):
            plan.rejected.append(item)
            continue
        online = item.state.online if isinstance(item, StateIn) else True
        prior = plan.seen.get(item.device_id)
        last_seen = item.received_at if prior is None else max(prior.last_seen, item.received_at)
        plan.seen[item.device_id] = Seen(last_seen, online)
        if isinstance(item, FixIn):
            key = (item.device_id, item.fix.t, item.fix.seq)
            if key in fix_keys:
                continue
            fix_keys.add(key)
            plan.fixes.append(item)
            newest = plan.newest_fix.get(item.device_id)
            if newest is None or item.fix.t > newest.fix.t:
                plan.newest_fix[item.device_id] = item
            if item.fix.bat is not None:
                _note_battery(plan, item.device_id, Battery(item.fix.t, item.fix.bat, None))
        elif isinstance(item, AlarmIn):
            key2 = (item.device_id, item.alarm.seq, item.alarm.t)
            if key2 not in alarm_keys:
                alarm_keys.add(key2)
                plan.alarms.append(item)
        elif isinstance(item, StatusIn):
            s = item.status
            _note_battery(plan, item.device_id, Battery(s.t, s.bat, s.charging))
            if s.worn is not None:
                prior_worn = plan.worn.get(item.device_id)
                if prior_worn is None or s.t >= prior_worn[0]:
                    plan.worn[item.device_id] = (s.t, s.worn)
        elif isinstance(item, AckIn):
            plan.acks.append(item)
    return plan


def _note_battery(plan: BatchPlan, device_id: str, reading: Battery) -> None:
    prior = plan.battery.get(device_id)
    if prior is None or reading.t >= prior.t:
        plan.battery[device_id] = reading
