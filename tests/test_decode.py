"""The decode stage: every bad payload becomes a dead letter with a reason, nothing raises."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from services.ingestor.decode import Limits, decode_message
from services.ingestor.items import AlarmIn, FixIn, Rejected
from services.protocol import Topics, UplinkKind

TOPICS = Topics("anxin")
NOW = datetime(2026, 11, 25, 8, 0, tzinfo=UTC)
LOC = TOPICS.uplink("w00001", UplinkKind.LOC)


def fix(**over: object) -> dict:
    base = {"v": 1, "seq": 1, "t": "2026-11-25T07:59:00Z", "lat": 31.2, "lon": 121.4, "acc": 10}
    base.update(over)
    return base


def decode(topic: str, payload: bytes | dict) -> list:
    raw = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    return decode_message(topic, raw, NOW, TOPICS, Limits())


def only_reason(topic: str, payload: bytes | dict) -> str:
    [item] = decode(topic, payload)
    assert isinstance(item, Rejected), item
    return item.reason


def test_a_good_fix_decodes() -> None:
    [item] = decode(LOC, fix())
    assert isinstance(item, FixIn)
    assert item.device_id == "w00001"
    assert item.fix.lat == 31.2


def test_each_malformed_payload_has_a_clear_reason() -> None:
    assert "not valid JSON" in only_reason(LOC, b"{not json")
    assert "lat: Input should be less than or equal to 90, got 91" in only_reason(LOC, fix(lat=91))
    assert "acc: Field required" in only_reason(LOC, {k: v for k, v in fix().items() if k != "acc"})
    assert "lat: Input should be a valid number" in only_reason(LOC, fix(lat="north"))
    assert "finite" in only_reason(LOC, b'{"v":1,"seq":1,"t":"2026-11-25T07:59:00Z",'
                                         b'"lat":NaN,"lon":121.4,"acc":10}')  # fmt: skip
    assert "ahead of the server clock" in only_reason(LOC, fix(t="2026-11-26T08:00:00Z"))
    assert "older than 30 days" in only_reason(LOC, fix(t="2026-09-01T08:00:00Z"))
    assert "timezone" in only_reason(LOC, fix(t="2026-11-25T07:59:00"))
    assert "exceeds the 262144-byte limit" in only_reason(LOC, b"x" * (1024 * 1024))
    assert "not an uplink topic" in only_reason("anxin/v1/dev/w00001/bogus", fix())
    assert "not an uplink topic" in only_reason("anxin/v1/dev/w0/../loc", fix())


def test_a_rejected_payload_is_kept_whole() -> None:
    payload = b'{"lat": 91, "note": "\xff\xfe"}'
    [item] = decode(LOC, payload)
    assert isinstance(item, Rejected)
    assert item.payload == payload
    assert item.device_id == "w00001"


def test_an_alarm_survives_a_bad_fix_and_a_bad_clock() -> None:
    topic = TOPICS.uplink("w00001", UplinkKind.ALARM)
    alarm = {"v": 1, "seq": 9, "t": "2027-01-01T00:00:00Z", "type": "sos", "mode": "silent",
             "fix": {"t": "2026-11-25T07:59:00Z", "lat": 123, "lon": 121.4, "acc": 10}}  # fmt: skip
    [item] = decode(topic, alarm)
    assert isinstance(item, AlarmIn)
    assert item.position is None
    assert item.fix_error is not None and "fix.lat" in item.fix_error
    assert item.alarm.mode.value == "silent"


def test_a_batch_rejects_only_its_bad_items() -> None:
    topic = TOPICS.uplink("w00001", UplinkKind.BATCH)
    batch = {
        "v": 1,
        "fixes": [fix(seq=1), fix(seq=2, lat=-100), fix(seq=3)],
        "alarms": [{"v": 1, "seq": 4, "t": "2026-11-25T07:59:30Z", "type": "fall"}],
    }
    items = decode(topic, batch)
    assert [type(i).__name__ for i in items] == ["FixIn", "Rejected", "FixIn", "AlarmIn"]
    bad = items[1]
    assert isinstance(bad, Rejected) and bad.reason.startswith("fixes[1].lat")
    assert json.loads(bad.payload)["seq"] == 2


@settings(max_examples=300, deadline=None)
@given(
    kind=st.sampled_from(list(UplinkKind)),
    payload=st.one_of(
        st.binary(max_size=300),
        st.recursive(
            st.none() | st.booleans() | st.floats() | st.integers() | st.text(max_size=20),
            lambda inner: (
                st.lists(inner, max_size=4)
                | st.dictionaries(st.text(max_size=8), inner, max_size=6)
            ),
            max_leaves=20,
        ).map(lambda v: json.dumps(v).encode()),
    ),
)
def test_decoding_anything_never_raises_and_never_drops(kind: UplinkKind, payload: bytes) -> None:
    items = decode_message(TOPICS.uplink("w00001", kind), payload, NOW, TOPICS, Limits())
    assert items or kind is UplinkKind.BATCH  # an empty batch is the only empty outcome
    for item in items:
        if isinstance(item, Rejected):
            assert item.reason


@settings(max_examples=200, deadline=None)
@given(
    lat=st.floats(-90, 90),
    lon=st.floats(-180, 180),
    acc=st.floats(0.1, 5000),
    ago=st.integers(0, 86400 * 29),
    seq=st.integers(0, 2**53),
)
def test_every_valid_fix_is_accepted(
    lat: float, lon: float, acc: float, ago: int, seq: int
) -> None:
    t = (NOW - timedelta(seconds=ago)).isoformat()
    [item] = decode(LOC, fix(lat=lat, lon=lon, acc=acc, t=t, seq=seq))
    assert isinstance(item, FixIn)
    assert (item.fix.lat, item.fix.lon, item.fix.seq) == (lat, lon, seq)
