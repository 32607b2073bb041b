"""What a family member reads: every kind in every language, where/when/battery wording, and
the template files themselves (a new language cannot miss a key or use a field the code does
not fill)."""

from __future__ import annotations

import string
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from services.alerts import messages
from services.alerts.messages import format_age, format_time, pick_language, render
from services.alerts.model import AlertKind, Location, Severity
from services.alerts.rules import fix_problem

NOW = datetime(2026, 11, 25, 6, 17, 0, tzinfo=UTC)  # 14:17 in Shanghai
APP = "https://anxin.example"
HOME = {"fence_id": "5b0c-uuid", "name": "home", "kind": "safe"}
RIVER = {"fence_id": "9d2e-uuid", "name": "river", "kind": "no_go"}
FIX = {
    "lat": 31.23456,
    "lon": 121.4321,
    "acc": 30.0,
    "t": "2026-11-25T06:04:50+00:00",
    "source": "alarm",
    "fix_problem": None,
}
LAST_KNOWN = {
    "lat": 31.2,
    "lon": 121.4,
    "acc": 300.0,
    "t": "2026-11-25T06:05:00+00:00",  # 12 min before NOW
    "source": "last_known",
    "fix_problem": "the alarm carried no position",
}
LANGUAGES = messages.languages()


def alert(kind: str = "sos_silent", severity: str = "critical", **changes: Any) -> dict[str, Any]:
    a: dict[str, Any] = {
        "alert_id": 12,
        "wearer_id": "w00001",
        "wearer_name": "Wang Fang",
        "device_id": "d00001",
        "kind": kind,
        "severity": severity,
        "status": "open",
        "opened_at": "2026-11-25T06:05:00+00:00",
        "t": "2026-11-25T06:04:58+00:00",
        "occurrences": 1,
        "fence": None,
        "location": dict(FIX),
        "battery": 54,
        "tier": 1,
        "acknowledged_at": None,
        "resolved_at": None,
        "resolution_note": None,
    }
    a.update(changes)
    return a


# --- the template files ----------------------------------------------------------------------


def fields(template: str) -> set[str]:
    """The str.format fields a template uses; raises ValueError when it is malformed."""
    return {name for _, name, _, _ in string.Formatter().parse(template) if name is not None}


def test_english_and_chinese_templates_are_discovered() -> None:
    assert {"en", "zh-CN"} <= set(LANGUAGES)


@pytest.mark.parametrize("language", LANGUAGES)
def test_every_template_file_has_every_english_key(language: str) -> None:
    english = messages.read_templates("en")
    other = messages.read_templates(language)
    for section, values in english.items():
        missing = set(values) - set(other.get(section, {}))
        assert not missing, f"{language}.toml [{section}] lacks {sorted(missing)}"
    assert len(other["time"]["months"]) == 12


@pytest.mark.parametrize("language", LANGUAGES)
def test_placeholders_are_valid_and_ones_the_code_fills(language: str) -> None:
    english = messages.read_templates("en")
    for section, values in messages.read_templates(language).items():
        for key, template in values.items():
            if not isinstance(template, str):
                continue
            used = fields(template)
            assert "" not in used, f"{language} [{section}] {key}: positional field"
            allowed = fields(english[section][key])
            if (section, key) == ("time", "other_day"):
                allowed = {"hm", "day", "month", "month_name"}  # translations pick a form
            assert used <= allowed, f"{language} [{section}] {key}: {used - allowed}"


def test_every_alert_kind_has_its_own_english_words() -> None:
    english = messages.read_templates("en")
    for kind in AlertKind:
        assert kind.value in english["title"] and kind.value in english["what"]


@pytest.mark.parametrize(
    ("requested", "expected"),
    [
        ("zh-CN", "zh-CN"),
        ("zh", "zh-CN"),
        ("zh-Hans-CN", "zh-CN"),
        ("zh_CN.UTF-8", "zh-CN"),
        ("ZH-cn", "zh-CN"),
        ("en", "en"),
        ("en-GB", "en"),
        ("fr-FR", "en"),
        ("", "en"),
        (None, "en"),
    ],
)
def test_language_is_chosen_with_fallback(requested: str | None, expected: str) -> None:
    assert pick_language(requested) == expected


# --- every kind, every language, every kind of where -------------------------------------------

WHERE = {
    "fence": {"fence": HOME, "location": dict(FIX, source="fix")},
    "coordinate": {"location": dict(FIX)},
    "last_known": {"location": dict(LAST_KNOWN)},
    "no_location": {"location": None},
}
SEVERITIES = {"battery": ("low", "medium"), "offline": ("medium", "high")}


@pytest.mark.parametrize("language", LANGUAGES)
@pytest.mark.parametrize("kind", [k.value for k in AlertKind])
@pytest.mark.parametrize("where", WHERE)
def test_every_kind_renders_in_every_language(language: str, kind: str, where: str) -> None:
    changes = dict(WHERE[where])
    if kind in ("fence_exit", "fence_enter"):  # a fence alert always names its fence
        changes["fence"] = HOME if kind == "fence_exit" else RIVER
    for severity in SEVERITIES.get(kind, ("critical",)):
        m = render(alert(kind, severity, **changes), language, "Asia/Shanghai", NOW, APP)
        assert m.title and m.body
        assert "{" not in m.title + m.body and "?" not in m.title
        assert "Wang Fang" in m.title
        assert m.url == "https://anxin.example/#/alerts/12"
        assert "14:04" in m.body  # the alert's time, on the recipient's clock
        if where == "no_location":
            assert "openstreetmap" not in m.body
        else:
            assert "openstreetmap.org" in m.body


def test_english_silent_sos_says_not_to_call_the_watch() -> None:
    m = render(alert("sos_silent"), "en", "Asia/Shanghai", NOW, APP)
    assert m.title == "Silent SOS: Wang Fang"
    assert m.body.splitlines()[0] == (
        "Silent SOS — do not call the watch. Call someone near Wang Fang or go there."
    )


def test_chinese_silent_sos_says_not_to_call_the_watch() -> None:
    m = render(alert("sos_silent"), "zh", "Asia/Shanghai", NOW, APP)
    assert m.title == "静默求助：Wang Fang"
    assert "请勿拨打手表" in m.body


def test_audible_sos_and_fall_do_not_forbid_calling() -> None:
    for kind in ("sos_audible", "fall"):
        for language in LANGUAGES:
            m = render(alert(kind), language, "UTC", NOW, APP)
            assert "do not call" not in m.body and "请勿拨打" not in m.body


def test_chinese_titles_read_naturally() -> None:
    def title(kind: str, severity: str = "high", **changes: Any) -> str:
        return render(alert(kind, severity, **changes), "zh-CN", "UTC", NOW, APP).title

    assert title("sos_audible", "critical") == "紧急求助：Wang Fang"
    assert title("fall", "critical") == "跌倒报警：Wang Fang"
    assert title("fence_exit", fence=HOME) == "离开安全区域「home」：Wang Fang"
    assert title("fence_enter", fence=RIVER) == "进入危险区域「river」：Wang Fang"
    assert title("removed") == "手表已摘下：Wang Fang"
    assert title("battery", "low") == "电量低：Wang Fang"
    assert title("offline", "medium") == "设备离线：Wang Fang"


def test_fence_alert_names_the_fence_and_still_gives_the_position() -> None:
    a = alert("fence_exit", "high", fence=HOME, location=dict(FIX, source="fix"))
    m = render(a, "en", "Asia/Shanghai", NOW, APP)
    assert m.title == "Wang Fang left “home”"
    assert "Where: 31.23456, 121.43210 (±30 m)" in m.body
    assert "Area:" not in m.body  # already said


def test_other_alerts_inside_a_fence_name_it() -> None:
    m = render(alert("fall", fence=HOME), "zh-CN", "Asia/Shanghai", NOW, APP)
    assert "区域：「home」" in m.body


def test_position_is_a_coordinate_with_accuracy_and_a_map_link() -> None:
    body = render(alert(), "en", "Asia/Shanghai", NOW, APP).body
    assert "Where: 31.23456, 121.43210 (±30 m)" in body
    assert (
        "Map: https://www.openstreetmap.org/?mlat=31.23456&mlon=121.43210#map=17/31.23456/121.43210"
    ) in body


def test_last_known_position_says_how_old_and_how_accurate_and_why() -> None:
    a = alert(location=dict(LAST_KNOWN))
    en = render(a, "en", "Asia/Shanghai", NOW, APP).body
    assert "Where: last seen 12 min ago, 300 m accuracy: 31.20000, 121.40000" in en
    assert "Note: the alarm carried no position." in en
    zh = render(a, "zh-CN", "Asia/Shanghai", NOW, APP).body
    assert "最后位置 12 分钟前，精度 300 米：31.20000, 121.40000" in zh
    assert "说明：报警未附带位置。" in zh


def test_every_reason_the_rules_give_for_a_bad_fix_is_translated() -> None:
    t = NOW
    fixes = [
        None,
        Location(float("nan"), 121.4, 10.0, t),
        Location(0.0, 0.0, 10.0, t),
        Location(95.0, 121.4, 10.0, t),
        Location(31.2, 121.4, 900.0, t),
    ]
    for fix in fixes:
        problem = fix_problem(fix, 300.0)
        assert problem is not None
        a = alert(location=dict(LAST_KNOWN, fix_problem=problem))
        zh = render(a, "zh-CN", "UTC", NOW, APP).body
        assert "alarm" not in zh, problem
    zh = render(
        alert(location=dict(LAST_KNOWN, fix_problem=fix_problem(fixes[-1], 300.0))),
        "zh-CN",
        "UTC",
        NOW,
        APP,
    ).body
    assert "报警位置精度仅 900 米" in zh


def test_an_unknown_reason_is_shown_as_it_is() -> None:
    a = alert(location=dict(LAST_KNOWN, fix_problem="payload was truncated"))
    assert "说明：payload was truncated。" in render(a, "zh-CN", "UTC", NOW, APP).body


def test_no_location_says_position_unknown() -> None:
    a = alert(location=None)
    assert "Where: position unknown" in render(a, "en", "UTC", NOW, APP).body
    assert "位置：未知" in render(a, "zh-CN", "UTC", NOW, APP).body


def test_battery_is_shown_when_known() -> None:
    assert "Battery: 54%" in render(alert(), "en", "UTC", NOW, APP).body
    assert "电量：54%" in render(alert(), "zh-CN", "UTC", NOW, APP).body
    assert "Battery" not in render(alert(battery=None), "en", "UTC", NOW, APP).body


def test_battery_and_offline_wording_follows_severity() -> None:
    def title(kind: str, severity: str) -> str:
        return render(alert(kind, severity), "en", "UTC", NOW, APP).title

    assert title("battery", "low") == "Wang Fang's watch battery is low"
    assert title("battery", "medium") == "Wang Fang's watch battery is nearly empty"
    assert title("offline", "medium") == "Wang Fang's watch is offline"
    assert title("offline", "high") == "Wang Fang's watch is offline outside a safe area"


def test_repeated_alerts_say_how_often() -> None:
    assert "Happened 3 times." in render(alert(occurrences=3), "en", "UTC", NOW, APP).body
    assert "共发生 3 次。" in render(alert(occurrences=3), "zh-CN", "UTC", NOW, APP).body
    assert "Happened" not in render(alert(), "en", "UTC", NOW, APP).body


def test_a_kind_added_later_still_gets_a_message() -> None:
    m = render(alert("heart_rate", "high"), "en", "UTC", NOW, APP)
    assert m.title == "Alert for Wang Fang: heart_rate"


# --- when --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("tz", "expected"),
    [
        ("Asia/Shanghai", "When: 14:04 (Asia/Shanghai)"),
        ("Europe/Berlin", "When: 07:04 (Europe/Berlin)"),
        ("America/New_York", "When: 01:04 (America/New_York)"),
        ("UTC", "When: 06:04 (UTC)"),
        ("Not/AZone", "When: 06:04 (UTC)"),  # a bad profile value must not lose the alert
    ],
)
def test_time_is_shown_on_the_recipients_clock(tz: str, expected: str) -> None:
    assert expected in render(alert(), "en", tz, NOW, APP).body.splitlines()


def test_time_on_another_local_day_carries_the_date() -> None:
    t = datetime(2026, 11, 24, 15, 0, tzinfo=UTC)  # 23:00 on the 24th in Shanghai
    now = datetime(2026, 11, 24, 16, 30, tzinfo=UTC)  # 00:30 on the 25th there
    assert format_time(t, "Asia/Shanghai", now, "en") == ("24 Nov 23:00", "Asia/Shanghai")
    assert format_time(t, "Asia/Shanghai", now, "zh-CN") == ("11月24日 23:00", "Asia/Shanghai")
    assert format_time(t, "Europe/London", now, "en") == ("15:00", "Europe/London")


def test_datetimes_are_accepted_as_well_as_iso_strings() -> None:
    as_strings = alert(location=dict(LAST_KNOWN))
    as_datetimes = alert(
        t=datetime.fromisoformat(as_strings["t"]),
        opened_at=datetime.fromisoformat(as_strings["opened_at"]),
        location=dict(LAST_KNOWN, t=datetime.fromisoformat(LAST_KNOWN["t"])),
    )
    for language in LANGUAGES:
        assert render(as_strings, language, "Asia/Shanghai", NOW, APP) == render(
            as_datetimes, language, "Asia/Shanghai", NOW, APP
        )


@pytest.mark.parametrize(
    ("age", "en", "zh"),
    [
        (timedelta(seconds=-30), "just now", "刚刚"),  # the watch's clock runs ahead
        (timedelta(seconds=59), "just now", "刚刚"),
        (timedelta(minutes=1), "1 min ago", "1 分钟前"),
        (timedelta(minutes=12, seconds=59), "12 min ago", "12 分钟前"),
        (timedelta(minutes=60), "1 h ago", "1 小时前"),
        (timedelta(minutes=125), "2 h 5 min ago", "2 小时 5 分钟前"),
        (timedelta(hours=26), "1 d 2 h ago", "1 天 2 小时前"),
        (timedelta(days=3), "3 d ago", "3 天前"),
    ],
)
def test_age_formatting(age: timedelta, en: str, zh: str) -> None:
    assert format_age(age, "en") == en
    assert format_age(age, "zh-CN") == zh


def test_severity_may_be_given_as_the_enum() -> None:
    as_enum = render(alert("battery", Severity.MEDIUM), "en", "UTC", NOW, APP)  # type: ignore[arg-type]
    assert as_enum.title == "Wang Fang's watch battery is nearly empty"
