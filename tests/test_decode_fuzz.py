"""Hostile input to the decode stage: arbitrary topics and bytes, and valid payloads mutated
field by field and byte by byte. Decode never raises; whatever it refuses comes back as a
``Rejected`` with a reason; whatever it accepts can be stored and read back (finite numbers in
range, no NUL in text, times PostgreSQL and Python both hold)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.ingestor.decode import (
    EARLIEST_STORABLE,
    LATEST_STORABLE,
    Limits,
    decode_message,
)
from services.ingestor.items import AckIn, AlarmIn, FixIn, Item, Rejected, StateIn, StatusIn
from services.protocol import MAX_BATCH_ITEMS, Alarm, Topics, UplinkKind

TOPICS = Topics("anxin")
NOW = datetime(2026, 11, 25, 8, 0, tzinfo=UTC)
LIMITS = Limits()
T = "2026-11-25T07:59:00Z"
VALID: dict[UplinkKind, dict[str, Any]] = {
    UplinkKind.LOC: {"v": 1, "seq": 1, "t": T, "lat": 31.2, "lon": 121.4, "acc": 10,
                     "src": "gps", "spd": 1.0, "hdg": 90.0, "bat": 80},
    UplinkKind.ALARM: {"v": 1, "seq": 2, "t": T, "type": "sos", "mode": "silent",
                       "fix": {"t": T, "lat": 31.2, "lon": 121.4, "acc": 25, "src": "gps"}},
    UplinkKind.STATUS: {"v": 1, "seq": 3, "t": T, "bat": 50, "charging": False, "worn": True},
    UplinkKind.STATE: {"v": 1, "online": True, "t": T},
    UplinkKind.ACK: {"v": 1, "seq": 4, "t": T, "cmd": "c-1", "ok": True, "detail": "done"},
}  # fmt: skip
VALID[UplinkKind.BATCH] = {
    "v": 1,
    "fixes": [VALID[UplinkKind.LOC], {**VALID[UplinkKind.LOC], "seq": 5}],
    "alarms": [{k: v for k, v in VALID[UplinkKind.ALARM].items() if k != "fix"}],
}

HOSTILE_TEXT = st.sampled_from([
    "", "\x00", "a\x00b", "'; DROP TABLE positions; --", "\" OR 1=1 --", "%s%s%s", "{}",
    "\u202egps", "g\u200bps", "ｇｐｓ", "GPS", "🆘", "\ufeff", "\udbff" "x", "NaN", "1e999",
    "x" * 10_000, "∞", "İ", "ß",
])  # fmt: skip
JSON_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats()  # NaN and ±Infinity, serialised as the bare tokens NaN / Infinity
    | st.text(max_size=30)
    | HOSTILE_TEXT
)
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4)
    ),
    max_leaves=15,
)


def decode(topic: str, payload: bytes) -> list[Item]:
    return decode_message(topic, payload, NOW, TOPICS, LIMITS)


def assert_safe(items: list[Item], payload: bytes, kind: UplinkKind | None) -> None:
    """The decode contract for any input whatsoever."""
    assert len(items) <= 2 * MAX_BATCH_ITEMS
    if kind is not UplinkKind.BATCH:
        assert len(items) == 1
    for item in items:
        if isinstance(item, Rejected):
            assert isinstance(item.reason, str) and item.reason.strip()
            if kind is not UplinkKind.BATCH:
                assert item.payload == payload  # kept whole, byte for byte
            continue
        assert isinstance(item, FixIn | AlarmIn | StatusIn | StateIn | AckIn)
        assert item.device_id == "w00001"
        if isinstance(item, FixIn):
            f = item.fix
            assert -90 <= f.lat <= 90 and -180 <= f.lon <= 180 and f.acc > 0
            assert NOW - LIMITS.max_age <= f.t <= NOW + LIMITS.max_future_skew
        elif isinstance(item, AlarmIn):
            assert EARLIEST_STORABLE <= item.alarm.t <= LATEST_STORABLE
            assert item.position is not None or item.fix_error  # no fix: it says why
            if item.position is not None:
                assert NOW - LIMITS.max_age <= item.position.t <= NOW + LIMITS.max_future_skew
        elif isinstance(item, StatusIn):
            assert NOW - LIMITS.max_age <= item.status.t <= NOW + LIMITS.max_future_skew
        elif isinstance(item, AckIn):
            assert NOW - LIMITS.max_age <= item.ack.t <= NOW + LIMITS.max_future_skew
            assert "\x00" not in item.ack.cmd and "\x00" not in (item.ack.detail or "")


def dumps(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False).encode("utf-8", "surrogatepass")


# -- arbitrary input -------------------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(device=st.text(max_size=70), kind=st.text(max_size=8), payload=st.binary(max_size=200))
def test_any_topic_and_any_bytes_are_rejected_with_a_reason_or_decoded(
    device: str, kind: str, payload: bytes
) -> None:
    topic = f"anxin/v1/dev/{device}/{kind}"
    items = decode(topic, payload)
    parsed = TOPICS.parse_uplink(topic)
    assert_safe(items, payload, parsed[1] if parsed else None)
    if parsed is None:
        [item] = items
        assert isinstance(item, Rejected) and "not an uplink topic" in item.reason


@settings(max_examples=300, deadline=None)
@given(kind=st.sampled_from(list(UplinkKind)), value=JSON_VALUES)
def test_any_json_is_rejected_with_a_reason_or_decoded(kind: UplinkKind, value: Any) -> None:
    payload = dumps(value)
    assert_safe(decode(TOPICS.uplink("w00001", kind), payload), payload, kind)


# -- valid payloads, mutated -----------------------------------------------------------------


@st.composite
def mutated(draw: st.DrawFn) -> tuple[UplinkKind, bytes]:
    kind = draw(st.sampled_from(list(UplinkKind)))
    doc = json.loads(json.dumps(VALID[kind]))
    target = doc
    if kind is UplinkKind.BATCH and draw(st.booleans()):
        field = draw(st.sampled_from(["fixes", "alarms"]))
        target = doc[field][0]
    for _ in range(draw(st.integers(1, 3))):
        key = draw(st.sampled_from([*target.keys(), "extra", "fix"]))
        action = draw(st.sampled_from(["replace", "delete", "nest"]))
        if action == "delete":
            target.pop(key, None)
        elif action == "replace":
            target[key] = draw(JSON_VALUES)
        else:
            depth = draw(st.integers(1, 400))
            target[key] = json.loads("[" * depth + "1" + "]" * depth)
    payload = dumps(doc)
    if draw(st.booleans()):  # and now at the byte level
        data = bytearray(payload)
        for _ in range(draw(st.integers(1, 4))):
            at = draw(st.integers(0, max(0, len(data) - 1)))
            op = draw(st.sampled_from(["flip", "insert", "delete", "truncate"]))
            if op == "flip" and data:
                data[at] ^= 1 << draw(st.integers(0, 7))
            elif op == "insert":
                data[at:at] = draw(st.binary(min_size=1, max_size=4))
            elif op == "delete" and data:
                del data[at]
            elif op == "truncate":
                del data[at:]
        payload = bytes(data)
    return kind, payload


@settings(max_examples=600, deadline=None)
@given(mutated())
def test_valid_payloads_mutated_never_raise_and_always_give_a_reason(
    case: tuple[UplinkKind, bytes],
) -> None:
    kind, payload = case
    items = decode(TOPICS.uplink("w00001", kind), payload)
    assert_safe(items, payload, kind)
    if kind is UplinkKind.ALARM:
        try:
            Alarm.model_validate_json(payload)
        except ValueError:
            return
        # Anything that is an alarm at all is kept, whatever its time or its fix.
        assert isinstance(items[0], AlarmIn)


@settings(max_examples=200, deadline=None)
@given(
    t=st.datetimes(),  # years 1 … 9999
    offset=st.sampled_from(["Z", "+00:00", "+14:00", "-14:00", "+23:59", "-23:59"]),
)
def test_an_alarm_at_any_time_is_kept_and_stays_readable(t: datetime, offset: str) -> None:
    payload = dumps({"v": 1, "seq": 1, "t": t.isoformat() + offset, "type": "sos"})
    items = decode(TOPICS.uplink("w00001", UplinkKind.ALARM), payload)
    assert_safe(items, payload, UplinkKind.ALARM)
    assert isinstance(items[0], AlarmIn)


# -- the specific hostile shapes -------------------------------------------------------------


@pytest.mark.parametrize("depth", [10, 150, 1_000, 100_000])
@pytest.mark.parametrize("kind", list(UplinkKind))
def test_deep_nesting_is_rejected_with_a_reason(depth: int, kind: UplinkKind) -> None:
    for payload in (
        b"[" * depth + b"]" * depth,
        b'{"a":' * depth + b"1" + b"}" * depth,
        dumps({**VALID[kind], "extra": json.loads("[" * min(depth, 150) + "]" * min(depth, 150))}),
    ):
        items = decode(TOPICS.uplink("w00001", kind), payload)
        assert_safe(items, payload, kind)


@pytest.mark.parametrize(
    ("field", "value", "needle"),
    [
        ("lat", "Infinity", "finite"),
        ("lon", "-Infinity", "finite"),
        ("acc", "NaN", "finite"),
        ("lat", "1e999", "finite"),
        ("lat", "90.0000001", "less than or equal to 90"),
        ("lon", "-180.5", "greater than or equal to -180"),
        ("seq", "9007199254740993", "less than or equal to 9007199254740992"),
        ("seq", "-1", "greater than or equal to 0"),
        ("src", '"\'; DROP TABLE positions; --"', "src: Input should be 'gps', 'wifi' or 'cell'"),
        ("src", '"\\u202egps"', "src: Input should be"),
        ("t", '"2026-11-25T07:59:00\\u0000Z"', "t: Input should be a valid datetime"),
    ],
)
def test_hostile_values_name_the_field_in_the_reason(field: str, value: str, needle: str) -> None:
    doc = json.dumps(VALID[UplinkKind.LOC]).replace(
        f'"{field}": {json.dumps(VALID[UplinkKind.LOC][field])}', f'"{field}": {value}'
    )
    assert value in doc
    [item] = decode(TOPICS.uplink("w00001", UplinkKind.LOC), doc.encode())
    assert isinstance(item, Rejected)
    assert needle in item.reason


def test_nul_in_free_text_is_refused_before_it_can_fail_a_batch() -> None:
    ack = {**VALID[UplinkKind.ACK], "cmd": "c\x00", "detail": "a\x00"}
    [item] = decode(TOPICS.uplink("w00001", UplinkKind.ACK), dumps(ack))
    assert isinstance(item, Rejected)
    assert item.reason == "cmd, detail: text may not contain NUL"


def test_an_alarm_dated_before_year_one_in_utc_is_kept_at_the_earliest_storable_time() -> None:
    alarm = {"v": 1, "seq": 9, "t": "0001-01-01T00:00:00+14:00", "type": "sos"}
    [item] = decode(TOPICS.uplink("w00001", UplinkKind.ALARM), dumps(alarm))
    assert isinstance(item, AlarmIn)
    assert item.alarm.t == EARLIEST_STORABLE
    assert item.fix_error is not None and "cannot be stored" in item.fix_error
    # A re-send is the same row: the key (device, seq, t) does not move.
    [again] = decode(TOPICS.uplink("w00001", UplinkKind.ALARM), dumps(alarm))
    assert isinstance(again, AlarmIn) and again.alarm.t == item.alarm.t


def test_a_batch_of_more_than_the_limit_is_one_rejection() -> None:
    batch = {"v": 1, "fixes": [VALID[UplinkKind.LOC]] * (MAX_BATCH_ITEMS + 1)}
    payload = dumps(batch)
    [item] = decode(TOPICS.uplink("w00001", UplinkKind.BATCH), payload)
    assert isinstance(item, Rejected) and "fixes" in item.reason
    assert item.payload == payload


def test_a_payload_one_byte_over_the_limit_is_not_parsed() -> None:
    payload = b" " * (LIMITS.max_payload_bytes - 2) + b"{}"
    assert "exceeds" not in getattr(decode(TOPICS.uplink("w00001", UplinkKind.LOC), payload)[0],
                                    "reason", "")  # fmt: skip
    [item] = decode(TOPICS.uplink("w00001", UplinkKind.LOC), payload + b" ")
    assert isinstance(item, Rejected) and "exceeds the 262144-byte limit" in item.reason


def test_times_at_the_edges_of_the_window_are_decided_not_crashed() -> None:
    for t in ("0001-01-01T00:00:00Z", "9999-12-31T23:59:59Z", "9999-12-31T23:59:59-14:00"):
        for kind in (UplinkKind.LOC, UplinkKind.STATUS, UplinkKind.ACK):
            payload = dumps({**VALID[kind], "t": t})
            [item] = decode(TOPICS.uplink("w00001", kind), payload)
            assert isinstance(item, Rejected) and "device time" in item.reason
