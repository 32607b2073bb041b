"""Stage 4c, alerts: the batch's new events and battery readings → alerts opened, joined or
cleared, in the batch's transaction (so an alarm is never stored without its alert, and an
alert never without its outbox rows).

``alert_changes`` is the pure part (tested directly); ``apply_alerts`` reads the little it
needs (last known fixes, open battery alerts) and writes through ``AlertWrites``. A batch with
no alarm, no fence crossing and no battery reading costs nothing here.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

import psycopg

from services.alerts.model import (
    AlertKind,
    AlertLocation,
    Clear,
    Location,
    LocationSource,
    Severity,
    Trigger,
)
from services.alerts.rules import (
    SEVERITY,
    alarm_kind,
    alarm_location,
    battery_change,
    fence_alert,
)
from services.alerts.store import AlertWrites
from services.ingestor.items import AlarmIn
from services.ingestor.plan import BatchPlan, Battery


@dataclass(frozen=True, slots=True)
class NewAlarm:
    """An alarm stored for the first time (not a re-send), with its event."""

    item: AlarmIn
    wearer_id: str
    event_id: int


@dataclass(frozen=True, slots=True)
class FenceCrossing:
    """A fence transition written as an event."""

    device_id: str
    wearer_id: str
    fence_id: str
    fence_kind: str  # safe | nogo
    transition: str  # enter | exit
    t: datetime
    location: Location
    distance_m: float
    event_id: int


@dataclass
class NewEvents:
    """What stages 4a and 4b wrote that the alert rules look at."""

    alarms: list[NewAlarm] = field(default_factory=list)
    crossings: list[FenceCrossing] = field(default_factory=list)


def alert_changes(
    events: NewEvents,
    battery: Mapping[str, Battery],
    open_battery: Mapping[str, Severity],
    last_known: Mapping[str, Location],
    wearer_of: Callable[[str], str | None],
    *,
    bad_fix_accuracy_m: float = 300.0,
    worn_again: Mapping[str, datetime] | None = None,
) -> tuple[list[Trigger], list[Clear]]:
    """Pure: the alert triggers and clears one batch calls for. ``worn_again``: devices
    with an open "removed" alert that now report being worn (when)."""
    triggers: list[Trigger] = []
    clears: list[Clear] = []
    for device_id, t in (worn_again or {}).items():
        clears.append(Clear(device_id, AlertKind.REMOVED, None, t, "worn again"))
    for a in events.alarms:
        alarm, pos = a.item.alarm, a.item.position
        own = Location(pos.lat, pos.lon, pos.acc, pos.t) if pos is not None else None
        kind = alarm_kind(alarm.type.value, alarm.mode.value)
        where = alarm_location(
            own,
            last_known.get(a.item.device_id),
            # a kept position was not refused: fix_error may only be about the alarm's time
            decode_error=a.item.fix_error if pos is None else None,
            max_accuracy_m=bad_fix_accuracy_m,
        )
        reading = battery.get(a.item.device_id)
        detail: dict[str, object] = {"seq": alarm.seq, "mode": alarm.mode.value}
        if reading is not None:
            detail["battery"] = reading.percent
        triggers.append(
            Trigger(a.item.device_id, a.wearer_id, kind, SEVERITY[kind], alarm.t, None, where,
                    detail, a.event_id)
        )  # fmt: skip
    for c in events.crossings:
        kind, opens = fence_alert(c.transition, c.fence_kind)
        if opens:
            where = AlertLocation(c.location, LocationSource.FIX)
            detail = {"distance_m": round(c.distance_m, 1)}
            triggers.append(
                Trigger(c.device_id, c.wearer_id, kind, SEVERITY[kind], c.t, c.fence_id, where,
                        detail, c.event_id)
            )  # fmt: skip
        else:
            clears.append(
                Clear(c.device_id, kind, c.fence_id, c.t, f"fence {c.transition}", c.event_id)
            )
    for device_id, reading in battery.items():
        change = battery_change(open_battery.get(device_id), reading.percent, reading.charging)
        if change is False:
            clears.append(Clear(device_id, AlertKind.BATTERY, None, reading.t, "battery ok"))
        elif change is not None:
            wearer = wearer_of(device_id)
            if wearer is None:
                continue
            where = None
            known = last_known.get(device_id)
            if known is not None:
                where = AlertLocation(known, LocationSource.LAST_KNOWN)
            triggers.append(
                Trigger(device_id, wearer, AlertKind.BATTERY, change, reading.t, None, where,
                        {"battery": reading.percent})
            )  # fmt: skip
    return triggers, clears


def apply_alerts(
    conn: psycopg.Connection,
    plan: BatchPlan,
    events: NewEvents,
    wearer_of: Callable[[str], str | None],
    *,
    bad_fix_accuracy_m: float = 300.0,
) -> int:
    """Runs inside the batch transaction, after fixes, alarms and fence events are written
    and before device_state moves on. Returns the number of alerts opened."""
    worn = [d for d, (_, on) in plan.worn.items() if on]
    if not (events.alarms or events.crossings or plan.battery or worn):
        return 0
    open_battery: dict[str, Severity] = {}
    worn_again: dict[str, datetime] = {}
    if plan.battery or worn:
        for device_id, kind, severity in conn.execute(
            "SELECT device_id, kind, severity FROM alerts WHERE kind IN ('battery', 'removed')"
            " AND status <> 'resolved' AND device_id = ANY(%s)",
            (sorted(set(plan.battery) | set(worn)),),
        ):
            if kind == "battery":
                open_battery[device_id] = Severity(severity)
            elif device_id in worn:
                worn_again[device_id] = plan.worn[device_id][0]
    if not (
        events.alarms or events.crossings or worn_again or _battery_matters(plan, open_battery)
    ):
        return 0
    last_known = _last_known(conn, plan, _devices(events, plan))
    triggers, clears = alert_changes(
        events, plan.battery, open_battery, last_known, wearer_of,
        bad_fix_accuracy_m=bad_fix_accuracy_m, worn_again=worn_again,
    )  # fmt: skip
    if not triggers and not clears:
        return 0
    writes = AlertWrites(conn, datetime.now(UTC))
    changes: list[Trigger | Clear] = [*triggers, *clears]
    for change in sorted(changes, key=lambda c: (c.device_id, c.kind, c.fence_id or "")):
        if isinstance(change, Trigger):
            writes.raise_alert(change)
        else:
            writes.clear(change)
    writes.finish()
    return writes.opened


def _battery_matters(plan: BatchPlan, open_battery: Mapping[str, Severity]) -> bool:
    return any(
        battery_change(open_battery.get(d), b.percent, b.charging) is not None
        for d, b in plan.battery.items()
    )


def _devices(events: NewEvents, plan: BatchPlan) -> list[str]:
    return sorted({a.item.device_id for a in events.alarms} | set(plan.battery))


def _last_known(
    conn: psycopg.Connection, plan: BatchPlan, devices: Sequence[str]
) -> dict[str, Location]:
    """The newest fix per device, from this batch or from before it (device_state has not yet
    taken this batch's fixes when this runs)."""
    out: dict[str, Location] = {}
    for device_id, t, lat, lon, acc in conn.execute(
        "SELECT device_id, fix_t, lat, lon, acc FROM device_state"
        " WHERE device_id = ANY(%s) AND fix_t IS NOT NULL",
        (list(devices),),
    ):
        out[device_id] = Location(lat, lon, acc, t)
    for device_id in devices:
        newest = plan.newest_fix.get(device_id)
        if newest is not None:
            f = newest.fix
            prior = out.get(device_id)
            if prior is None or f.t > prior.t:
                out[device_id] = Location(f.lat, f.lon, f.acc, f.t)
    return out
