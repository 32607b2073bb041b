"""What happens after a delivery attempt: done, try again later, or give up and say so.

Pure, so the retry schedule is tested without a clock or a network.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from services.notifier.channels.base import Outcome

RETRY_CAP_S = 600.0


class Next(StrEnum):
    DELIVERED = "delivered"
    RETRY = "retry"
    GAVE_UP = "gave_up"


@dataclass(frozen=True, slots=True)
class AfterAttempt:
    next: Next
    delay_s: float = 0.0


def retry_delay_s(attempt: int, base_s: float, cap_s: float = RETRY_CAP_S) -> float:
    """Exponential backoff: base, 2×base, 4×base … capped. ``attempt`` is 1 for the first
    try; the delay is the wait before the next one."""
    try:
        return min(base_s * 2.0 ** max(attempt - 1, 0), cap_s)
    except OverflowError:  # 2**1024 and up is past any float (a very large max_attempts)
        return cap_s


def after_attempt(
    outcome: Outcome, attempt: int, *, max_attempts: int, base_s: float
) -> AfterAttempt:
    """A permanent failure (a push subscription that is gone) is given up at once; any other
    failure is retried until ``max_attempts``, then given up — recorded, never silent."""
    if outcome.ok:
        return AfterAttempt(Next.DELIVERED)
    if outcome.permanent or attempt >= max_attempts:
        return AfterAttempt(Next.GAVE_UP)
    return AfterAttempt(Next.RETRY, retry_delay_s(attempt, base_s))
