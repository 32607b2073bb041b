"""Commands to a watch, without a server: which phone numbers pass, how long a command may
wait, what goes on the wire, and that docs/protocol.md's command examples are the protocol."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from services.commands.rules import (
    LIFETIMES,
    message_expiry_s,
    number_problem,
    speed_dial_problems,
    ttl_s,
    wire_payload,
)
from services.protocol import COMMAND_ADAPTER, ORDER_MODELS, AlarmReceipt, ListenIn, SpeedDial
from tests.support.procs import ROOT

NOW = datetime(2026, 11, 25, 9, 0, tzinfo=UTC)
DOC = (ROOT / "docs" / "protocol.md").read_text()
COMMAND_EXAMPLES = re.findall(r"<!-- command example: (\w+) -->\s*```json\n(.*?)```", DOC, re.S)


@pytest.mark.parametrize(
    "number", ["+8613800138000", "+4930123456", "+12025550123", "+1234567", "+123456789012345"]
)
def test_e164_numbers_pass(number: str) -> None:
    assert number_problem(number) is None


@pytest.mark.parametrize(
    "number",
    [
        "13800138000",  # no country code
        "+0861380013800",  # country codes do not start with 0
        "+86 138 0013 8000",  # spaces
        "+123456",  # too short
        "+1234567890123456",  # too long
        "+86١٣٨٠٠١٣٨٠٠٠",  # Arabic-Indic digits: not dialable
        "+8613800138000\n",
        "",
    ],
)
def test_what_is_not_e164_is_named(number: str) -> None:
    problem = number_problem(number)
    assert problem is not None and "E.164" in problem and repr(number) in problem


def test_speed_dial_takes_one_to_five_different_numbers() -> None:
    five = [f"+861380013800{i}" for i in range(5)]
    assert speed_dial_problems(five) == []
    assert speed_dial_problems([]) == ["numbers: give 1 to 5 numbers, got 0"]
    assert speed_dial_problems([*five, "+8613900139000"]) == ["numbers: give 1 to 5 numbers, got 6"]


def test_speed_dial_problems_name_each_bad_entry() -> None:
    problems = speed_dial_problems(["+8613800138000", "110", "+8613800138000"])
    assert problems == [
        "numbers[1]: '110' is not a phone number in E.164: +, country code and number, 8 to 16"
        " characters, e.g. +8613800138000",
        "numbers[2]: +8613800138000 is already in the list",
    ]


NUMBERS = st.one_of(
    st.from_regex(r"\+[1-9][0-9]{6,14}", fullmatch=True),
    st.from_regex(r"\+?[0-9]{5,17}\s?", fullmatch=True),
    st.text(max_size=20),
)


@given(st.lists(NUMBERS, max_size=7))
def test_what_the_rules_let_through_the_watch_accepts(numbers: list[str]) -> None:
    """The API's check and the protocol model agree: nothing passes one and fails the other."""
    passes_rules = not speed_dial_problems(numbers)
    try:
        SpeedDial(id="c", numbers=numbers)
        passes_model = len(set(numbers)) == len(numbers)  # the model allows repeats
    except ValidationError:
        passes_model = False
    assert passes_rules == passes_model


def test_lifetimes_default_and_are_bounded() -> None:
    assert ttl_s("locate", None) == 3600
    assert ttl_s("listen_in", None) == 300
    assert ttl_s("listen_in", 2) == 2
    assert ttl_s("listen_in", 10_000) == 300  # a late call-back is worse than none
    assert all(1 <= life.default_s <= life.max_s for life in LIFETIMES.values())


@pytest.mark.parametrize(
    ("kind", "payload"),
    [
        ("locate", {}),
        ("speed_dial", {"numbers": ["+8613800138000"]}),
        ("listen_in", {"number": "+8613800138000"}),
        ("viewed_by", {"viewer": "王小明", "at": "2026-11-25T08:59:00+00:00"}),
    ],
)
def test_a_queued_row_becomes_its_protocol_model(kind: str, payload: dict) -> None:
    exp = NOW + timedelta(hours=1)
    body = wire_payload(kind, "c0ffee", payload, exp)
    command = COMMAND_ADAPTER.validate_json(body)
    assert isinstance(command, ORDER_MODELS[kind])
    assert (command.id, command.type, command.exp) == ("c0ffee", kind, exp)
    assert json.loads(body)["v"] == 1


def test_a_row_that_cannot_be_sent_raises() -> None:
    with pytest.raises(ValidationError):
        wire_payload("listen_in", "c1", {"number": "110"}, NOW)


def test_the_broker_never_holds_a_command_past_its_expiry() -> None:
    assert message_expiry_s(NOW + timedelta(seconds=299.8), NOW) == 299
    assert message_expiry_s(NOW + timedelta(seconds=1), NOW) == 1


def test_a_command_with_under_a_second_left_is_not_sent() -> None:
    # 0 would mean "never expires" to the broker, so there is no interval to give it.
    assert message_expiry_s(NOW + timedelta(seconds=0.9), NOW) is None
    assert message_expiry_s(NOW - timedelta(seconds=5), NOW) is None


def test_the_union_picks_the_model_by_type_and_alarm_receipts_still_parse() -> None:
    receipt = COMMAND_ADAPTER.validate_python({"type": "alarm_receipt", "id": "r", "seqs": [1]})
    assert isinstance(receipt, AlarmReceipt)
    listen = COMMAND_ADAPTER.validate_python(
        {"type": "listen_in", "id": "l", "number": "+8613800138000", "extra": 1}
    )
    assert isinstance(listen, ListenIn)  # unknown fields ignored: v1 grows additively
    with pytest.raises(ValidationError):
        COMMAND_ADAPTER.validate_python({"type": "fence_sync", "id": "f"})


def test_the_doc_has_an_example_of_every_command() -> None:
    assert {kind for kind, _ in COMMAND_EXAMPLES} == set(ORDER_MODELS)


@pytest.mark.parametrize(("kind", "body"), COMMAND_EXAMPLES)
def test_doc_command_example_parses(kind: str, body: str) -> None:
    command = COMMAND_ADAPTER.validate_python(json.loads(body))
    assert type(command) is ORDER_MODELS[kind]
