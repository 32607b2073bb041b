"""The caregiver page (/care) in a phone-sized Chromium against the real stack: a silent SOS
pressed on a simulated watch arrives live (no reload), counted and ordered by severity; the
caregiver filters, acknowledges, and resolves it with the note the page insists on."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import psycopg
import pytest
from playwright.sync_api import expect

from services.storage.provisioning import seed_demo
from tests.browser.conftest import Phone, Stack, log_in, start_stack
from tests.support.alerting import press_sos
from tests.support.broker import MosquittoProcess
from tests.support.people import PASSWORD, grant_care, make_org, make_user
from tests.support.stack import wait_for

SOS_WEARER = "wearer-w00003"


@dataclass
class Centre:
    stack: Stack
    carer: str  # e-mail
    carer_contact: int


@pytest.fixture(scope="module")
def centre(
    tmp_path_factory: pytest.TempPathFactory, module_broker: MosquittoProcess, module_db: str
) -> Iterator[Centre]:
    """A care centre whose caregiver Carol was granted three wearers."""
    with psycopg.connect(module_db) as conn:
        seed_demo(conn, 3)
    org = make_org(module_db, "Sunshine care centre")
    carol = make_user(module_db, "Carol Chen", role="caregiver", org_id=org)
    for i in (1, 2, 3):
        grant_care(module_db, f"wearer-w0000{i}", org)
    stack_gen = start_stack(tmp_path_factory.mktemp("care"), module_broker, module_db)
    stack = next(stack_gen)
    try:
        yield Centre(stack, stack.email(carol), stack.contact(carol))
    finally:
        stack_gen.close()


def count(phone: Phone, severity: str | None = None) -> str | None:
    where = f'[data-severity="{severity}"]' if severity else "#count-total"
    return phone.page.locator(where).get_attribute("data-count")


def test_a_silent_sos_reaches_the_caregiver_live_and_is_resolved_with_a_note(
    centre: Centre, phone: Phone
) -> None:
    s, page = centre.stack, phone.page
    press_sos(s.db_url, "w00001", 1)  # an older, audible SOS already open
    log_in(phone, s.url, "/care", centre.carer, PASSWORD)
    expect(page.locator("#feed-state")).to_have_text("connected")
    expect(page.locator("#count-total")).to_have_text("1 open alert(s)")
    # The watch of wearer 3 presses a silent SOS: it arrives without a reload.
    sim = s.sim("sos", "--devices", "1", "--first-index", "3", "--rate", "2", "--fixes", "6",
                "--press", "3:sos:silent@1")  # fmt: skip
    cards = page.locator(".alert-card")
    expect(cards).to_have_count(2, timeout=20_000)
    assert sim.wait(60) == 0, sim.log()[-2000:]
    expect(page.locator("#count-total")).to_have_text("2 open alert(s)")
    assert count(phone, "critical") == "2"
    expect(page.locator("#live-region")).to_contain_text("New alert: Critical, Silent SOS")
    # Most severe first, then oldest: both critical, the audible one is older.
    expect(cards.nth(0)).to_contain_text("SOS: ")
    expect(cards.nth(1)).to_contain_text("Silent SOS")
    expect(cards.nth(1)).to_contain_text("Do NOT call the watch")
    phone.shot("care-1-live-sos", top="#app-view")
    # Filters: by kind, then by wearer.
    page.get_by_label("Kind of alert").select_option("sos_silent")
    expect(cards).to_have_count(1)
    expect(page.locator("#count-total")).to_have_text("1 open alert(s)")
    page.get_by_label("Kind of alert").select_option("")
    page.get_by_label("Person").select_option(SOS_WEARER)
    expect(cards).to_have_count(1)
    silent = page.locator('.alert-card[data-kind="sos_silent"]')
    # Acknowledge, then resolve: not without a note.
    silent.get_by_role("button", name="Acknowledge").click()
    expect(silent).to_have_attribute("data-status", "acknowledged")
    expect(silent).to_contain_text("Acknowledged just now")
    silent.get_by_role("button", name="Resolve").click()
    expect(silent.get_by_role("alert")).to_have_text(
        "Write a note that says what happened before resolving."
    )
    silent.get_by_label("What happened?").fill("Went round: she had pressed it by mistake.")
    phone.shot("care-2-resolving")
    silent.get_by_role("button", name="Resolve").click()
    expect(cards).to_have_count(0)
    expect(page.locator("#care-list")).to_contain_text("Nothing open")
    page.get_by_label("Person").select_option("")
    expect(page.locator("#count-total")).to_have_text("1 open alert(s)")
    assert count(phone, "critical") == "1"
    status, note, by = s.rows(
        "SELECT status, resolution_note, resolved_by FROM alerts WHERE kind = 'sos_silent'"
    )[0]
    assert (status, note, by) == (
        "resolved", "Went round: she had pressed it by mistake.", centre.carer_contact,
    )  # fmt: skip
    phone.shot("care-3-after-resolve")


def test_the_care_page_switches_to_chinese_and_keeps_the_choice(
    centre: Centre, phone: Phone
) -> None:
    s, page = centre.stack, phone.page
    log_in(phone, s.url, "/care", centre.carer, PASSWORD)
    page.locator("#lang-toggle").click()
    expect(page.get_by_label("警报类型")).to_be_visible()
    expect(page.locator("#count-total")).to_contain_text("条未解决的警报")
    phone.shot("care-4-zh")
    page.reload()
    expect(page.locator("#count-total")).to_contain_text("条未解决的警报")


def test_the_token_is_refreshed_before_it_expires_and_a_dead_session_returns_to_the_login(
    centre: Centre, phone: Phone
) -> None:
    s, page = centre.stack, phone.page
    log_in(phone, s.url, "/care", centre.carer, PASSWORD)
    first = page.evaluate("sessionStorage.getItem('anxin.refresh')")
    # About to expire: the next call refreshes first (rotating the refresh token).
    page.evaluate("sessionStorage.setItem('anxin.expiresAt', String(Date.now() + 2000))")
    page.get_by_label("Kind of alert").select_option("fall")
    wait_for(lambda: page.evaluate("sessionStorage.getItem('anxin.refresh')") != first, 10,
             "new tokens")  # fmt: skip
    assert s.one("SELECT count(*) FROM sessions WHERE spent_hash IS NOT NULL") == 1
    # A token the server refuses (401): refreshed and the call made again, unseen.
    phone.problems.allow_status(401)
    page.evaluate("sessionStorage.setItem('anxin.access', 'not-a-token')")
    page.get_by_label("Kind of alert").select_option("")
    expect(page.locator("#count-total")).to_have_text("1 open alert(s)")
    assert page.evaluate("sessionStorage.getItem('anxin.access')") != "not-a-token"
    # The session ended elsewhere (logged out on another device): back to the login form.
    with psycopg.connect(s.db_url) as conn:
        conn.execute("UPDATE sessions SET revoked_at = now()")
    page.get_by_label("Kind of alert").select_option("fall")
    expect(page.locator("#login-form")).to_be_visible()
    expect(page.locator("#app-view")).to_be_hidden()
    assert page.evaluate("sessionStorage.getItem('anxin.refresh')") is None
