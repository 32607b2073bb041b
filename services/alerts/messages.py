"""An alert as a family member reads it: who, what, when (their clock), where, battery, link.

Pure: ``render`` turns the alert dict the API shows into a ``Message`` in the recipient's
language and time zone; every channel sends that text. The words live in TOML files under
``templates/`` (one per language, Python ``str.format`` fields), so a translator edits text,
not code, and adding a language is adding a file: ``languages()`` discovers them, and the
tests check each file has every key of ``en.toml`` (docs/notifications.md).

Where: a fence name when the alert is about one, and an address-free coordinate with its
accuracy and a map link whenever there is a position (no reverse geocoding: no third party
learns where the wearer is). A last-known position says how old it is, because "12 min ago,
300 m" and "now, 10 m" call for different actions.
"""

from __future__ import annotations

import re
import tomllib
from datetime import UTC, datetime, timedelta, tzinfo
from functools import cache, lru_cache
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from services.notifier.channels.base import Message

TEMPLATES_DIR = Path(__file__).with_name("templates")
DEFAULT_LANGUAGE = "en"
FENCE_KINDS = frozenset({"fence_exit", "fence_enter"})  # the fence is already in the title

Catalog = dict[str, dict[str, Any]]

# The English reasons services/alerts/rules.py gives for not using an alarm's own fix, and
# the template that says it in the recipient's language (unknown reasons are shown as they are).
_PROBLEMS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"carried no position"), "no_position"),
    (re.compile(r"position is not a number"), "not_a_number"),
    (re.compile(r"position is 0, 0"), "no_lock"),
    (re.compile(r"position is out of range"), "out_of_range"),
    (re.compile(r"only accurate to (?P<acc>\d+) m"), "inaccurate"),
)


@lru_cache(maxsize=1)
def languages() -> tuple[str, ...]:
    """The language tags there are templates for: the file names in ``templates/``."""
    return tuple(sorted(path.stem for path in TEMPLATES_DIR.glob("*.toml")))


def read_templates(language: str) -> Catalog:
    """One template file exactly as written (the tests compare files with it)."""
    with (TEMPLATES_DIR / f"{language}.toml").open("rb") as f:
        return tomllib.load(f)


@cache
def catalog(language: str) -> Catalog:
    """A language's templates over English ones, so a key a translation lacks shows in
    English instead of failing the notification."""
    merged = {section: dict(values) for section, values in read_templates("en").items()}
    if language != DEFAULT_LANGUAGE:
        for section, values in read_templates(language).items():
            merged.setdefault(section, {}).update(values)
    return merged


def pick_language(requested: str | None) -> str:
    """The template language for a recipient's language tag: an exact match, else one of
    the same language sharing the most subtags ("zh", "zh-Hans-CN", "zh_CN.UTF-8" → zh-CN),
    else English."""
    if not requested:
        return DEFAULT_LANGUAGE
    wanted = requested.split(".")[0].replace("_", "-").lower().split("-")
    same_language = [tag for tag in languages() if tag.lower().split("-")[0] == wanted[0]]
    if not same_language:
        return DEFAULT_LANGUAGE

    def closeness(tag: str) -> tuple[int, int]:
        subtags = tag.lower().split("-")
        return (len(set(subtags) & set(wanted)), -len(subtags))

    return max(same_language, key=closeness)


def format_age(age: timedelta, language: str | None) -> str:
    """'12 min ago', '2 h 5 min ago', '3 d 4 h ago' (floored: never younger than it is)."""
    words = catalog(pick_language(language))["age"]
    minutes = max(0, int(age.total_seconds())) // 60
    if minutes < 1:
        return words["just_now"]
    if minutes < 60:
        return words["minutes"].format(minutes=minutes)
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        key = "hours_minutes" if minutes else "hours"
        return words[key].format(hours=hours, minutes=minutes)
    days, hours = divmod(hours, 24)
    return words["days_hours" if hours else "days"].format(days=days, hours=hours)


def format_time(
    t: datetime, tz: str | None, now: datetime, language: str | None
) -> tuple[str, str]:
    """(local time, zone label) as the recipient reads them: '14:05' today, '25 Nov 14:05'
    on another day. An unknown zone falls back to UTC and says so rather than failing."""
    zone, label = _zone(tz)
    words = catalog(pick_language(language))["time"]
    local = _aware(t).astimezone(zone)
    fields = {
        "hm": local.strftime("%H:%M"),
        "day": local.day,
        "month": local.month,
        "month_name": words["months"][local.month - 1],
    }
    same_day = local.date() == _aware(now).astimezone(zone).date()
    return words["same_day" if same_day else "other_day"].format(**fields), label


def render(
    alert: dict[str, Any], language: str | None, tz: str | None, now: datetime, app_url: str
) -> Message:
    """The message one recipient gets for ``alert`` (the dict the API shows). A missing or
    unknown language or zone gives English / UTC rather than no message."""
    c = catalog(pick_language(language))
    line = c["line"]
    now = _aware(now)
    kind = str(alert.get("kind") or "")
    severity = str(getattr(alert.get("severity"), "label", alert.get("severity")) or "")
    fence = alert.get("fence")
    fields = {
        "name": alert.get("wearer_name") or alert.get("wearer_id") or "?",
        "fence": line["fence"].format(fence=(fence or {}).get("name") or "?"),
        "kind": kind,
    }
    lines = [_for_kind(c["what"], kind, severity).format(**fields)]
    if fence and kind not in FENCE_KINDS:
        lines.append(line["area"].format(**fields))
    lines += _when_lines(alert, tz, now, language, line)
    lines += _where_lines(alert.get("location"), now, language, c)
    if alert.get("battery") is not None:
        lines.append(line["battery"].format(battery=alert["battery"]))
    return Message(
        title=_for_kind(c["title"], kind, severity).format(**fields),
        body="\n".join(lines),
        url=f"{app_url.rstrip('/')}/#/alerts/{alert.get('alert_id')}",
    )


def map_url(lat: float, lon: float) -> str:
    """An OpenStreetMap link with a pin: opens in any browser, needs no account or API key."""
    return (
        f"https://www.openstreetmap.org/?mlat={lat:.5f}&mlon={lon:.5f}#map=17/{lat:.5f}/{lon:.5f}"
    )


def _for_kind(section: dict[str, str], kind: str, severity: str) -> str:
    """'<kind>_<severity>' first (battery_medium, offline_high), then '<kind>', then 'other'
    (a kind added later still gets a message)."""
    return section.get(f"{kind}_{severity}") or section.get(kind) or section["other"]


def _when_lines(
    alert: dict[str, Any], tz: str | None, now: datetime, language: str | None, line: dict[str, str]
) -> list[str]:
    t = _instant(alert.get("t")) or _instant(alert.get("opened_at"))
    if t is None:
        return []
    time_text, label = format_time(t, tz, now, language)
    lines = [line["when"].format(time=time_text, tz=label)]
    count = alert.get("occurrences") or 1
    if count > 1:  # pressed again, fell again: it matters to whoever decides what to do
        lines.append(line["repeated"].format(count=count))
    return lines


def _where_lines(
    location: dict[str, Any] | None, now: datetime, language: str | None, c: Catalog
) -> list[str]:
    line = c["line"]
    if not location or location.get("lat") is None or location.get("lon") is None:
        return [line["where_unknown"]]
    lat, lon = float(location["lat"]), float(location["lon"])
    acc = f"{float(location.get('acc') or 0):.0f}"
    coord = f"{lat:.5f}, {lon:.5f}"
    if location.get("source") == "last_known":
        seen = _instant(location.get("t"))
        age = format_age(now - seen, language) if seen else "?"
        lines = [line["where_last_known"].format(age=age, acc=acc, coord=coord)]
    else:
        lines = [line["where"].format(coord=coord, acc=acc)]
    lines.append(line["map"].format(map_url=map_url(lat, lon)))
    if location.get("fix_problem"):
        problem = _problem_text(str(location["fix_problem"]), c["problem"])
        lines.append(line["problem"].format(problem=problem))
    return lines


def _problem_text(problem: str, words: dict[str, str]) -> str:
    for pattern, key in _PROBLEMS:
        found = pattern.search(problem)
        if found:
            return words[key].format(**found.groupdict())
    return problem


def _zone(tz: str | None) -> tuple[tzinfo, str]:
    try:
        return ZoneInfo(tz or "UTC"), tz or "UTC"
    except (ZoneInfoNotFoundError, ValueError, OSError):
        return UTC, "UTC"


def _instant(value: str | datetime | None) -> datetime | None:
    """An ISO string (as the API shows) or a datetime; None when absent or unreadable."""
    if isinstance(value, datetime):
        return _aware(value)
    if not value:
        return None
    try:
        return _aware(datetime.fromisoformat(value))
    except ValueError:
        return None


def _aware(t: datetime) -> datetime:
    """A naive time is taken as UTC (the database and the API speak UTC)."""
    return t if t.tzinfo else t.replace(tzinfo=UTC)
