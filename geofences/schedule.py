"""When a scheduled fence is active ("home 21:00–07:00"), and the schedule's text format.

Windows are local wall-clock times in the wearer's IANA zone, so "21:00" stays 21:00 across a
daylight-saving change. A window with ``end <= start`` runs past midnight and belongs to the
weekday on which it *starts*: "fri 21:00-07:00" covers Friday night into Saturday morning.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, time
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from geofences.model import Schedule, TimeWindow

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_DAY_NAMES = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
_DAY_INDEX = {name: i for names in (DAYS, _DAY_NAMES) for i, name in enumerate(names)}
ALL_DAYS = frozenset(range(7))
_WINDOW = re.compile(r"^\s*(\d{1,2}):(\d{2})\s*[-–]\s*(\d{1,2}):(\d{2})\s*$")


@lru_cache(maxsize=512)
def zone(name: str) -> ZoneInfo:
    """A cached ZoneInfo (raises ZoneInfoNotFoundError / ValueError for a bad key)."""
    return ZoneInfo(name)


def is_active(schedule: Schedule | None, t: datetime) -> bool:
    """Whether a fence with ``schedule`` is active at instant ``t`` (no schedule: always).

    A naive ``t`` is taken as UTC, like every device time in Anxin."""
    if schedule is None:
        return True
    if t.tzinfo is None:
        t = t.replace(tzinfo=UTC)
    local = t.astimezone(zone(schedule.tz))
    day, now = local.weekday(), local.time().replace(tzinfo=None)
    days = schedule.weekdays
    for w in schedule.windows:
        if w.start < w.end:
            if day in days and w.start <= now < w.end:
                return True
        elif (day in days and now >= w.start) or ((day - 1) % 7 in days and now < w.end):
            return True
    return False


def _clock(h: str, m: str, *, allow_24: bool) -> time | None:
    hour, minute = int(h), int(m)
    if allow_24 and hour == 24 and minute == 0:
        return time(0, 0)
    if hour > 23 or minute > 59:
        return None
    return time(hour, minute)


def parse_window(text: Any) -> TimeWindow | str:
    """``"21:00-07:00"`` → TimeWindow, or the reason it is not one. ``24:00`` is allowed as an
    end ("08:00-24:00"); equal start and end is refused as ambiguous except "00:00-24:00"."""
    if not isinstance(text, str) or not (m := _WINDOW.match(text)):
        return f'window {text!r} is not "HH:MM-HH:MM"'
    start = _clock(m[1], m[2], allow_24=False)
    end = _clock(m[3], m[4], allow_24=True)
    if start is None or end is None:
        return f"window {text!r} has an impossible time of day"
    if start == end and not (start == time(0) and m[3] == "24"):
        return f'window {text!r} is empty or ambiguous (use "00:00-24:00" for all day)'
    return TimeWindow(start, end)


def parse_schedule(raw: Any, default_tz: str) -> Schedule | list[str]:
    """The ``schedule`` property → Schedule, or the list of reasons it is not valid."""
    if not isinstance(raw, dict):
        return ['schedule must be an object like {"windows": ["21:00-07:00"]}']
    problems: list[str] = []
    problems += [
        f"schedule has unknown key {k!r}" for k in raw if k not in ("tz", "days", "windows")
    ]
    tz = raw.get("tz", default_tz)
    try:
        if not isinstance(tz, str):
            raise ValueError
        zone(tz)
    except (ZoneInfoNotFoundError, ValueError):
        problems.append(f"schedule time zone {tz!r} is not an IANA zone (e.g. Asia/Shanghai)")
    days = raw.get("days", list(DAYS))
    weekdays: set[int] = set()
    if not isinstance(days, list) or not days:
        problems.append('schedule days must be a non-empty list like ["mon", "tue"]')
    else:
        for d in days:
            if isinstance(d, str) and d.strip().lower() in _DAY_INDEX:
                weekdays.add(_DAY_INDEX[d.strip().lower()])
            else:
                problems.append(f"schedule day {d!r} is not one of {', '.join(DAYS)}")
    windows_raw = raw.get("windows")
    windows: list[TimeWindow] = []
    if not isinstance(windows_raw, list) or not windows_raw:
        problems.append('schedule windows must be a non-empty list like ["21:00-07:00"]')
    else:
        for w in windows_raw:
            parsed = parse_window(w)
            if isinstance(parsed, str):
                problems.append(f"schedule {parsed}")
            else:
                windows.append(parsed)
    if problems:
        return problems
    return Schedule(tz=tz, weekdays=frozenset(weekdays), windows=tuple(windows))


def format_window(w: TimeWindow) -> str:
    end = "24:00" if w.end == time(0) else w.end.strftime("%H:%M")
    return f"{w.start.strftime('%H:%M')}-{end}"


def schedule_to_json(s: Schedule) -> dict[str, Any]:
    """The property format ``parse_schedule`` accepts (round-trips)."""
    return {
        "tz": s.tz,
        "days": [DAYS[d] for d in sorted(s.weekdays)],
        "windows": [format_window(w) for w in s.windows],
    }
