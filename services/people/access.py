"""Who may do what with a wearer: one table, read by every route (docs/permissions.md shows it).

A person's relation to a wearer gives a level; an action needs a level. No relation at all is
answered with 404 (the wearer's existence is not confirmed to strangers), a relation that is
not enough with 403. Pure: the relation is looked up by services/api/access.py.
"""

from __future__ import annotations

from enum import IntEnum, StrEnum


class Level(IntEnum):
    NONE = 0
    CAREGIVER = 1  # a caregiver (or admin) of an organisation the guardian granted care to
    FAMILY = 2  # a family member who accepted the guardian's invitation
    GUARDIAN = 3  # the wearer's primary guardian
    OPERATOR = 4  # the deployment's operator token (ops scripts, benchmarks)


class Action(StrEnum):
    VIEW_LOCATION = "view_location"  # latest, history, membership, events, live feed
    VIEW_ALERTS = "view_alerts"
    HANDLE_ALERTS = "handle_alerts"  # acknowledge, resolve
    EDIT_FENCES = "edit_fences"
    LOCATE_NOW = "locate_now"
    MANAGE_WEARER = "manage_wearer"  # escalation, speed-dial, invitations, care grants, consent
    LISTEN_IN = "listen_in"
    READ_AUDIT = "read_audit"
    EXPORT_DELETE = "export_delete"


NEEDS: dict[Action, Level] = {
    Action.VIEW_LOCATION: Level.CAREGIVER,
    Action.VIEW_ALERTS: Level.CAREGIVER,
    Action.HANDLE_ALERTS: Level.CAREGIVER,
    Action.EDIT_FENCES: Level.FAMILY,
    Action.LOCATE_NOW: Level.FAMILY,
    Action.MANAGE_WEARER: Level.GUARDIAN,
    Action.LISTEN_IN: Level.GUARDIAN,
    Action.READ_AUDIT: Level.GUARDIAN,
    Action.EXPORT_DELETE: Level.GUARDIAN,
}


def may(level: Level, action: Action) -> bool:
    return level >= NEEDS[action]


def exact_location(level: Level, open_alert: bool) -> bool:
    """A caregiver sees where the wearer is to about 500 m, unless an alert is open: then
    exactly, because then someone must go there. Family sees exactly."""
    return level >= Level.FAMILY or open_alert
