"""Alert rules: from what happened (an alarm, a fence crossing, a battery reading, silence) to
an alert to open, or to an open alert whose condition has cleared.

Pure functions. The ingestor applies them inside the transaction that stores the event; the
notifier applies the offline rule on its timer. Deciding is kept apart from storing (as
Traccar keeps GeofenceHandler apart from GeofenceEventHandler), so every rule is tested alone.

Two promises live here:
- **An alarm is never lost to a bad fix.** An SOS or a fall opens its alert whatever its fix
  looks like; a missing, invalid or very inaccurate fix only changes *which* location the alert
  shows (the last known one, with its age) and says why.
- **Critical alerts never clear themselves.** Back inside the fence, charging again, online
  again: lesser alerts resolve on their own; an SOS or a fall waits for a person.
"""

from __future__ import annotations

import math

from services.alerts.model import (
    AlertKind,
    AlertLocation,
    Location,
    LocationSource,
    Severity,
)

ALARM_KINDS: dict[tuple[str, str], AlertKind] = {
    ("sos", "audible"): AlertKind.SOS_AUDIBLE,
    ("sos", "silent"): AlertKind.SOS_SILENT,
    ("fall", "audible"): AlertKind.FALL,
    ("fall", "silent"): AlertKind.FALL,
    ("removed", "audible"): AlertKind.REMOVED,
    ("removed", "silent"): AlertKind.REMOVED,
}

SEVERITY: dict[AlertKind, Severity] = {
    AlertKind.SOS_AUDIBLE: Severity.CRITICAL,
    AlertKind.SOS_SILENT: Severity.CRITICAL,
    AlertKind.FALL: Severity.CRITICAL,
    AlertKind.REMOVED: Severity.HIGH,
    AlertKind.FENCE_EXIT: Severity.HIGH,
    AlertKind.FENCE_ENTER: Severity.HIGH,
    AlertKind.BATTERY: Severity.LOW,  # MEDIUM at the critical level, see battery_level
    AlertKind.OFFLINE: Severity.MEDIUM,  # HIGH when outside a safe fence, see offline_severity
}

BATTERY_LOW = 15
BATTERY_CRITICAL = 5
BATTERY_CLEAR = 20  # hysteresis: 15 → 16 → 15 must not open, close, open


def alarm_kind(alarm_type: str, mode: str) -> AlertKind:
    """The alert an alarm raises. A silent SOS is its own kind: everything downstream (the
    watch, the message, the feed) must be able to tell it apart without reading details."""
    return ALARM_KINDS[(alarm_type, mode)]


def fix_problem(fix: Location | None, max_accuracy_m: float) -> str | None:
    """Why an alarm's own fix cannot be shown as the wearer's position (None: it can)."""
    if fix is None:
        return "the alarm carried no position"
    if not (math.isfinite(fix.lat) and math.isfinite(fix.lon) and math.isfinite(fix.acc)):
        return "the alarm's position is not a number"
    if fix.lat == 0.0 and fix.lon == 0.0:
        return "the alarm's position is 0, 0 (no GPS lock)"
    if not (-90.0 <= fix.lat <= 90.0 and -180.0 <= fix.lon <= 180.0):
        return "the alarm's position is out of range"
    if fix.acc > max_accuracy_m:
        return f"the alarm's position is only accurate to {fix.acc:.0f} m"
    return None


def alarm_location(
    alarm_fix: Location | None,
    last_known: Location | None,
    *,
    decode_error: str | None = None,
    max_accuracy_m: float = 300.0,
) -> AlertLocation | None:
    """The location an alarm's alert shows. Its own fix when it is good; otherwise the last
    known fix (the family sees its age); an inaccurate fix is still better than none when
    nothing else is known. ``decode_error``: the ingestor already refused the alarm's fix."""
    problem = decode_error or fix_problem(alarm_fix, max_accuracy_m)
    if problem is None and alarm_fix is not None:
        return AlertLocation(alarm_fix, LocationSource.ALARM)
    usable_last = last_known is not None and fix_problem(last_known, math.inf) is None
    inaccurate_own = (
        decode_error is None
        and alarm_fix is not None
        and (fix_problem(alarm_fix, math.inf) is None)
    )
    if usable_last and last_known is not None:
        if inaccurate_own and alarm_fix is not None and alarm_fix.acc <= last_known.acc:
            return AlertLocation(alarm_fix, LocationSource.ALARM, problem)
        return AlertLocation(last_known, LocationSource.LAST_KNOWN, problem)
    if inaccurate_own and alarm_fix is not None:
        return AlertLocation(alarm_fix, LocationSource.ALARM, problem)
    return None


def fence_alert(transition: str, fence_kind: str) -> tuple[AlertKind, bool]:
    """A fence transition → (the alert kind it concerns, True to open / False to clear).
    Leaving a safe fence opens FENCE_EXIT, coming back clears it; entering a no-go fence opens
    FENCE_ENTER, leaving it clears it."""
    if fence_kind == "safe":
        return AlertKind.FENCE_EXIT, transition == "exit"
    return AlertKind.FENCE_ENTER, transition == "enter"


def battery_level(percent: int, charging: bool | None) -> Severity | bool | None:
    """A battery reading → the severity of the battery alert it calls for, ``False`` when an
    open battery alert should clear, ``None`` when it changes nothing (the hysteresis band)."""
    if charging:
        return False
    if percent <= BATTERY_CRITICAL:
        return Severity.MEDIUM
    if percent <= BATTERY_LOW:
        return Severity.LOW
    if percent >= BATTERY_CLEAR:
        return False
    return None


def battery_change(
    open_severity: Severity | None, percent: int, charging: bool | None
) -> Severity | bool | None:
    """What a battery reading does to the device's battery alert: a severity to open it at
    (or raise it to), ``False`` to clear the open one, ``None`` for nothing — so a watch that
    reports 14 % with every fix opens one alert, not one update per fix."""
    level = battery_level(percent, charging)
    if level is False:
        return False if open_severity is not None else None
    if level is None or (open_severity is not None and level <= open_severity):
        return None
    return level


def offline_severity(outside_safe_fence: bool) -> Severity:
    """Silence is worse when the wearer was last seen outside a safe fence."""
    return Severity.HIGH if outside_safe_fence else Severity.MEDIUM


def self_resolving(severity: Severity) -> bool:
    """Whether an alert may close itself when its condition clears. Critical ones never do:
    a person must acknowledge and resolve them."""
    return severity < Severity.CRITICAL


def joined_severity(open_severity: Severity, new: Severity) -> Severity:
    """A trigger that joins an open alert can raise its severity, never lower it."""
    return max(open_severity, new)
