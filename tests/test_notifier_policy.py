"""After a delivery attempt: delivered, retried with a doubling (capped) delay, or given up —
at once for a permanent failure, after ``max_attempts`` for any other."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.notifier.channels.base import Outcome
from services.notifier.policy import RETRY_CAP_S, AfterAttempt, Next, after_attempt, retry_delay_s

SETTINGS = settings(max_examples=200, deadline=None)
OK = Outcome(ok=True)
TIMEOUT = Outcome(ok=False, detail="timed out")
GONE = Outcome(ok=False, detail="410 Gone", status_code=410, permanent=True)


# retry_delay_s


def test_the_first_retry_waits_the_base_delay() -> None:
    assert retry_delay_s(1, 2.0) == 2.0


def test_each_retry_waits_twice_as_long() -> None:
    assert [retry_delay_s(a, 2.0) for a in range(1, 7)] == [2.0, 4.0, 8.0, 16.0, 32.0, 64.0]


def test_the_delay_is_capped_at_ten_minutes_by_default() -> None:
    assert RETRY_CAP_S == 600.0
    assert retry_delay_s(9, 2.0) == 512.0
    assert retry_delay_s(10, 2.0) == 600.0
    assert retry_delay_s(30, 2.0) == 600.0


def test_the_cap_is_the_callers() -> None:
    assert retry_delay_s(5, 1.0, cap_s=10.0) == 10.0


def test_an_attempt_number_below_one_waits_the_base_delay() -> None:
    assert retry_delay_s(0, 3.0) == 3.0


def test_a_huge_attempt_number_waits_the_cap_instead_of_overflowing() -> None:
    assert retry_delay_s(5000, 2.0) == RETRY_CAP_S


@SETTINGS
@given(
    st.integers(1, 5000),
    st.floats(0.001, 1000, allow_nan=False),
    st.floats(0.001, 10_000, allow_nan=False),
)
def test_delays_never_shrink_and_never_pass_the_cap(attempt: int, base: float, cap: float) -> None:
    delay = retry_delay_s(attempt, base, cap)
    assert 0 < delay <= cap
    assert retry_delay_s(attempt + 1, base, cap) >= delay


# after_attempt


def test_a_delivered_notification_is_done() -> None:
    assert after_attempt(OK, 1, max_attempts=8, base_s=2.0) == AfterAttempt(Next.DELIVERED)


def test_delivered_on_the_last_attempt_is_still_delivered() -> None:
    assert after_attempt(OK, 8, max_attempts=8, base_s=2.0).next is Next.DELIVERED


def test_a_permanent_failure_is_given_up_at_once() -> None:
    assert after_attempt(GONE, 1, max_attempts=8, base_s=2.0) == AfterAttempt(Next.GAVE_UP)


def test_a_passing_failure_is_retried_after_the_backoff_delay() -> None:
    assert after_attempt(TIMEOUT, 1, max_attempts=8, base_s=2.0) == AfterAttempt(Next.RETRY, 2.0)
    assert after_attempt(TIMEOUT, 3, max_attempts=8, base_s=2.0) == AfterAttempt(Next.RETRY, 8.0)


@pytest.mark.parametrize("attempt", [8, 9])
def test_the_last_allowed_failure_is_given_up_not_retried(attempt: int) -> None:
    assert after_attempt(TIMEOUT, attempt, max_attempts=8, base_s=2.0) == AfterAttempt(Next.GAVE_UP)


def test_one_allowed_attempt_means_no_retry() -> None:
    assert after_attempt(TIMEOUT, 1, max_attempts=1, base_s=2.0).next is Next.GAVE_UP


outcomes = st.builds(
    Outcome,
    ok=st.booleans(),
    permanent=st.booleans(),
    status_code=st.none() | st.integers(100, 599),
)


@SETTINGS
@given(st.lists(outcomes, min_size=1, max_size=40), st.integers(1, 20), st.floats(0.01, 60))
def test_a_notification_is_never_tried_more_than_max_attempts(
    results: list[Outcome], max_attempts: int, base: float
) -> None:
    """Feed attempts as the notifier would until it stops: it always stops, never past
    ``max_attempts``, and the last word is DELIVERED or GAVE_UP (never silent)."""
    attempts = 0
    after = None
    for outcome in results:
        attempts += 1
        after = after_attempt(outcome, attempts, max_attempts=max_attempts, base_s=base)
        assert attempts <= max_attempts
        if after.next is not Next.RETRY:
            break
        assert 0 < after.delay_s <= RETRY_CAP_S
    assert after is not None
    if after.next is Next.RETRY:
        assert attempts < max_attempts  # ran out of generated outcomes, not of attempts
    elif after.next is Next.DELIVERED:
        assert results[attempts - 1].ok
    else:
        last = results[attempts - 1]
        assert not last.ok
        assert last.permanent or attempts == max_attempts
