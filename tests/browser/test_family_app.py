"""The family app (/) in a phone-sized Chromium against the real stack: log in, the watch
moving on the map as the simulator walks, fences drawn on the map (and one the API refuses,
with its reason shown), a wearer walked out of a safe area raising the full-screen banner
live, whose Acknowledge stops the escalation, the watch's commands and the audit."""

from __future__ import annotations

import json
import math
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import get_args

import httpx
import psycopg
import pytest
from playwright.sync_api import expect

from geofences.demo import demo_home
from geofences.geojson import fences_from_geojson
from services.api.alert_schemas import KindLabel, SeverityLabel, StatusLabel
from services.api.command_schemas import CommandStatus
from services.storage.fences import save_fences
from services.storage.provisioning import seed_demo
from services.web.routes import page_headers, tile_source
from tests.browser.conftest import Phone, Stack, log_in, open_phone, start_stack
from tests.support.alerting import press_sos
from tests.support.broker import MosquittoProcess
from tests.support.people import PASSWORD, make_user, relate
from tests.support.stack import wait_for

WALKER, WANDERER = "wearer-w00001", "wearer-w00002"
ACK_S = 8  # tier 1's time to acknowledge before tier 2 is told


@dataclass
class Family:
    stack: Stack
    guardian: str  # e-mail addresses
    relative: str
    guardian_contact: int
    second_contact: int


@pytest.fixture(scope="module")
def family(
    tmp_path_factory: pytest.TempPathFactory, module_broker: MosquittoProcess, module_db: str
) -> Iterator[Family]:
    """Two wearers, Wang Ming their guardian; Wang Li family of the first; the second wearer
    has a safe circle around the simulator's home for them and two escalation tiers (Wang
    Ming, then Zhao Gang) with short times to acknowledge."""
    with psycopg.connect(module_db) as conn:
        seed_demo(conn, 2)
    guardian = make_user(module_db, "Wang Ming", phone="+8613800138000")
    relative = make_user(module_db, "Wang Li", phone="+8613900139000")
    second = make_user(module_db, "Zhao Gang")
    for wearer in (WALKER, WANDERER):
        relate(module_db, wearer, guardian, "guardian")
    relate(module_db, WALKER, relative, "family")
    lat, lon = demo_home(WANDERER)
    home = {"type": "Feature", "geometry": {"type": "Point", "coordinates": [lon, lat]},
            "properties": {"name": "home", "kind": "safe", "radius_m": 200, "margin_m": 5,
                           "dwell_s": 0, "wearer": WANDERER}}  # fmt: skip
    tmp = tmp_path_factory.mktemp("family")
    stack_gen = start_stack(tmp, module_broker, module_db)
    stack = next(stack_gen)
    try:
        contacts = [stack.contact(guardian), stack.contact(second)]
        with psycopg.connect(module_db) as conn:
            save_fences(conn, fences_from_geojson(home), replace=True)
            for tier, contact in enumerate(contacts, start=1):
                conn.execute(
                    "INSERT INTO escalation_tiers (wearer_id, tier, contact_ids, ack_critical_s,"
                    " ack_high_s) VALUES (%s, %s, %s, %s, %s)",
                    (WANDERER, tier, [contact], ACK_S, ACK_S),
                )
        yield Family(stack, stack.email(guardian), stack.email(relative), *contacts)
    finally:
        stack_gen.close()


def marker(phone: Phone, wearer: str) -> tuple[float, float] | None:
    at = phone.state(f"window.anxin.marker && window.anxin.marker('{wearer}')")
    return (at["lat"], at["lng"]) if at else None


def metres(a: tuple[float, float], b: tuple[float, float]) -> float:
    dy = (a[0] - b[0]) * 111_320
    dx = (a[1] - b[1]) * 111_320 * math.cos(math.radians(a[0]))
    return math.hypot(dx, dy)


def test_the_family_logs_in_and_sees_the_watch_move_on_the_map_without_a_reload(
    family: Family, phone: Phone
) -> None:
    s = family.stack
    # The first watch walks due east from its home at 1.2 m/s: four simulated minutes in about
    # 25 s, then in real time (a fix every 2 simulated seconds).
    sim = s.sim("walk", "--devices", "1", "--demo-homes", "--rate", "0.5", "--duration",
                "45", "--clock-start-ago", "240", "--clock-speed", "10",
                "--wander", "1@0:90")  # fmt: skip
    page = phone.page
    page.goto(s.url + "/")
    expect(page.locator("#login-email")).to_be_focused()
    phone.shot("family-0-login")
    log_in(phone, s.url, "/", family.guardian, PASSWORD)
    card = page.locator(f'[data-wearer-id="{WALKER}"]')
    expect(card).to_contain_text("Online", timeout=20_000)
    wait_for(lambda: marker(phone, WALKER) is not None, 15, "the marker on the map")
    first = marker(phone, WALKER)
    page.evaluate("window.anxin.firstPage = true")  # gone if the page reloads
    wait_for(lambda: metres(marker(phone, WALKER), first) > 3, 20, "the marker to move", 0.5)
    assert page.evaluate("window.anxin.firstPage") is True
    assert marker(phone, WALKER)[1] > first[1]  # walking east
    assert card.get_attribute("data-lng") != ""
    expect(card).to_contain_text("Last seen just now")
    expect(card).to_contain_text("Battery")
    phone.shot("family-1-map", top="#map-h")
    # Today's track (a point a minute) plays back along the slider.
    minutes = "SELECT count(DISTINCT date_trunc('minute', t)) FROM positions"
    wait_for(lambda: s.one(minutes) >= 3, 30, "three minutes of track")
    page.locator("#track-reload").click()
    slider, label = page.locator("#track-slider"), page.locator("#track-time")
    expect(page.get_by_role("button", name="Play")).to_be_enabled()
    slider.fill("0")
    expect(label).to_contain_text("(point 1 of ")
    total = int(slider.get_attribute("max") or 0) + 1
    assert total >= 3
    page.get_by_role("button", name="Play").click()
    expect(label).to_contain_text(f"(point {total} of {total})")
    expect(page.locator("#track-play")).to_have_attribute("aria-pressed", "false")
    phone.shot("family-1b-track", top="#map")
    sim.stop()


def click_map(phone: Phone, dx: float, dy: float) -> None:
    """A tap on the map, dx/dy pixels from its centre."""
    box = phone.page.locator("#map").bounding_box()
    assert box is not None
    phone.page.locator("#map").click(position={"x": box["width"] / 2 + dx,
                                               "y": box["height"] / 2 + dy})  # fmt: skip


def fences_of(stack: Stack, wearer: str) -> dict[str, dict]:
    rows = stack.rows(
        "SELECT name, feature FROM fences WHERE wearer_id = %s AND deleted_at IS NULL", wearer
    )
    return {name: feature for name, feature in rows}


def test_fences_are_drawn_on_the_map_and_an_invalid_one_shows_the_reason_in_words(
    family: Family, phone: Phone
) -> None:
    s, page = family.stack, phone.page
    log_in(phone, s.url, "/", family.guardian, PASSWORD)
    expect(page.locator("#fence-list")).to_contain_text("No areas yet")
    # A polygon: four taps, a name, save.
    page.get_by_role("button", name="Draw an area").click()
    for dx, dy in ((-90, -70), (90, -70), (90, 70), (-90, 70)):
        click_map(phone, dx, dy)
    expect(page.locator("#draw-hint")).to_contain_text("4 so far")
    page.get_by_label("Name").fill("Garden walk")
    phone.shot("family-2-drawing-polygon", top="#map")
    page.get_by_role("button", name="Save area").click()
    expect(page.locator("#fence-list")).to_contain_text("Garden walk")
    polygon = fences_of(s, WALKER)["Garden walk"]
    assert polygon["geometry"]["type"] == "Polygon"
    assert len(polygon["geometry"]["coordinates"][0]) == 5  # four corners, closed
    assert polygon["properties"]["kind"] == "safe"
    # A circle: tap the centre, set the radius.
    page.get_by_role("button", name="Draw a circle").click()
    click_map(phone, -40, 100)
    page.get_by_label("Radius in metres").fill("120")
    page.get_by_label("Name").fill("Clinic")
    page.get_by_role("button", name="Save area").click()
    expect(page.locator("#fence-list")).to_contain_text("circle, 120 m")
    circle = fences_of(s, WALKER)["Clinic"]
    assert circle["geometry"]["type"] == "Point" and circle["properties"]["radius_m"] == 120
    # Changed: a smaller radius, through PUT.
    page.locator(f'[data-fence-id="{circle["id"]}"]').get_by_role("button", name="Change").click()
    page.get_by_label("Radius in metres").fill("90")
    page.get_by_role("button", name="Save area").click()
    expect(page.locator("#fence-list")).to_contain_text("circle, 90 m")
    assert fences_of(s, WALKER)["Clinic"]["properties"]["radius_m"] == 90
    # A bow tie crosses itself: the API refuses it and the page says why, in words.
    phone.problems.allow_status(422)
    page.get_by_role("button", name="Draw an area").click()
    for dx, dy in ((-90, -70), (90, 70), (90, -70), (-90, 70)):
        click_map(phone, dx, dy)
    page.get_by_label("Name").fill("Bow tie")
    page.get_by_role("button", name="Save area").click()
    problems = page.locator("#fence-problems")
    expect(problems).to_contain_text("The area was not saved")
    expect(problems).to_contain_text(re.compile(r'"Bow tie"\): self-intersection at'))
    assert "Bow tie" not in fences_of(s, WALKER)
    phone.shot("family-3-fence-refused")
    page.get_by_role("button", name="Cancel").click()
    # Deleted: two taps (the second confirms).
    row = page.locator(f'[data-fence-id="{circle["id"]}"]')
    row.get_by_role("button", name="Delete").click()
    row.get_by_role("button", name="Tap again to delete").click()
    expect(page.locator("#fence-list")).not_to_contain_text("Clinic")
    assert set(fences_of(s, WALKER)) == {"Garden walk"}


def test_walking_out_of_the_safe_area_raises_the_banner_live_and_acknowledging_stops_escalation(
    family: Family, phone: Phone
) -> None:
    s, page = family.stack, phone.page
    log_in(phone, s.url, "/", family.guardian, PASSWORD)
    expect(page.locator("#feed-state")).to_have_text("connected")
    expect(page.locator("#alert-banner")).to_be_hidden()
    # Seven simulated minutes in about 7 s: at home (inside "home", 200 m) for a minute, then
    # due east; the exit comes about 220 m out.
    s.sim("wander", "--devices", "1", "--first-index", "2", "--demo-homes", "--rate", "0.5",
          "--clock-start-ago", "420", "--clock-speed", "60", "--wander", "2@60:90",
          "--duration", "40")  # fmt: skip
    banner = page.locator("#alert-banner")
    expect(banner).to_be_visible(timeout=40_000)
    expect(banner).to_contain_text("left “home”")
    expect(banner).to_contain_text("High")
    alert_id, opened_at = s.rows(
        "SELECT alert_id, opened_at FROM alerts WHERE wearer_id = %s AND kind = 'fence_exit'",
        WANDERER,
    )[0]
    assert banner.get_attribute("data-alert-id") == str(alert_id)
    expect(page.locator("#live-region")).to_contain_text("left “home”")
    phone.shot("family-4-alert-banner")
    page.get_by_role("button", name="Acknowledge").click()
    expect(banner).to_be_hidden()
    status, by = s.rows("SELECT status, acknowledged_by FROM alerts WHERE alert_id = %s",
                        alert_id)[0]  # fmt: skip
    assert (status, by) == ("acknowledged", family.guardian_contact)
    # Tier 2 would have been told ACK_S after the alert opened: wait past that, and see that
    # nobody was.
    deadline = opened_at.timestamp() + ACK_S + 3
    time.sleep(max(0.0, deadline - time.time()))
    assert s.rows("SELECT action FROM alert_log WHERE alert_id = %s ORDER BY log_id", alert_id)[
        -1
    ] == ("acknowledged",)
    assert s.one("SELECT count(*) FROM alert_log WHERE alert_id = %s AND action = 'escalated'",
                 alert_id) == 0  # fmt: skip
    assert s.one("SELECT count(*) FROM outbox WHERE alert_id = %s AND tier >= 2", alert_id) == 0
    assert s.one("SELECT tier FROM alerts WHERE alert_id = %s", alert_id) == 1
    expect(page.locator("#alert-list")).to_contain_text("Acknowledged")


def test_the_guardian_locates_sets_speed_dial_asks_for_listen_in_and_sees_who_looked(
    family: Family, phone: Phone
) -> None:
    s, page = family.stack, phone.page
    log_in(phone, s.url, "/", family.guardian, PASSWORD)
    page.get_by_role("button", name="Locate now").click()
    expect(page.locator("#locate-status")).to_contain_text(re.compile("Sent|Waiting"))
    assert s.one("SELECT count(*) FROM commands WHERE wearer_id = %s AND kind = 'locate'",
                 WALKER) == 1  # fmt: skip
    # Speed-dial: a wrong number is refused in words; right ones are sent.
    phone.problems.allow_status(422)
    numbers = page.locator(".speed-dial-number")
    numbers.nth(0).fill("13800138000")
    page.get_by_role("button", name="Send to the watch").click()
    expect(page.locator("#speed-dial-status")).to_contain_text("is not a phone number in E.164")
    numbers.nth(0).fill("+8613800138000")
    numbers.nth(1).fill("+8613900139000")
    page.get_by_role("button", name="Send to the watch").click()
    expect(page.locator("#speed-dial-status")).to_contain_text("Numbers accepted")
    payload = s.one("SELECT payload FROM commands WHERE kind = 'speed_dial'")
    assert payload == {"numbers": ["+8613800138000", "+8613900139000"]}
    # Listen-in: impossible until the wearer's consent is recorded.
    expect(page.locator("#consent-state")).to_contain_text("No consent recorded")
    expect(page.get_by_role("button", name="Call me back")).to_be_disabled()
    page.get_by_label("How and when did the wearer agree?").fill("Asked in person, 1 May")
    page.get_by_role("button", name="Record consent").click()
    expect(page.locator("#consent-state")).to_contain_text("Consent recorded")
    page.get_by_label("Call back this phone").fill("+8613800138000")
    page.get_by_role("button", name="Call me back").click()
    expect(page.locator("#listen-in-status")).to_contain_text("Listen-in requested")
    # Who looked: this person's own reads, the listen-in among them.
    audit = page.locator("#audit-list")
    expect(audit).to_contain_text("Wang Ming")
    expect(audit).to_contain_text("listen-in")
    expect(audit).to_contain_text("current location")
    phone.shot("family-5-watch", top="#watch-h")
    phone.shot("family-6-audit", top="#audit-h")


@pytest.fixture
def chinese_phone(browser) -> Iterator[Phone]:  # type: ignore[no-untyped-def]
    yield from open_phone(browser, locale="zh-CN")


def test_a_family_member_who_is_not_guardian_sees_why_and_a_phone_without_sound_gets_the_banner(
    family: Family, chinese_phone: Phone
) -> None:
    s, page = family.stack, chinese_phone.page
    # This phone refuses to make sound: the banner must come all the same, and nothing throws.
    page.add_init_script("window.AudioContext = function () { throw new Error('no audio'); }")
    page.goto(s.url + "/")
    expect(page.locator("#login-form button[type=submit]")).to_have_text("登录")
    log_in(chinese_phone, s.url, "/", family.relative, PASSWORD)
    expect(page.locator("#speed-dial-note")).to_have_text("只有监护人可以查看和修改此项。")
    expect(page.locator("#audit-note")).to_be_visible()
    expect(page.locator("#speed-dial-form")).to_be_hidden()
    expect(page.locator("#listen-in-box")).to_be_hidden()
    expect(page.get_by_role("button", name="画一个区域")).to_be_visible()  # family may draw
    chinese_phone.shot("family-7-relative-zh")
    page.locator("#lang-toggle").click()
    expect(page.locator("#speed-dial-note")).to_have_text(
        "Only the wearer's guardian can see and change this."
    )
    page.reload()  # still logged in (sessionStorage), still in English (localStorage)
    expect(page.locator("#app-view")).to_be_visible()
    expect(page.locator("#speed-dial-note")).to_have_text(
        "Only the wearer's guardian can see and change this."
    )
    assert page.evaluate("document.documentElement.lang") == "en"
    press_sos(s.db_url, "w00001", 1, mode="silent")
    banner = page.locator("#alert-banner")
    expect(banner).to_contain_text("Silent SOS")
    expect(banner).to_contain_text("Do NOT call the watch")
    page.get_by_role("button", name="Acknowledge").click()
    expect(banner).to_be_hidden()


def test_the_app_is_served_by_the_api_itself_with_leaflet_from_the_package(
    family: Family,
) -> None:
    url = family.stack.url
    page = httpx.get(url + "/")
    assert page.status_code == 200 and 'data-page="family"' in page.text
    csp = page.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "connect-src 'self'" in csp
    assert page.headers["referrer-policy"] == "no-referrer"
    assert 'data-page="care"' in httpx.get(url + "/care").text
    assert httpx.get(url + "/app-config.json").json() == {"map_tile_url": ""}
    leaflet_js = httpx.get(url + "/static/leaflet/leaflet.js")
    assert leaflet_js.status_code == 200 and "Leaflet 1.9.3" in leaflet_js.text
    assert httpx.get(url + "/static/leaflet/images/marker-icon.png").status_code == 200
    assert httpx.get(url + "/static/app.js").status_code == 200
    for sneaky in (
        "/static/..%2froutes.py",
        "/static/%2e%2e/routes.py",
        "/static/leaflet/..%2f..%2f__init__.py",
    ):
        assert httpx.get(url + sneaky).status_code == 404, sneaky
    assert "/" not in httpx.get(url + "/openapi.json").json()["paths"]


def test_a_tile_server_is_allowed_by_the_page_only_when_configured() -> None:
    assert tile_source("") == ""
    assert (
        tile_source("https://{s}.tile.example.org/{z}/{x}/{y}.png") == "https://*.tile.example.org"
    )
    assert tile_source("http://tiles.local:8080/{z}/{x}/{y}.png") == "http://tiles.local:8080"
    assert "img-src 'self' data:;" in page_headers("")["Content-Security-Policy"]


STATIC = Path(__file__).resolve().parents[2] / "services" / "web" / "static"


def test_every_text_the_pages_use_exists_in_english_and_chinese() -> None:
    en = json.loads((STATIC / "i18n" / "en.json").read_text())
    zh = json.loads((STATIC / "i18n" / "zh-CN.json").read_text())
    assert set(en) == set(zh)
    used: set[str] = set()
    for path in [*STATIC.glob("*.js"), *STATIC.glob("js/*.js")]:
        used |= set(re.findall(r'\bt\("([\w.]+)"', path.read_text()))
    for path in STATIC.glob("*.html"):
        used |= set(re.findall(r'data-i18n(?:-label|-placeholder)?="([\w.]+)"', path.read_text()))
    # Keys the code builds from API values: every value the API can send needs its words.
    for kind in get_args(KindLabel):
        used |= {f"kind.{kind}", f"alert.title.{kind}", f"alert.advice.{kind}"}
    used |= {f"severity.{s}" for s in get_args(SeverityLabel)}
    used |= {f"command.{s}" for s in get_args(CommandStatus)}
    used |= {f"status.{s}" for s in get_args(StatusLabel)}
    assert sorted(used - set(en)) == []
    for key, text in en.items():  # the same {placeholders} in both languages
        assert set(re.findall(r"\{\w+\}", text)) == set(re.findall(r"\{\w+\}", zh[key])), key
