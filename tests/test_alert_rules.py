"""The alert rules, one promise at a time: an alarm is never lost to a bad fix (and never shown
"nowhere" while anything is known), fence transitions open and clear the right kind, the battery
alert neither flaps nor nags, and critical alerts wait for a person."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.alerts.model import AlertKind, Location, LocationSource, Severity
from services.alerts.rules import (
    BATTERY_CLEAR,
    BATTERY_CRITICAL,
    BATTERY_LOW,
    SEVERITY,
    alarm_kind,
    alarm_location,
    battery_change,
    battery_level,
    fence_alert,
    fix_problem,
    joined_severity,
    offline_severity,
    self_resolving,
)

SETTINGS = settings(max_examples=200, deadline=None)
T0 = datetime(2026, 11, 25, 6, 0, tzinfo=UTC)
MAX_ACC = 300.0


def loc(acc: float = 20.0, lat: float = 31.23, lon: float = 121.47, minutes_ago: int = 0):
    return Location(lat, lon, acc, T0 - timedelta(minutes=minutes_ago))


# alarm_kind


@pytest.mark.parametrize(
    ("alarm_type", "mode", "kind"),
    [
        ("sos", "audible", AlertKind.SOS_AUDIBLE),
        ("sos", "silent", AlertKind.SOS_SILENT),
        ("fall", "audible", AlertKind.FALL),
        ("fall", "silent", AlertKind.FALL),
        ("removed", "audible", AlertKind.REMOVED),
        ("removed", "silent", AlertKind.REMOVED),
    ],
)
def test_each_alarm_raises_its_kind(alarm_type: str, mode: str, kind: AlertKind) -> None:
    assert alarm_kind(alarm_type, mode) is kind


def test_silent_sos_is_its_own_kind_not_an_audible_one() -> None:
    assert alarm_kind("sos", "silent") is not alarm_kind("sos", "audible")


def test_falls_and_removals_ignore_the_mode() -> None:
    assert alarm_kind("fall", "silent") is alarm_kind("fall", "audible")
    assert alarm_kind("removed", "silent") is alarm_kind("removed", "audible")


def test_every_alarm_kind_is_critical_except_a_removed_watch() -> None:
    assert SEVERITY[AlertKind.SOS_AUDIBLE] is Severity.CRITICAL
    assert SEVERITY[AlertKind.SOS_SILENT] is Severity.CRITICAL
    assert SEVERITY[AlertKind.FALL] is Severity.CRITICAL
    assert SEVERITY[AlertKind.REMOVED] is Severity.HIGH


def test_every_kind_has_a_severity() -> None:
    assert set(SEVERITY) == set(AlertKind)


# fix_problem


@pytest.mark.parametrize(
    ("fix", "words"),
    [
        (None, "no position"),
        (Location(math.nan, 121.0, 10.0, T0), "not a number"),
        (Location(31.0, math.inf, 10.0, T0), "not a number"),
        (Location(31.0, 121.0, math.nan, T0), "not a number"),
        (Location(0.0, 0.0, 10.0, T0), "0, 0"),
        (Location(91.0, 121.0, 10.0, T0), "out of range"),
        (Location(31.0, -180.5, 10.0, T0), "out of range"),
        (Location(31.0, 121.0, 301.0, T0), "accurate to 301 m"),
    ],
)
def test_a_fix_that_cannot_be_shown_says_why(fix: Location | None, words: str) -> None:
    problem = fix_problem(fix, MAX_ACC)
    assert problem is not None
    assert words in problem


def test_a_good_fix_has_no_problem() -> None:
    assert fix_problem(loc(acc=20.0), MAX_ACC) is None


def test_a_fix_exactly_at_the_accuracy_limit_is_still_good() -> None:
    assert fix_problem(loc(acc=MAX_ACC), MAX_ACC) is None


def test_only_the_exact_null_island_counts_as_no_lock() -> None:
    assert fix_problem(Location(0.0, 0.5, 10.0, T0), MAX_ACC) is None
    assert fix_problem(Location(-0.5, 0.0, 10.0, T0), MAX_ACC) is None


# alarm_location


def test_a_good_own_fix_is_shown_as_the_alarm_location() -> None:
    own = loc(acc=15.0)
    where = alarm_location(own, loc(acc=5.0, minutes_ago=3))
    assert where is not None
    assert where.location == own
    assert where.source is LocationSource.ALARM
    assert where.fix_problem is None


def test_an_alarm_without_a_fix_shows_the_last_known_one_and_says_why() -> None:
    last = loc(minutes_ago=12)
    where = alarm_location(None, last)
    assert where is not None
    assert where.location == last
    assert where.source is LocationSource.LAST_KNOWN
    assert where.fix_problem == "the alarm carried no position"


def test_an_invalid_own_fix_falls_back_to_the_last_known_one() -> None:
    last = loc(minutes_ago=5)
    where = alarm_location(Location(0.0, 0.0, 10.0, T0), last)
    assert where is not None
    assert where.source is LocationSource.LAST_KNOWN
    assert where.location == last
    assert where.fix_problem is not None and "0, 0" in where.fix_problem


def test_an_inaccurate_own_fix_loses_to_a_more_accurate_last_known_one() -> None:
    last = loc(acc=30.0, minutes_ago=5)
    where = alarm_location(loc(acc=1500.0), last)
    assert where is not None
    assert where.source is LocationSource.LAST_KNOWN
    assert where.location == last
    assert where.fix_problem is not None and "1500 m" in where.fix_problem


def test_an_inaccurate_own_fix_beats_a_still_less_accurate_last_known_one() -> None:
    own = loc(acc=800.0)
    where = alarm_location(own, loc(acc=2000.0, minutes_ago=5))
    assert where is not None
    assert where.source is LocationSource.ALARM
    assert where.location == own
    assert where.fix_problem is not None and "800 m" in where.fix_problem


def test_an_inaccurate_own_fix_is_shown_when_nothing_else_is_known() -> None:
    own = loc(acc=5000.0)
    where = alarm_location(own, None)
    assert where is not None
    assert where.source is LocationSource.ALARM
    assert where.location == own
    assert where.fix_problem is not None


def test_an_alarm_is_shown_nowhere_only_when_nothing_at_all_is_known() -> None:
    assert alarm_location(None, None) is None
    assert alarm_location(Location(0.0, 0.0, 10.0, T0), None) is None
    assert alarm_location(None, Location(math.nan, 1.0, 10.0, T0)) is None


def test_an_unusable_last_known_fix_is_never_shown() -> None:
    own = loc(acc=900.0)
    where = alarm_location(own, Location(0.0, 0.0, 5.0, T0))
    assert where is not None
    assert where.location == own


def test_a_fix_the_decoder_refused_is_never_shown_as_good() -> None:
    own = loc(acc=10.0)
    last = loc(acc=50.0, minutes_ago=7)
    where = alarm_location(own, last, decode_error="fix.t: in the future")
    assert where is not None
    assert where.source is LocationSource.LAST_KNOWN
    assert where.location == last
    assert where.fix_problem == "fix.t: in the future"


def test_a_fix_the_decoder_refused_is_not_a_fallback_either() -> None:
    assert alarm_location(loc(acc=10.0), None, decode_error="fix.lat: too large") is None


def test_the_accuracy_limit_is_the_callers() -> None:
    own = loc(acc=120.0)
    lenient = alarm_location(own, None, max_accuracy_m=500.0)
    assert lenient is not None and lenient.fix_problem is None
    strict = alarm_location(own, None, max_accuracy_m=100.0)
    assert strict is not None and strict.fix_problem is not None


finite_lat = st.floats(-90, 90, allow_nan=False)
finite_lon = st.floats(-180, 180, allow_nan=False)
any_float = st.floats(allow_nan=True, allow_infinity=True)
accuracies = st.floats(0.5, 100_000, allow_nan=False)
fixes = st.builds(
    Location,
    st.one_of(finite_lat, any_float, st.just(0.0)),
    st.one_of(finite_lon, any_float, st.just(0.0)),
    st.one_of(accuracies, any_float),
    st.just(T0),
)
maybe_fixes = st.one_of(st.none(), fixes)
decode_errors = st.one_of(st.none(), st.just("fix.t: more than 1 day in the future"))


def usable(fix: Location | None) -> bool:
    return fix_problem(fix, math.inf) is None


@SETTINGS
@given(maybe_fixes, maybe_fixes, decode_errors, st.floats(1, 10_000, allow_nan=False))
def test_an_alarm_is_never_shown_nowhere_while_something_is_known(
    own: Location | None, last: Location | None, decode_error: str | None, max_acc: float
) -> None:
    where = alarm_location(own, last, decode_error=decode_error, max_accuracy_m=max_acc)
    own_usable = decode_error is None and usable(own)
    if own_usable or usable(last):
        assert where is not None
    else:
        assert where is None
    if where is None:
        return
    assert usable(where.location)
    assert where.location in (own, last)
    assert where.source is (
        LocationSource.ALARM if where.location is own else LocationSource.LAST_KNOWN
    )
    own_good = own_usable and fix_problem(own, max_acc) is None
    assert (where.fix_problem is None) == (where.source is LocationSource.ALARM and own_good)
    if own_good:
        assert where.location is own
    if decode_error is not None:
        assert where.source is LocationSource.LAST_KNOWN
        assert where.fix_problem == decode_error


# fence_alert


@pytest.mark.parametrize(
    ("transition", "fence_kind", "expected"),
    [
        ("exit", "safe", (AlertKind.FENCE_EXIT, True)),
        ("enter", "safe", (AlertKind.FENCE_EXIT, False)),
        ("enter", "nogo", (AlertKind.FENCE_ENTER, True)),
        ("exit", "nogo", (AlertKind.FENCE_ENTER, False)),
    ],
)
def test_fence_transitions_open_and_clear_their_kind(
    transition: str, fence_kind: str, expected: tuple[AlertKind, bool]
) -> None:
    assert fence_alert(transition, fence_kind) == expected


def test_leaving_a_safe_fence_and_entering_a_nogo_fence_are_high() -> None:
    assert SEVERITY[AlertKind.FENCE_EXIT] is Severity.HIGH
    assert SEVERITY[AlertKind.FENCE_ENTER] is Severity.HIGH


# battery


def test_battery_thresholds_are_15_5_and_20() -> None:
    assert (BATTERY_LOW, BATTERY_CRITICAL, BATTERY_CLEAR) == (15, 5, 20)


@pytest.mark.parametrize(
    ("percent", "expected"),
    [
        (0, Severity.MEDIUM),
        (5, Severity.MEDIUM),
        (6, Severity.LOW),
        (15, Severity.LOW),
        (16, None),
        (19, None),
        (20, False),
        (100, False),
    ],
)
def test_battery_level_per_reading(percent: int, expected: Severity | bool | None) -> None:
    assert battery_level(percent, False) == expected
    assert battery_level(percent, None) == expected  # charging unknown: judged by the level


@pytest.mark.parametrize("percent", [0, 3, 10, 15, 17, 50])
def test_a_charging_watch_clears_its_battery_alert_at_any_level(percent: int) -> None:
    assert battery_level(percent, True) is False


def test_a_low_reading_opens_a_low_battery_alert() -> None:
    assert battery_change(None, 14, False) is Severity.LOW


def test_a_critical_reading_opens_at_medium() -> None:
    assert battery_change(None, 4, False) is Severity.MEDIUM


def test_a_critical_reading_raises_an_open_low_alert() -> None:
    assert battery_change(Severity.LOW, 5, False) is Severity.MEDIUM


def test_a_watch_reporting_14_percent_with_every_fix_opens_only_once() -> None:
    assert battery_change(None, 14, False) is Severity.LOW
    assert battery_change(Severity.LOW, 14, False) is None
    assert battery_change(Severity.LOW, 13, False) is None


def test_a_low_reading_never_lowers_an_open_medium_alert() -> None:
    assert battery_change(Severity.MEDIUM, 12, False) is None


@pytest.mark.parametrize("percent", [16, 17, 18, 19])
def test_the_hysteresis_band_neither_opens_nor_clears(percent: int) -> None:
    assert battery_change(None, percent, False) is None
    assert battery_change(Severity.LOW, percent, False) is None
    assert battery_change(Severity.MEDIUM, percent, False) is None


def test_15_16_15_does_not_open_close_open() -> None:
    open_severity = None
    changes = []
    for percent in (15, 16, 15, 16, 15):
        change = battery_change(open_severity, percent, False)
        changes.append(change)
        open_severity = apply_battery(open_severity, change)
    assert changes == [Severity.LOW, None, None, None, None]


def test_20_percent_or_charging_clears_an_open_alert() -> None:
    assert battery_change(Severity.LOW, 20, False) is False
    assert battery_change(Severity.MEDIUM, 3, True) is False


def test_a_good_reading_without_an_open_alert_changes_nothing() -> None:
    assert battery_change(None, 80, False) is None
    assert battery_change(None, 3, True) is None


def apply_battery(open_severity: Severity | None, change: Severity | bool | None):
    """What the ingestor does with a change: a severity opens/raises, False clears."""
    if change is False:
        return None
    if isinstance(change, Severity):
        return change
    return open_severity


readings = st.lists(
    st.tuples(st.integers(0, 100), st.sampled_from([False, True, None])), max_size=60
)


@SETTINGS
@given(st.sampled_from([None, Severity.LOW, Severity.MEDIUM]), readings)
def test_battery_alert_never_repeats_never_lowers_and_closes_at_20(
    start: Severity | None, sequence: list[tuple[int, bool | None]]
) -> None:
    open_severity = start
    for percent, charging in sequence:
        change = battery_change(open_severity, percent, charging)
        if isinstance(change, Severity):
            assert change != open_severity, "opened twice at the same severity"
            if open_severity is not None:
                assert change > open_severity, "lowered while open"
        if change is False:
            assert open_severity is not None, "cleared an alert that was not open"
        after = apply_battery(open_severity, change)
        if percent >= BATTERY_CLEAR or charging:
            assert after is None
        if percent <= BATTERY_LOW and not charging:
            assert after is not None
        open_severity = after


# offline, self-resolution, joining


def test_silence_outside_a_safe_fence_is_high_otherwise_medium() -> None:
    assert offline_severity(True) is Severity.HIGH
    assert offline_severity(False) is Severity.MEDIUM


def test_critical_alerts_never_resolve_themselves() -> None:
    assert self_resolving(Severity.CRITICAL) is False


@pytest.mark.parametrize("severity", [Severity.LOW, Severity.MEDIUM, Severity.HIGH])
def test_lesser_alerts_resolve_themselves(severity: Severity) -> None:
    assert self_resolving(severity) is True


def test_every_alarm_alert_but_a_removed_watch_waits_for_a_person() -> None:
    waits = {k for k, s in SEVERITY.items() if not self_resolving(s)}
    assert waits == {AlertKind.SOS_AUDIBLE, AlertKind.SOS_SILENT, AlertKind.FALL}


@SETTINGS
@given(st.sampled_from(Severity), st.sampled_from(Severity))
def test_joining_an_open_alert_never_lowers_its_severity(
    open_severity: Severity, new: Severity
) -> None:
    joined = joined_severity(open_severity, new)
    assert joined >= open_severity
    assert joined >= new
    assert joined in (open_severity, new)


def test_joining_raises_a_lesser_alert() -> None:
    assert joined_severity(Severity.LOW, Severity.MEDIUM) is Severity.MEDIUM
    assert joined_severity(Severity.HIGH, Severity.MEDIUM) is Severity.HIGH
