"""The pure rules of accounts and privacy: tokens, lockout, passwords, the access table, the
coarse location and the notice rate."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.people.access import NEEDS, Action, Level, exact_location, may
from services.people.lockout import LOCK_S, MAX_FAILURES, after_failure, is_locked
from services.people.passwords import hash_password, password_problem, verify_password
from services.people.privacy import COARSE_M, coarse, notice_due
from services.people.tokens import issue_access_token, read_access_token, refresh_hash

NOW = datetime(2026, 11, 25, 8, 0, tzinfo=UTC)


def test_an_access_token_reads_back_until_it_expires() -> None:
    token = issue_access_token("secret", "sid-1", 42, NOW, 900)
    claims = read_access_token("secret", token, NOW + timedelta(seconds=899))
    assert claims is not None and (claims.session_id, claims.user_id) == ("sid-1", 42)
    assert read_access_token("secret", token, NOW + timedelta(seconds=900)) is None


@pytest.mark.parametrize(
    "mutate",
    [
        lambda t: t[:-2] + ("A" if t[-2] != "A" else "B") + t[-1],  # signature changed
        lambda t: "eyJzaWQiOiJ4IiwidWlkIjoxLCJleHAiOjk5OTk5OTk5OTl9" + t[t.index(".") :],  # claims
        lambda t: t.replace(".", ""),
        lambda t: "",
        lambda t: "a.b.c",
    ],
)
def test_a_forged_or_mangled_token_is_refused(mutate) -> None:  # type: ignore[no-untyped-def]
    token = issue_access_token("secret", "sid-1", 42, NOW, 900)
    assert read_access_token("secret", mutate(token), NOW) is None


def test_a_token_signed_with_another_secret_is_refused() -> None:
    token = issue_access_token("other", "sid-1", 42, NOW, 900)
    assert read_access_token("secret", token, NOW) is None


def test_refresh_tokens_are_stored_as_hashes() -> None:
    assert refresh_hash("abc") == refresh_hash("abc") != refresh_hash("abd")
    assert "abc" not in refresh_hash("abc")


def test_every_fifth_failure_in_a_row_locks_for_15_minutes() -> None:
    failures, locked = 0, None
    for n in range(1, 11):
        failures, locked = after_failure(failures, NOW)
        assert (locked is not None) == (n % MAX_FAILURES == 0)
    assert locked == NOW + timedelta(seconds=LOCK_S)
    assert is_locked(locked, NOW + timedelta(seconds=LOCK_S - 1))
    assert not is_locked(locked, NOW + timedelta(seconds=LOCK_S))
    assert not is_locked(None, NOW)


def test_passwords_are_argon2id_and_verify_only_themselves() -> None:
    stored = hash_password("correct horse battery")
    assert stored.startswith("$argon2id$")
    assert verify_password(stored, "correct horse battery")
    assert not verify_password(stored, "correct horse batterY")
    assert not verify_password("not a hash", "x")


@pytest.mark.parametrize(
    "password, problem",
    [("short", "at least 10"), ("aaaaaaaaaaaa", "different characters"), ("x" * 300, "at most"),
     ("a sentence my grandson can type", None)],
)  # fmt: skip
def test_password_rules(password: str, problem: str | None) -> None:
    got = password_problem(password)
    assert (got is None) if problem is None else (got is not None and problem in got)


def test_the_access_table_is_ordered_by_closeness() -> None:
    for action, needed in NEEDS.items():
        allowed = [lvl for lvl in Level if may(lvl, action)]
        assert allowed == [lvl for lvl in Level if lvl >= needed]  # closer never sees less
    assert not may(Level.NONE, Action.VIEW_LOCATION)
    assert may(Level.CAREGIVER, Action.HANDLE_ALERTS)
    assert not may(Level.CAREGIVER, Action.EDIT_FENCES)
    assert not may(Level.FAMILY, Action.LISTEN_IN)
    assert may(Level.GUARDIAN, Action.EXPORT_DELETE)


def test_a_caregiver_sees_exactly_only_with_an_open_alert() -> None:
    assert not exact_location(Level.CAREGIVER, open_alert=False)
    assert exact_location(Level.CAREGIVER, open_alert=True)
    assert exact_location(Level.FAMILY, open_alert=False)


def _metres(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    dy = (lat2 - lat1) * 111_320
    dx = (lon2 - lon1) * 111_320 * math.cos(math.radians((lat1 + lat2) / 2))
    return math.hypot(dx, dy)


@given(st.floats(-80, 80), st.floats(-179.9, 179.9))
def test_the_coarse_point_is_near_the_truth_and_says_how_near(lat: float, lon: float) -> None:
    clat, clon, acc = coarse(lat, lon)
    d = _metres(lat, lon, clat, clon)
    assert d <= acc * 1.01  # the truth is inside the reported accuracy
    assert acc >= COARSE_M / 2


@given(st.floats(-80, 80), st.floats(-179.9, 179.9), st.floats(-1, 1), st.floats(-1, 1))
def test_looking_again_from_nearby_gives_the_same_cell_or_a_neighbour(
    lat: float, lon: float, dy: float, dx: float
) -> None:
    """A fixed grid: small moves mostly return the very same point, so many looks cannot be
    averaged into the true position."""
    a = coarse(lat, lon)
    b = coarse(lat + dy * 1e-6, lon + dx * 1e-6)  # about 10 cm away
    assert a == b or _metres(a[0], a[1], b[0], b[1]) <= COARSE_M * 1.5


def test_the_wearer_is_told_at_most_once_per_10_minutes_per_viewer() -> None:
    assert notice_due(None, NOW)
    assert not notice_due(NOW - timedelta(minutes=9, seconds=59), NOW)
    assert notice_due(NOW - timedelta(minutes=10), NOW)
