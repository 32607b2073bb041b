"""The ingestor's alert stage without a database (``alert_changes``) and the alert a silent
watch raises (``offline_trigger``): values built by hand, rules checked end to end."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.alerts.model import (
    AlertKind,
    AlertLocation,
    Clear,
    Location,
    LocationSource,
    Severity,
    Trigger,
)
from services.alerts.rules import battery_change
from services.ingestor.alert_stage import FenceCrossing, NewAlarm, NewEvents, alert_changes
from services.ingestor.items import AlarmIn
from services.ingestor.plan import Battery
from services.notifier.offline import offline_trigger
from services.protocol import Alarm, Position

SETTINGS = settings(max_examples=150, deadline=None)
T0 = datetime(2026, 11, 25, 6, 0, tzinfo=UTC)
DEVICE = "d00001"
WEARER = "w00001"
HOME_FIX = Location(31.2304, 121.4737, 25.0, T0 - timedelta(minutes=12))


def wearers(device_id: str) -> str | None:
    return {DEVICE: WEARER, "d00002": "w00002"}.get(device_id)


def sos(
    *,
    mode: str = "audible",
    alarm_type: str = "sos",
    position: Position | None = None,
    fix_error: str | None = None,
    device_id: str = DEVICE,
    event_id: int = 101,
) -> NewAlarm:
    alarm = Alarm(seq=7, t=T0, type=alarm_type, mode=mode)  # type: ignore[arg-type]
    item = AlarmIn(device_id, alarm, position, fix_error, T0 + timedelta(seconds=1))
    return NewAlarm(item, wearers(device_id) or "nobody", event_id)


def crossing(transition: str, fence_kind: str, event_id: int = 202) -> FenceCrossing:
    where = Location(31.25, 121.5, 15.0, T0)
    return FenceCrossing(
        DEVICE, WEARER, "fence-1", fence_kind, transition, T0, where, 42.04, event_id
    )


def changes(
    events: NewEvents | None = None,
    battery: dict[str, Battery] | None = None,
    open_battery: dict[str, Severity] | None = None,
    last_known: dict[str, Location] | None = None,
) -> tuple[list[Trigger], list[Clear]]:
    return alert_changes(
        events or NewEvents(), battery or {}, open_battery or {}, last_known or {}, wearers
    )


# alarms


def test_an_sos_without_a_position_opens_with_the_last_known_location() -> None:
    triggers, clears = changes(
        NewEvents(alarms=[sos(fix_error="alarm carried no fix")]), last_known={DEVICE: HOME_FIX}
    )
    assert clears == []
    [t] = triggers
    assert (t.device_id, t.wearer_id, t.kind, t.severity) == (
        DEVICE, WEARER, AlertKind.SOS_AUDIBLE, Severity.CRITICAL,
    )  # fmt: skip
    assert t.t == T0
    assert t.event_id == 101
    assert t.fence_id is None
    assert t.where == AlertLocation(HOME_FIX, LocationSource.LAST_KNOWN, "alarm carried no fix")
    assert t.detail == {"seq": 7, "mode": "audible"}


def test_an_sos_with_a_good_fix_shows_that_fix() -> None:
    pos = Position(t=T0, lat=31.24, lon=121.48, acc=12.0)
    [t], _ = changes(NewEvents(alarms=[sos(position=pos)]), last_known={DEVICE: HOME_FIX})
    assert t.where == AlertLocation(Location(31.24, 121.48, 12.0, T0), LocationSource.ALARM)


def test_an_sos_with_nothing_known_still_opens_without_a_location() -> None:
    [t], _ = changes(NewEvents(alarms=[sos(fix_error="alarm carried no fix")]))
    assert t.kind is AlertKind.SOS_AUDIBLE
    assert t.where is None


def test_an_alarm_whose_time_was_clamped_still_shows_its_good_fix() -> None:
    # The decoder keeps a good position but notes that the alarm's own time was unstorable:
    # that note is about the time, not the fix, so the fix is still the alarm's location.
    pos = Position(t=T0, lat=31.24, lon=121.48, acc=12.0)
    note = (
        "alarm time 1970-01-01T00:00:00+00:00 cannot be stored; kept as 2000-01-01T00:00:00+00:00"
    )
    [t], _ = changes(NewEvents(alarms=[sos(position=pos, fix_error=note)]))
    assert t.where == AlertLocation(Location(31.24, 121.48, 12.0, T0), LocationSource.ALARM)


def test_a_silent_sos_opens_a_silent_sos_alert() -> None:
    [t], _ = changes(NewEvents(alarms=[sos(mode="silent")]), last_known={DEVICE: HOME_FIX})
    assert t.kind is AlertKind.SOS_SILENT
    assert t.detail["mode"] == "silent"


@pytest.mark.parametrize(
    ("alarm_type", "kind", "severity"),
    [("fall", AlertKind.FALL, Severity.CRITICAL), ("removed", AlertKind.REMOVED, Severity.HIGH)],
)
def test_falls_and_removals_open_their_kind(
    alarm_type: str, kind: AlertKind, severity: Severity
) -> None:
    [t], _ = changes(NewEvents(alarms=[sos(alarm_type=alarm_type, mode="silent")]))
    assert (t.kind, t.severity) == (kind, severity)


def test_an_alarm_carries_the_battery_read_in_the_same_batch() -> None:
    battery = {DEVICE: Battery(T0, 50, False)}
    [t], _ = changes(NewEvents(alarms=[sos()]), battery=battery)
    assert t.detail["battery"] == 50


# fence crossings


def test_leaving_a_safe_fence_opens_a_fence_exit_alert_where_it_happened() -> None:
    triggers, clears = changes(NewEvents(crossings=[crossing("exit", "safe")]))
    assert clears == []
    [t] = triggers
    assert (t.kind, t.severity, t.fence_id, t.event_id) == (
        AlertKind.FENCE_EXIT, Severity.HIGH, "fence-1", 202,
    )  # fmt: skip
    assert t.where == AlertLocation(Location(31.25, 121.5, 15.0, T0), LocationSource.FIX)
    assert t.detail == {"distance_m": 42.0}


def test_coming_back_into_a_safe_fence_clears_its_exit_alert() -> None:
    triggers, clears = changes(NewEvents(crossings=[crossing("enter", "safe")]))
    assert triggers == []
    assert clears == [Clear(DEVICE, AlertKind.FENCE_EXIT, "fence-1", T0, "fence enter", 202)]


def test_entering_a_nogo_fence_opens_and_leaving_it_clears() -> None:
    [t], _ = changes(NewEvents(crossings=[crossing("enter", "nogo")]))
    assert t.kind is AlertKind.FENCE_ENTER
    _, [c] = changes(NewEvents(crossings=[crossing("exit", "nogo")]))
    assert (c.kind, c.fence_id, c.reason) == (AlertKind.FENCE_ENTER, "fence-1", "fence exit")


# battery


def test_a_low_reading_opens_a_low_battery_alert_at_the_last_known_location() -> None:
    triggers, clears = changes(
        battery={DEVICE: Battery(T0, 14, False)}, last_known={DEVICE: HOME_FIX}
    )
    assert clears == []
    [t] = triggers
    assert (t.device_id, t.wearer_id, t.kind, t.severity) == (
        DEVICE, WEARER, AlertKind.BATTERY, Severity.LOW,
    )  # fmt: skip
    assert t.where == AlertLocation(HOME_FIX, LocationSource.LAST_KNOWN)
    assert t.detail == {"battery": 14}
    assert t.event_id is None


def test_a_battery_alert_without_any_known_fix_has_no_location() -> None:
    [t], _ = changes(battery={DEVICE: Battery(T0, 14, False)})
    assert t.where is None


def test_a_low_reading_with_a_low_alert_open_changes_nothing() -> None:
    assert changes(
        battery={DEVICE: Battery(T0, 12, False)}, open_battery={DEVICE: Severity.LOW}
    ) == (
        [],
        [],
    )


def test_a_critical_reading_raises_an_open_low_alert_to_medium() -> None:
    [t], _ = changes(battery={DEVICE: Battery(T0, 4, False)}, open_battery={DEVICE: Severity.LOW})
    assert t.severity is Severity.MEDIUM


def test_charging_clears_an_open_battery_alert() -> None:
    triggers, clears = changes(
        battery={DEVICE: Battery(T0, 6, True)}, open_battery={DEVICE: Severity.MEDIUM}
    )
    assert triggers == []
    assert clears == [Clear(DEVICE, AlertKind.BATTERY, None, T0, "battery ok")]


def test_a_good_reading_without_an_open_alert_clears_nothing() -> None:
    assert changes(battery={DEVICE: Battery(T0, 90, False)}) == ([], [])


def test_a_device_whose_wearer_is_unknown_gets_no_battery_alert() -> None:
    assert changes(battery={"d-unassigned": Battery(T0, 3, False)}) == ([], [])


def test_an_open_battery_alert_of_a_device_without_a_wearer_still_clears() -> None:
    _, [c] = changes(
        battery={"d-unassigned": Battery(T0, 80, False)},
        open_battery={"d-unassigned": Severity.LOW},
    )
    assert (c.device_id, c.kind) == ("d-unassigned", AlertKind.BATTERY)


def test_one_batch_with_an_alarm_a_crossing_and_two_batteries() -> None:
    events = NewEvents(alarms=[sos()], crossings=[crossing("exit", "safe")])
    battery = {DEVICE: Battery(T0, 30, False), "d00002": Battery(T0, 10, None)}
    triggers, clears = changes(events, battery, open_battery={DEVICE: Severity.LOW})
    assert sorted((t.device_id, t.kind) for t in triggers) == [
        (DEVICE, AlertKind.FENCE_EXIT),
        (DEVICE, AlertKind.SOS_AUDIBLE),
        ("d00002", AlertKind.BATTERY),
    ]
    assert [(c.device_id, c.kind) for c in clears] == [(DEVICE, AlertKind.BATTERY)]


@SETTINGS
@given(
    st.sampled_from([None, Severity.LOW, Severity.MEDIUM]),
    st.integers(0, 100),
    st.sampled_from([False, True, None]),
    st.sampled_from([DEVICE, "d-unassigned"]),
)
def test_battery_changes_follow_the_battery_rule(
    open_severity: Severity | None, percent: int, charging: bool | None, device_id: str
) -> None:
    open_battery = {device_id: open_severity} if open_severity is not None else {}
    triggers, clears = changes(
        battery={device_id: Battery(T0, percent, charging)}, open_battery=open_battery
    )
    rule = battery_change(open_severity, percent, charging)
    if rule is False:
        assert (triggers, [c.kind for c in clears]) == ([], [AlertKind.BATTERY])
    elif rule is None or wearers(device_id) is None:
        assert (triggers, clears) == ([], [])
    else:
        assert [(t.kind, t.severity) for t in triggers] == [(AlertKind.BATTERY, rule)]
        assert clears == []


# offline


def test_a_silent_watch_inside_its_fences_raises_a_medium_offline_alert() -> None:
    last_seen = T0 - timedelta(minutes=45)
    t = offline_trigger(DEVICE, WEARER, last_seen, HOME_FIX, 37, False, T0)
    assert (t.device_id, t.wearer_id, t.kind, t.severity) == (
        DEVICE, WEARER, AlertKind.OFFLINE, Severity.MEDIUM,
    )  # fmt: skip
    assert t.t == last_seen
    assert t.where == AlertLocation(HOME_FIX, LocationSource.LAST_KNOWN)
    assert t.detail == {
        "last_seen": last_seen.isoformat(),
        "silent_for_s": 2700,
        "outside_safe_fence": False,
        "battery": 37,
    }


def test_a_silent_watch_outside_a_safe_fence_is_high() -> None:
    t = offline_trigger(DEVICE, WEARER, T0 - timedelta(hours=1), HOME_FIX, None, True, T0)
    assert t.severity is Severity.HIGH
    assert t.detail["outside_safe_fence"] is True
    assert "battery" not in t.detail


def test_a_silent_watch_that_never_had_a_fix_has_no_location() -> None:
    t = offline_trigger(DEVICE, WEARER, T0 - timedelta(seconds=601.9), None, 50, False, T0)
    assert t.where is None
    assert t.detail["silent_for_s"] == 601
