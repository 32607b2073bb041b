"""What a command to a watch may be, how long it may wait, and what goes on the wire. Pure:
the API checks requests with it, the dispatcher builds the MQTT payloads with it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from services.protocol import E164_RE, ORDER_MODELS

MAX_SPEED_DIAL = 5
E164_HINT = "E.164: +, country code and number, 8 to 16 characters, e.g. +8613800138000"


@dataclass(frozen=True)
class Lifetime:
    """How long a command may wait for its ack: ``default_s`` unless the request asks for
    less (or, up to ``max_s``, more). Past it the command is expired, and the broker drops it
    from the watch's session too (MQTT 5 message expiry)."""

    default_s: int
    max_s: int


LIFETIMES: dict[str, Lifetime] = {
    "locate": Lifetime(3600, 3600),  # an hour-old "where are you now" answers nothing
    "speed_dial": Lifetime(3600, 7 * 24 * 3600),
    "listen_in": Lifetime(300, 300),  # a late call-back is worse than none
    "viewed_by": Lifetime(3600, 24 * 3600),
}
assert set(LIFETIMES) == set(ORDER_MODELS)


def ttl_s(kind: str, requested: int | None) -> int:
    """The lifetime of a new command; the API has already bounded ``requested``."""
    life = LIFETIMES[kind]
    return life.default_s if requested is None else max(1, min(requested, life.max_s))


def number_problem(number: str, where: str = "number") -> str | None:
    if E164_RE.fullmatch(number):
        return None
    return f"{where}: {number!r} is not a phone number in {E164_HINT}"


def speed_dial_problems(numbers: list[str]) -> list[str]:
    """One line per problem; empty when the list may be sent."""
    problems = []
    if not 1 <= len(numbers) <= MAX_SPEED_DIAL:
        problems.append(f"numbers: give 1 to {MAX_SPEED_DIAL} numbers, got {len(numbers)}")
    seen: set[str] = set()
    for i, number in enumerate(numbers):
        problem = number_problem(number, f"numbers[{i}]")
        if problem:
            problems.append(problem)
        elif number in seen:
            problems.append(f"numbers[{i}]: {number} is already in the list")
        seen.add(number)
    return problems


def wire_payload(
    kind: str, command_id: str, payload: dict[str, Any], expires_at: datetime
) -> bytes:
    """The MQTT payload of a queued command: the protocol model of its kind, built from the
    row's ``payload``. Raises pydantic's ValidationError for a row that cannot be sent."""
    model = ORDER_MODELS[kind].model_validate(payload | {"id": command_id, "exp": expires_at})
    return model.model_dump_json(exclude_none=True).encode()


def message_expiry_s(expires_at: datetime, now: datetime) -> int | None:
    """MQTT 5 Message Expiry Interval: the broker drops the command, even from an offline
    watch's session, before it would arrive too late. Rounded down, so the broker never holds
    a command past its ``exp``; None when under a second is left, because 0 would mean
    "never expires": such a command is not sent at all."""
    seconds = math.floor((expires_at - now).total_seconds())
    return seconds if seconds >= 1 else None
