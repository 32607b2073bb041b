"""The words of the alert domain: kinds, severities, where an alert says the wearer is.

Plain values, no I/O: the rules (rules.py), escalation (escalation.py), the messages
(messages.py), the ingestor, the notifier and the API all speak them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import IntEnum, StrEnum
from typing import Any


class Severity(IntEnum):
    """Ordered: a higher value is more urgent, so ``max()`` raises and ``ORDER BY`` sorts."""

    LOW = 1
    MEDIUM = 2
    HIGH = 3
    CRITICAL = 4

    @property
    def label(self) -> str:
        return self.name.lower()

    @classmethod
    def from_label(cls, label: str) -> Severity:
        return cls[label.upper()]


class AlertKind(StrEnum):
    SOS_AUDIBLE = "sos_audible"
    SOS_SILENT = "sos_silent"
    FALL = "fall"
    REMOVED = "removed"  # watch taken off the wrist
    FENCE_EXIT = "fence_exit"  # left a safe fence
    FENCE_ENTER = "fence_enter"  # entered a no-go fence
    BATTERY = "battery"
    OFFLINE = "offline"


class AlertStatus(StrEnum):
    OPEN = "open"
    ACKNOWLEDGED = "acknowledged"
    RESOLVED = "resolved"


class LocationSource(StrEnum):
    """Where an alert's location comes from; the family sees the difference."""

    ALARM = "alarm"  # the fix the alarm carried
    FIX = "fix"  # the fix that caused the alert (a fence crossing)
    LAST_KNOWN = "last_known"  # the alarm's own fix was missing, invalid or too inaccurate


@dataclass(frozen=True, slots=True)
class Location:
    lat: float
    lon: float
    acc: float
    t: datetime  # device time of the fix


@dataclass(frozen=True, slots=True)
class AlertLocation:
    """The location an alert shows, and why that one ("last seen 12 min ago, 300 m")."""

    location: Location
    source: LocationSource
    fix_problem: str | None = None  # why the alarm's own fix was not used


@dataclass(frozen=True, slots=True)
class Trigger:
    """Something that should open an alert (or join the open one of its key)."""

    device_id: str
    wearer_id: str
    kind: AlertKind
    severity: Severity
    t: datetime
    fence_id: str | None = None
    where: AlertLocation | None = None
    detail: dict[str, Any] = field(default_factory=dict)
    event_id: int | None = None

    @property
    def key(self) -> tuple[str, AlertKind, str | None]:
        """One open alert per device, kind and fence."""
        return (self.device_id, self.kind, self.fence_id)


@dataclass(frozen=True, slots=True)
class Clear:
    """The condition behind an open alert of this key is gone (back inside, charging …).
    Applies only to alerts that may resolve themselves (see rules.self_resolving)."""

    device_id: str
    kind: AlertKind
    fence_id: str | None = None
    t: datetime | None = None
    reason: str = ""
    event_id: int | None = None
