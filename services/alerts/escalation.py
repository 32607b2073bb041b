"""Escalation and quiet hours: who is told about an alert, and when the next people are.

A wearer has ordered tiers of contacts (e.g. primary guardian → all family → caregiver on
duty). Tier 1 is told when the alert opens. When nobody has acknowledged within the tier's
time, the next tier is told, and so on; an acknowledgement by anyone stops it. Only critical
and high alerts escalate: a low battery should not wake the caregiver on duty.

Pure: the notifier calls ``escalation_due`` on its timer and writes what it returns.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

from services.alerts.model import Severity

ACK_CRITICAL_S = 120
ACK_HIGH_S = 900


@dataclass(frozen=True, slots=True)
class Tier:
    contact_ids: tuple[int, ...]
    ack_critical_s: int = ACK_CRITICAL_S
    ack_high_s: int = ACK_HIGH_S


@dataclass(frozen=True, slots=True)
class Step:
    """Tell ``contact_ids`` (tier ``tier``, 1-based); escalate again at ``next_at`` (None: this
    was the last tier, or the alert does not escalate)."""

    tier: int
    contact_ids: tuple[int, ...]
    next_at: datetime | None


def ack_window_s(tier: Tier, severity: Severity) -> int | None:
    """How long a tier has to acknowledge before the next is told; None: no escalation."""
    if severity is Severity.CRITICAL:
        return tier.ack_critical_s
    if severity is Severity.HIGH:
        return tier.ack_high_s
    return None


def tiers_or_default(tiers: Sequence[Tier], caring: Sequence[int]) -> list[Tier]:
    """A wearer without configured tiers still has people: everyone who cares for them, as
    one tier. Empty tiers are skipped, so nobody is ever "told" by telling no one."""
    configured = [t for t in tiers if t.contact_ids]
    if configured:
        return configured
    return [Tier(tuple(sorted(set(caring))))] if caring else []


def _step(tiers: Sequence[Tier], tier: int, severity: Severity, now: datetime) -> Step:
    window = ack_window_s(tiers[tier - 1], severity)
    has_next = tier < len(tiers)
    next_at = now + timedelta(seconds=window) if window is not None and has_next else None
    return Step(tier, tiers[tier - 1].contact_ids, next_at)


def first_step(tiers: Sequence[Tier], severity: Severity, now: datetime) -> Step | None:
    """Who is told when an alert opens (None: the wearer has nobody configured)."""
    if not tiers:
        return None
    return _step(tiers, 1, severity, now)


def escalation_due(
    tiers: Sequence[Tier], current_tier: int, severity: Severity, now: datetime
) -> Step | None:
    """The next tier for an unacknowledged alert whose time has come (None: no tier left)."""
    if current_tier >= len(tiers) or ack_window_s(tiers[0], severity) is None:
        return None
    return _step(tiers, current_tier + 1, severity, now)


@dataclass(frozen=True, slots=True)
class QuietHours:
    """A contact's local night, e.g. 22:00–07:00 (``start > end`` spans midnight)."""

    start: time
    end: time

    def contains(self, local: time) -> bool:
        if self.start <= self.end:
            return self.start <= local < self.end
        return local >= self.start or local < self.end


def deliver_not_before(
    severity: Severity, quiet: QuietHours | None, tz: str, now: datetime
) -> datetime:
    """When a notification to this contact may go out. Quiet hours hold back low and medium
    alerts until they end; they never silence a high or critical one."""
    if quiet is None or severity >= Severity.HIGH:
        return now
    zone = ZoneInfo(tz)
    local = now.astimezone(zone)
    if not quiet.contains(local.time().replace(tzinfo=None)):
        return now
    # fold: in the hour the clocks go back, the end is the pass of the hour ``local`` is in
    end = datetime.combine(local.date(), quiet.end, tzinfo=zone).replace(fold=local.fold)
    if end <= local:
        end += timedelta(days=1)
    # On the day the clocks go forward the end may not exist (01:30 when 01:00–02:00 is
    # skipped): the instant it maps to can fall in the next window already — then the first
    # quiet-free moment is tomorrow's end. (Through UTC: ``astimezone`` to the zone a time
    # already has returns it as it is, skipped hour and all.)
    if quiet.contains(end.astimezone(UTC).astimezone(zone).time().replace(tzinfo=None)):
        end = datetime.combine(end.date() + timedelta(days=1), quiet.end, tzinfo=zone)
    return end.astimezone(now.tzinfo)
