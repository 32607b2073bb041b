"""Lockout after repeated failed logins: slows a guesser to a crawl, and tells the user when
they may try again. Pure."""

from __future__ import annotations

from datetime import datetime, timedelta

MAX_FAILURES = 5
LOCK_S = 15 * 60


def is_locked(locked_until: datetime | None, now: datetime) -> bool:
    return locked_until is not None and locked_until > now


def after_failure(failures: int, now: datetime) -> tuple[int, datetime | None]:
    """The failure count after one more failure, and the lock it earns (every
    ``MAX_FAILURES``-th failure in a row locks the account for ``LOCK_S``)."""
    failures += 1
    if failures % MAX_FAILURES == 0:
        return failures, now + timedelta(seconds=LOCK_S)
    return failures, None
