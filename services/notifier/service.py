"""The notifier: outbox → channels, escalation timers, offline detection.

One loop per replica, any number of replicas (they share work through SKIP LOCKED):
    1. escalate   open alerts whose tier did not acknowledge in time → next tier's outbox rows
    2. offline    every ``offline_scan_s``: silent devices → offline alerts; heard again → clear
    3. deliver    claim due outbox rows (lease), send them concurrently, record each attempt
    4. wait       for NOTIFY anxin_outbox, or ``notifier_poll_s`` at most (the safety net)
A lost NOTIFY costs at most one poll interval; a dead replica's claims come back when their
lease runs out. Nothing here holds state that the database does not.
With ANXIN_MQTT_URL set, a thread beside the loop sends the commands queued for watches
(services/commands/dispatcher.py).
"""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime

import psycopg

from services.alerts import sql
from services.alerts.messages import render
from services.alerts.store import AlertWrites
from services.commands.dispatcher import start_dispatcher
from services.notifier.channels.base import Channel, Delivery, Outcome
from services.notifier.channels.email import EmailChannel
from services.notifier.channels.webhook import WebhookChannel
from services.notifier.channels.webpush import WebPushChannel
from services.notifier.offline import scan_offline
from services.notifier.outbox import Claimed, claim_due, record
from services.notifier.policy import Next, after_attempt
from services.settings import Settings

log = logging.getLogger("anxin.notifier")

CLAIM_LIMIT = 32


def channels_from_settings(settings: Settings) -> dict[str, Channel]:
    """The channels this deployment can use; one that is not configured is left out, and its
    deliveries are given up with a reason rather than retried forever."""
    timeout = settings.http_timeout_s
    channels: dict[str, Channel] = {"webhook": WebhookChannel(timeout)}
    vapid = settings.vapid_private_key
    channels["webpush"] = WebPushChannel(
        vapid.get_secret_value() if vapid else None, settings.vapid_subject, timeout
    )
    if settings.smtp_host:
        password = settings.smtp_password
        channels["email"] = EmailChannel(
            settings.smtp_host,
            settings.smtp_port,
            settings.smtp_sender,
            settings.smtp_user,
            password.get_secret_value() if password else None,
            settings.smtp_starttls,
            timeout,
        )
    return channels


@dataclass
class NotifierCounters:
    delivered: int = 0
    retried: int = 0
    gave_up: int = 0
    escalated: int = 0
    offline_opened: int = 0
    offline_cleared: int = 0


class Notifier:
    def __init__(self, settings: Settings, channels: dict[str, Channel] | None = None) -> None:
        if not settings.database_url:
            raise ValueError("the notifier needs ANXIN_DATABASE_URL")
        self.settings = settings
        self.channels = channels if channels is not None else channels_from_settings(settings)
        self.counters = NotifierCounters()
        self._pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="deliver")

    def run(self, stop: threading.Event) -> None:
        s = self.settings
        commands = start_dispatcher(s, stop)  # downlink commands, when a broker is configured
        next_offline = 0.0
        delay = 0.5
        while not stop.is_set():
            try:
                with (
                    psycopg.connect(s.database_url, autocommit=True) as conn,
                    psycopg.connect(s.database_url, autocommit=True) as listener,
                ):
                    listener.execute(f"LISTEN {sql.OUTBOX_CHANNEL}")
                    log.info("notifier running")
                    delay = 0.5
                    while not stop.is_set():
                        self.escalate(conn)
                        if time.monotonic() >= next_offline:
                            self.offline(conn)
                            next_offline = time.monotonic() + s.offline_scan_s
                        if self.deliver_due(conn) >= CLAIM_LIMIT:
                            continue  # more is due: no waiting
                        for _ in listener.notifies(timeout=s.notifier_poll_s, stop_after=1):
                            pass
            except psycopg.OperationalError as err:
                log.warning("database unavailable (%s); retrying in %.1f s", err, delay)
                stop.wait(delay)
                delay = min(delay * 2, 10.0)
        self._pool.shutdown(wait=True)
        if commands is not None:
            commands.join(10)
        log.info("stopped: %s", self.counters)

    def escalate(self, conn: psycopg.Connection) -> int:
        with conn.transaction():
            writes = AlertWrites(conn, datetime.now(UTC))
            n = writes.escalate_due()
            writes.finish()
        self.counters.escalated += n
        return n

    def offline(self, conn: psycopg.Connection) -> None:
        opened, cleared = scan_offline(conn, datetime.now(UTC), self.settings.offline_after_s)
        self.counters.offline_opened += opened
        self.counters.offline_cleared += cleared

    def deliver_due(self, conn: psycopg.Connection) -> int:
        """Claim due notifications and deliver them concurrently; returns how many."""
        claimed = claim_due(conn, CLAIM_LIMIT, self.settings.notifier_lease_s)
        if not claimed:
            return 0
        outcomes = list(self._pool.map(self._send, claimed))
        now = datetime.now(UTC)
        for c, outcome in zip(claimed, outcomes, strict=True):
            after = after_attempt(
                outcome,
                c.attempt,
                max_attempts=self.settings.notifier_max_attempts,
                base_s=self.settings.notifier_retry_base_s,
            )
            record(conn, c, outcome, after, now)
            if after.next is Next.DELIVERED:
                self.counters.delivered += 1
            elif after.next is Next.RETRY:
                self.counters.retried += 1
            else:
                self.counters.gave_up += 1
                log.warning(
                    "gave up delivering alert %s to contact %s by %s after %d attempts: %s",
                    c.alert_id, c.contact_id, c.to.kind, c.attempt, outcome.detail,
                )  # fmt: skip
        return len(claimed)

    def _send(self, c: Claimed) -> Outcome:
        channel = self.channels.get(c.to.kind)
        if channel is None:
            return Outcome(False, f"no {c.to.kind} channel is configured", permanent=True)
        message = render(c.alert, c.language, c.tz, datetime.now(UTC), self.settings.public_url)
        delivery = Delivery(
            c.outbox_id, c.idempotency_key, c.attempt, c.to, c.contact_name, message, c.alert
        )
        try:
            return channel.send(delivery)
        except Exception as err:  # a channel must not take the loop down with it
            log.exception("channel %s raised", c.to.kind)
            return Outcome(False, f"{type(err).__name__}: {err}")
