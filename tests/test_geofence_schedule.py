"""Schedules: local wall-clock windows in the wearer's IANA zone, past midnight included."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta, timezone

import pytest

from geofences.model import Schedule, TimeWindow
from geofences.schedule import format_window, is_active, parse_schedule, parse_window

SHANGHAI = timezone(timedelta(hours=8))


def night(tz: str = "Asia/Shanghai", days: frozenset[int] = frozenset(range(7))) -> Schedule:
    return Schedule(tz=tz, weekdays=days, windows=(TimeWindow(time(21, 0), time(7, 0)),))


def local(day: int, hh: int, mm: int = 0) -> datetime:
    """Shanghai wall-clock time on 2025-06-02 (a Monday) + ``day`` days."""
    return datetime(2025, 6, 2 + day, hh, mm, tzinfo=SHANGHAI)


def test_home_at_night_is_active_at_22_on_monday_and_not_at_noon():
    assert is_active(night(), local(0, 22)) is True
    assert is_active(night(), local(0, 12)) is False


@pytest.mark.parametrize(
    ("hh", "mm", "active"),
    [(20, 59, False), (21, 0, True), (23, 59, True), (0, 0, True), (6, 59, True), (7, 0, False)],
)
def test_a_window_past_midnight_runs_from_start_to_end_exclusive(hh, mm, active):
    assert is_active(night(), local(1, hh, mm)) is active


def test_a_window_past_midnight_belongs_to_the_day_it_starts():
    friday_only = night(days=frozenset({4}))
    assert is_active(friday_only, local(4, 22)) is True  # Friday night
    assert is_active(friday_only, local(5, 2)) is True  # … into Saturday morning
    assert is_active(friday_only, local(4, 2)) is False  # Friday morning is Thursday's night
    assert is_active(friday_only, local(5, 22)) is False


def test_the_same_instant_is_judged_in_the_wearers_zone():
    instant = datetime(2025, 6, 2, 14, 0, tzinfo=UTC)  # 22:00 in Shanghai, 15:00 in London
    assert is_active(night("Asia/Shanghai"), instant) is True
    assert is_active(night("Europe/London"), instant) is False


def test_wall_clock_windows_follow_daylight_saving():
    evening = Schedule(tz="Europe/Berlin", windows=(TimeWindow(time(21, 0), time(23, 0)),))
    # 20:30 UTC is 21:30 in Berlin in January (UTC+1) but 22:30 in July (UTC+2): both inside;
    # 19:30 UTC is 20:30 in January (outside) and 21:30 in July (inside).
    assert is_active(evening, datetime(2025, 1, 15, 20, 30, tzinfo=UTC)) is True
    assert is_active(evening, datetime(2025, 1, 15, 19, 30, tzinfo=UTC)) is False
    assert is_active(evening, datetime(2025, 7, 15, 19, 30, tzinfo=UTC)) is True


def test_no_schedule_means_always_active_and_naive_times_are_utc():
    assert is_active(None, datetime(2025, 6, 2, 12, 0)) is True
    assert is_active(night(), datetime(2025, 6, 2, 14, 0)) is True  # 14:00 UTC = 22:00 CST


def test_several_windows_and_all_day():
    day_and_night = Schedule(
        tz="Asia/Shanghai",
        windows=(TimeWindow(time(9, 0), time(11, 30)), TimeWindow(time(21, 0), time(7, 0))),
    )
    assert is_active(day_and_night, local(0, 10)) is True
    assert is_active(day_and_night, local(0, 12)) is False
    all_day = parse_schedule({"windows": ["00:00-24:00"], "days": ["sat", "sun"]}, "Asia/Shanghai")
    assert isinstance(all_day, Schedule)
    assert is_active(all_day, local(5, 0)) and is_active(all_day, local(6, 23, 59))
    assert not is_active(all_day, local(0, 12))


def test_parsing_accepts_the_documented_forms_and_round_trips():
    s = parse_schedule(
        {"days": ["Mon", "friday"], "windows": ["21:00–07:00", "9:30-11:00"]}, "Asia/Shanghai"
    )
    assert s == Schedule(
        tz="Asia/Shanghai",
        weekdays=frozenset({0, 4}),
        windows=(TimeWindow(time(21), time(7)), TimeWindow(time(9, 30), time(11))),
    )
    assert format_window(TimeWindow(time(8), time(0))) == "08:00-24:00"
    assert parse_window("08:00-24:00") == TimeWindow(time(8), time(0))


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ({"windows": ["21:00-07:00"], "tz": "Mars/Olympus"}, "not an IANA zone"),
        ({"windows": ["21:00-07:00"], "days": ["someday"]}, "day 'someday' is not one of"),
        ({"windows": ["21:00-07:00"], "days": []}, "days must be a non-empty list"),
        ({"windows": []}, "windows must be a non-empty list"),
        ({"windows": ["9pm-7am"]}, 'is not "HH:MM-HH:MM"'),
        ({"windows": ["25:00-07:00"]}, "impossible time of day"),
        ({"windows": ["08:00-08:00"]}, "empty or ambiguous"),
        ({"windows": ["21:00-07:00"], "every": "day"}, "unknown key 'every'"),
        ("21:00-07:00", "must be an object"),
    ],
)
def test_bad_schedules_say_why(raw, reason):
    problems = parse_schedule(raw, "Asia/Shanghai")
    assert isinstance(problems, list)
    assert any(reason in p for p in problems), problems
