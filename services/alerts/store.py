"""Writing alerts (sync psycopg): open or join, clear, escalate — with their outbox rows, log
and feed rows in the caller's transaction.

The ingestor opens alerts in the transaction that stores the event; the notifier escalates and
detects silence in its own. Both go through ``AlertWrites`` so that an alert never exists
without the notifications it owes (the outbox rows commit with it) and without its feed row.

Lock order, to keep replicas from deadlocking: alert rows in key order first, the feed's
advisory lock last (``finish``). The API's acknowledge/resolve follow the same order.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

import psycopg
from psycopg.types.json import Jsonb

from services.alerts import sql
from services.alerts.escalation import (
    QuietHours,
    Step,
    Tier,
    deliver_not_before,
    escalation_due,
    first_step,
    tiers_or_default,
)
from services.alerts.model import Clear, Severity, Trigger

log = logging.getLogger(__name__)


def load_tiers(conn: psycopg.Connection, wearer_id: str) -> list[Tier]:
    tiers = [
        Tier(tuple(ids), critical_s, high_s)
        for _, ids, critical_s, high_s in conn.execute(sql.TIERS, (wearer_id,))
    ]
    caring = [r[0] for r in conn.execute(sql.CARING, (wearer_id,))]
    return tiers_or_default(tiers, caring)


@dataclass
class AlertWrites:
    """The alert changes of one transaction. Call ``finish()`` before the commit."""

    conn: psycopg.Connection
    now: datetime
    feed: list[tuple[int, str]] = field(default_factory=list)
    enqueued: int = 0
    opened: int = 0

    def raise_all(self, triggers: Iterable[Trigger]) -> None:
        for trigger in sorted(triggers, key=lambda t: (t.device_id, t.kind, t.fence_id or "")):
            self.raise_alert(trigger)

    def raise_alert(self, trigger: Trigger) -> int:
        where = trigger.where
        loc = where.location if where else None
        row = self.conn.execute(
            sql.RAISE,
            {
                "device_id": trigger.device_id,
                "wearer_id": trigger.wearer_id,
                "kind": trigger.kind.value,
                "severity": int(trigger.severity),
                "fence_id": trigger.fence_id,
                "t": trigger.t,
                "lat": loc.lat if loc else None,
                "lon": loc.lon if loc else None,
                "acc": loc.acc if loc else None,
                "fix_t": loc.t if loc else None,
                "location_source": where.source.value if where else None,
                "fix_problem": where.fix_problem if where else None,
                "battery": trigger.detail.get("battery"),
                "detail": Jsonb(trigger.detail),
            },
        ).fetchone()
        assert row is not None
        alert_id, opened, severity, tier, status, before = row
        if trigger.event_id is not None:
            self.conn.execute(sql.LINK_EVENT, (alert_id, trigger.event_id))
        if opened:
            self.opened += 1
            self._log(alert_id, "opened", detail={"kind": trigger.kind.value})
            step = first_step(
                load_tiers(self.conn, trigger.wearer_id), Severity(severity), self.now
            )
            if step is not None:
                self._tell(alert_id, step, Severity(severity), "opened")
            self.feed.append((alert_id, "alert.opened"))
            return alert_id
        raised = before is not None and severity > before
        self._log(alert_id, "severity_raised" if raised else "joined")
        if raised and status == "open":
            tiers = load_tiers(self.conn, trigger.wearer_id)
            if tiers:
                again = Step(max(tier, 1), tiers[max(tier, 1) - 1].contact_ids, None)
                self._enqueue(alert_id, again, Severity(severity), f"raised-{severity}")
        self.feed.append((alert_id, "alert.updated"))
        return alert_id

    def clear(self, clear: Clear) -> list[int]:
        """Resolve the open non-critical alert of this key, if there is one."""
        ids = [
            r[0]
            for r in self.conn.execute(
                sql.AUTO_RESOLVE,
                {
                    "device_id": clear.device_id,
                    "kind": clear.kind.value,
                    "fence_id": clear.fence_id,
                },
            )
        ]
        for alert_id in ids:
            if clear.event_id is not None:
                self.conn.execute(sql.LINK_EVENT, (alert_id, clear.event_id))
            self._log(alert_id, "auto_resolved", detail={"reason": clear.reason})
            self.feed.append((alert_id, "alert.resolved"))
        return ids

    def escalate_due(self, limit: int = 50) -> int:
        """Tell the next tier about every open alert whose tier did not acknowledge in time.
        Rows are locked with SKIP LOCKED: two notifiers never escalate one alert twice."""
        due = self.conn.execute(
            "SELECT alert_id, wearer_id, severity, tier FROM alerts"
            " WHERE next_escalation_at <= %s AND status = 'open'"
            " ORDER BY next_escalation_at LIMIT %s FOR UPDATE SKIP LOCKED",
            (self.now, limit),
        ).fetchall()
        for alert_id, wearer_id, severity, tier in due:
            step = escalation_due(
                load_tiers(self.conn, wearer_id), tier, Severity(severity), self.now
            )
            if step is None:
                self.conn.execute(sql.SET_TIER, (tier, None, alert_id))
                continue
            self._tell(alert_id, step, Severity(severity), "escalated")
            self.feed.append((alert_id, "alert.escalated"))
        return len(due)

    def finish(self) -> None:
        """The feed rows (under the feed lock, so ids become visible in order) and a wake-up
        for the notifier. NOTIFY is delivered at commit, never for a rolled-back alert."""
        if self.feed:
            self.conn.execute(sql.LOCK_FEED, (sql.FEED_LOCK,))
            for alert_id, kind in self.feed:
                row = self.conn.execute(sql.APPEND_FEED, {"type": kind, "alert_id": alert_id})
                feed_id = row.fetchone()
                if feed_id is not None:
                    self.conn.execute(sql.NOTIFY_FEED, (feed_id[0],))
            self.feed.clear()
        if self.enqueued:
            self.conn.execute(sql.NOTIFY_OUTBOX)
            self.enqueued = 0

    def _tell(self, alert_id: int, step: Step, severity: Severity, reason: str) -> None:
        channels = self._enqueue(alert_id, step, severity, reason)
        self.conn.execute(sql.SET_TIER, (step.tier, step.next_at, alert_id))
        self._log(
            alert_id,
            "notified" if reason == "opened" else reason,
            tier=step.tier,
            detail={"contacts": list(step.contact_ids), "channels": channels},
        )

    def _enqueue(self, alert_id: int, step: Step, severity: Severity, reason: str) -> int:
        rows = self.conn.execute(sql.CONTACT_CHANNELS, (list(step.contact_ids),)).fetchall()
        for contact_id, tz, quiet_start, quiet_end, channel_id, kind in rows:
            quiet = QuietHours(quiet_start, quiet_end) if quiet_start is not None else None
            self.conn.execute(
                sql.ENQUEUE,
                {
                    "alert_id": alert_id,
                    "contact_id": contact_id,
                    "channel_id": channel_id,
                    "channel": kind,
                    "reason": reason,
                    "tier": step.tier,
                    "key": f"alert-{alert_id}-{reason}-t{step.tier}-ch{channel_id}",
                    "not_before": deliver_not_before(severity, quiet, tz, self.now),
                },
            )
        self.enqueued += len(rows)
        return len(rows)

    def _log(
        self,
        alert_id: int,
        action: str,
        *,
        contact_id: int | None = None,
        tier: int | None = None,
        detail: dict | None = None,
    ) -> None:
        self.conn.execute(
            sql.LOG,
            {
                "alert_id": alert_id,
                "action": action,
                "contact_id": contact_id,
                "tier": tier,
                "detail": Jsonb(detail or {}),
            },
        )
