"""The plan stage: in-batch duplicates go, latest state per device is the newest by device time."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.ingestor import pipeline
from services.ingestor.decode import Limits
from services.ingestor.items import FixIn, Rejected, StateIn
from services.ingestor.pipeline import Access, Received, decode, decode_all, prepare_batch
from services.ingestor.plan import plan_batch
from services.protocol import Fix, State, Topics, UplinkKind

NOW = datetime(2026, 11, 25, 8, 0, tzinfo=UTC)


def fix_in(device: str, seq: int, minutes_ago: int, bat: int | None = None) -> FixIn:
    t = NOW - timedelta(minutes=minutes_ago)
    return FixIn(device, Fix(seq=seq, t=t, lat=31.2, lon=121.4, acc=10, bat=bat), NOW)


def test_duplicates_in_a_batch_are_planned_once() -> None:
    plan = plan_batch([fix_in("a", 1, 5), fix_in("a", 1, 5), fix_in("a", 2, 4)])
    assert [f.fix.seq for f in plan.fixes] == [1, 2]


def test_a_late_fix_does_not_become_the_latest() -> None:
    plan = plan_batch([fix_in("a", 7, 1), fix_in("a", 3, 30)])
    assert plan.newest_fix["a"].fix.seq == 7


def test_the_will_after_data_leaves_the_device_offline() -> None:
    state = StateIn("a", State(online=False), NOW + timedelta(seconds=1))
    plan = plan_batch([fix_in("a", 1, 0), state])
    assert plan.seen["a"].online is False
    assert plan.seen["a"].last_seen == NOW + timedelta(seconds=1)


def test_unknown_and_revoked_devices_are_refused_with_their_payload() -> None:
    topics = Topics("anxin")
    payload = Fix(seq=1, t=NOW, lat=1, lon=1, acc=5).model_dump_json().encode()
    msgs = [
        Received(topics.uplink(d, UplinkKind.LOC), payload, NOW) for d in ("good", "gone", "who")
    ]
    access = {"good": Access.ACTIVE, "gone": Access.REVOKED}
    plan = prepare_batch(decode_all(msgs, topics, Limits()), access)
    assert [f.device_id for f in plan.fixes] == ["good"]
    reasons = sorted(r.reason for r in plan.rejected)
    assert reasons == [
        "device 'gone' is revoked: not provisioned to publish",
        "device 'who' is unknown: not provisioned to publish",
    ]
    assert all(r.payload == payload for r in plan.rejected)


def test_a_bug_in_decoding_costs_only_its_message(monkeypatch: pytest.MonkeyPatch) -> None:
    """An exception in decoding would stop the ingestor's batch loop: it becomes a dead
    letter of that message, with the error."""
    topics = Topics("anxin")
    message = Received(topics.uplink("w1", UplinkKind.LOC), b'{"v":1}', NOW)

    def broken(*args: object) -> list[object]:
        raise KeyError("surprise")

    monkeypatch.setattr(pipeline, "decode_parsed", broken)
    decoded = decode(message, topics, Limits())
    assert decoded.device_id == "w1"
    assert decoded.items == [
        Rejected(message.topic, "w1", b'{"v":1}', "could not be decoded: KeyError: 'surprise'", NOW)
    ]


def test_a_topic_is_parsed_once_for_the_access_check_and_decoding() -> None:
    topics = Topics("anxin")
    payload = Fix(seq=1, t=NOW, lat=1, lon=1, acc=5).model_dump_json().encode()
    good = decode(Received(topics.uplink("w1", UplinkKind.LOC), payload, NOW), topics, Limits())
    assert (good.device_id, [type(i) for i in good.items]) == ("w1", [FixIn])
    stray = decode(Received("anxin/v1/dev/w1/nope", payload, NOW), topics, Limits())
    assert stray.device_id is None
    assert [i.reason for i in stray.items] == ["topic is not an uplink topic of protocol v1"]  # type: ignore[union-attr]


@given(st.lists(st.tuples(st.sampled_from("abc"), st.integers(0, 20), st.integers(0, 60))))
def test_newest_fix_is_the_max_device_time(entries: list[tuple[str, int, int]]) -> None:
    items = [fix_in(d, seq, ago) for d, seq, ago in entries]
    plan = plan_batch(items)
    for device, newest in plan.newest_fix.items():
        assert newest.fix.t == max(i.fix.t for i in items if i.device_id == device)
    keys = [(f.device_id, f.fix.t, f.fix.seq) for f in plan.fixes]
    assert len(keys) == len(set(keys)) == len({(d, s, a) for d, s, a in entries})
