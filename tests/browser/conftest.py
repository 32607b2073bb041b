"""The web app in a real browser (Playwright driving the machine's Chromium, headless) against
the real stack: ``anxin api`` (which serves the app), ``anxin ingest``, ``anxin notify`` (with
the command dispatcher) and ``anxin sim`` publishing through the test Mosquitto, all as
processes. One stack per test module; each test gets a fresh phone-sized browser context and
fails on any console error or uncaught exception in the page. Screenshots go to
``artifacts/screenshots/`` (git-ignored) for people to look at.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import pytest
from playwright.sync_api import Browser, ConsoleMessage, Page, sync_playwright

from tests.conftest import ADMIN_URL, RUN_ID
from tests.support.broker import MosquittoProcess
from tests.support.people import AUTH_SECRET
from tests.support.procs import ROOT, AnxinProcess, anxin_env, free_port
from tests.support.stack import api_up, start_ingestor, wait_for

CHROMIUM = Path(os.environ.get("ANXIN_TEST_CHROMIUM", "/usr/bin/chromium"))
SCREENSHOTS = ROOT / "artifacts" / "screenshots"
PHONE = {"width": 375, "height": 812}
OPERATOR = "browser-tests-operator"  # `anxin api` still insists on an operator token


@dataclass
class Stack:
    """API, ingestor and notifier over one database, and the test broker."""

    tmp: Path
    broker: MosquittoProcess
    db_url: str
    prefix: str
    url: str
    sims: list[AnxinProcess] = field(default_factory=list)

    def sim(self, name: str, *args: str) -> AnxinProcess:
        """``anxin sim ARGS`` through the test broker; stopped with the stack at the latest."""
        env = anxin_env(mqtt_url=self.broker.url, topic_prefix=self.prefix)
        summary = self.tmp / f"{name}.json"
        proc = AnxinProcess(
            ["sim", *args, "--seed", "7", "--summary", str(summary)], env, self.tmp / f"{name}.log"
        ).start()
        self.sims.append(proc)
        return proc

    def rows(self, sql: str, *params: object) -> list[tuple[Any, ...]]:
        with psycopg.connect(self.db_url) as conn:
            return conn.execute(sql, params).fetchall()  # type: ignore[arg-type]

    def one(self, sql: str, *params: object) -> Any:
        rows = self.rows(sql, *params)
        return rows[0][0] if rows else None

    def email(self, user_id: int) -> str:
        return str(self.one("SELECT email FROM users WHERE user_id = %s", user_id))

    def contact(self, user_id: int) -> int:
        return int(self.one("SELECT contact_id FROM contacts WHERE user_id = %s", user_id))


@pytest.fixture(scope="module")
def module_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MosquittoProcess]:
    """A Mosquitto of the module's own. The simulated watches keep persistent sessions named
    after their device ids, and the family's looks queue "viewed by" notices in them: on the
    run's shared broker those would reach the next test that simulates the same watch."""
    b = MosquittoProcess(tmp_path_factory.mktemp("mosquitto"))
    b.start()
    yield b
    b.stop()


@pytest.fixture(scope="module")
def module_db(template_db: str) -> Iterator[str]:
    """A fresh migrated database for the whole module (its stack outlives single tests)."""
    name = f"anxin_t_{RUN_ID}_web_{uuid.uuid4().hex[:6]}"
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template_db}"')
    yield f"{ADMIN_URL.rsplit('/', 1)[0]}/{name}"
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def start_stack(
    tmp: Path, broker: MosquittoProcess, db_url: str, **api_settings: str | int
) -> Iterator[Stack]:
    """Start the processes side by side (each takes a moment to import); stop them all,
    simulators included, whatever happens."""
    prefix = f"t{uuid.uuid4().hex[:10]}"
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    api = AnxinProcess(
        ["api"],
        anxin_env(database_url=db_url, auth_secret=AUTH_SECRET, api_token=OPERATOR,
                  api_port=port, **api_settings),
        tmp / "api.log",
    ).start()  # fmt: skip
    notifier = AnxinProcess(
        ["notify"],
        anxin_env(database_url=db_url, mqtt_url=broker.url, topic_prefix=prefix,
                  notifier_poll_s=0.2, offline_scan_s=5),
        tmp / "notifier.log",
    ).start()  # fmt: skip
    running = [api, notifier]
    stack = Stack(tmp, broker, db_url, prefix, url)

    try:
        running.append(start_ingestor(tmp, broker.url, db_url, prefix))
        wait_for(lambda: "notifier running" in notifier.log(), 20, "the notifier")
        wait_for(lambda: api_up(url), 20, "the API")
        yield stack
    finally:
        with ThreadPoolExecutor() as pool:
            list(pool.map(AnxinProcess.stop, [*stack.sims, *running]))


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    if not CHROMIUM.exists():
        pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install chromium; .ci/run does)")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        yield b
        b.close()


class PageProblems:
    """Console errors and uncaught exceptions of a page. A 4xx that the test provokes on
    purpose (a refused fence is a 422) is logged by Chromium as a failed resource: allowed
    only when the test says so."""

    def __init__(self, page: Page) -> None:
        self.seen: list[str] = []
        self.allowed_statuses: set[int] = set()
        page.on("console", self._console)
        page.on("pageerror", lambda exc: self.seen.append(f"uncaught: {exc}"))

    def _console(self, message: ConsoleMessage) -> None:
        if message.type == "error":
            self.seen.append(f"console: {message.text}")

    def allow_status(self, status: int) -> None:
        self.allowed_statuses.add(status)

    def unexpected(self) -> list[str]:
        allowed = [f"status of {s} " for s in self.allowed_statuses]
        return [
            m for m in self.seen
            if not (m.startswith("console: Failed to load resource")
                    and any(a in m for a in allowed))
        ]  # fmt: skip


@dataclass
class Phone:
    page: Page
    problems: PageProblems

    def shot(self, name: str, top: str | None = None) -> Path:
        """A screenshot of the screen as a person sees it; ``top``: scrolled so that this
        element is just below the sticky header."""
        if top:
            self.page.evaluate(
                "(sel) => window.scrollBy(0, document.querySelector(sel)"
                ".getBoundingClientRect().top - 70)",
                top,
            )
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        path = SCREENSHOTS / f"{name}.png"
        self.page.screenshot(path=str(path), full_page=False)
        return path

    def state(self, expression: str) -> Any:
        return self.page.evaluate(expression)


def open_phone(browser: Browser, locale: str = "en-GB") -> Iterator[Phone]:
    context = browser.new_context(
        viewport=PHONE, device_scale_factor=2, is_mobile=True, has_touch=True, locale=locale
    )
    page = context.new_page()
    page.set_default_timeout(15_000)
    phone = Phone(page, PageProblems(page))
    try:
        yield phone
    finally:
        context.close()
    assert phone.problems.unexpected() == [], json.dumps(phone.problems.seen, indent=1)


@pytest.fixture
def phone(browser: Browser) -> Iterator[Phone]:
    yield from open_phone(browser)


def log_in(phone: Phone, base_url: str, path: str, email: str, password: str) -> None:
    page = phone.page
    page.goto(base_url + path)
    page.locator("#login-email").fill(email)
    page.locator("#login-password").fill(password)
    page.locator("#login-form button[type=submit]").click()
    page.locator("#app-view").wait_for(state="visible")
