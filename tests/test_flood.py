"""The flood limit (stage 2b): a device over its token bucket is dead-lettered as rate_limited,
alarms always pass, other devices are untouched, and a retried batch is not charged twice."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from services.ingestor.decode import Limits
from services.ingestor.flood import RATE_LIMITED, FloodLimiter
from services.ingestor.items import AlarmIn, FixIn, Rejected
from services.ingestor.pipeline import Access, Received, decode_all, prepare_batch
from services.protocol import Alarm, Fix, Status, Topics, UplinkKind

TOPICS = Topics("anxin")
NOW = datetime(2026, 11, 25, 8, 0, tzinfo=UTC)
ACCESS = {d: Access.ACTIVE for d in ("flood", "calm", "w1", "w2")}


def fix_msg(device: str, seq: int, at: float, t: float | None = None) -> Received:
    """A ``loc`` message received ``at`` seconds after NOW, stamped ``t`` (default: ``at``)."""
    stamp = NOW + timedelta(seconds=at if t is None else t)
    payload = Fix(seq=seq, t=stamp, lat=31.2, lon=121.4, acc=10).model_dump_json()
    return Received(TOPICS.uplink(device, UplinkKind.LOC), payload.encode(), _at(at))


def alarm_msg(device: str, seq: int, at: float) -> Received:
    payload = Alarm(seq=seq, t=_at(at), type="sos", mode="silent").model_dump_json()
    return Received(TOPICS.uplink(device, UplinkKind.ALARM), payload.encode(), _at(at))


def _at(seconds: float) -> datetime:
    return NOW + timedelta(seconds=seconds)


def run(limiter: FloodLimiter, messages: list[Received]):
    """Plan the messages as the ingestor does, one committed batch."""
    trial = limiter.trial()
    plan = prepare_batch(decode_all(messages, TOPICS, Limits()), ACCESS, trial)
    trial.commit()
    return plan, trial


def test_a_flood_of_fixes_stamped_now_is_limited_to_the_burst_and_counted() -> None:
    limiter = FloodLimiter(rate_per_s=5, burst=60)
    flood = [fix_msg("flood", seq, at=seq / 1000) for seq in range(2000)]  # 2 s, 1000/s
    plan, trial = run(limiter, flood)
    stored = len(plan.fixes)
    assert 60 <= stored <= 60 + 2 * 5 + 1
    limited = [r for r in plan.rejected if r.reason.startswith(RATE_LIMITED)]
    assert stored + len(limited) == 2000  # nothing silently dropped
    assert trial.limited == {"flood": len(limited)}
    assert "ANXIN_DEVICE_RATE_PER_S" in limited[0].reason
    assert {r.payload for r in limited} <= {m.payload for m in flood}  # kept raw
    assert limiter.take_report() == {"flood": len(limited)}
    assert limiter.take_report() == {}


def test_an_sos_in_a_flood_always_gets_through() -> None:
    limiter = FloodLimiter(rate_per_s=1, burst=2)
    msgs = [fix_msg("flood", s, at=0) for s in range(10)] + [alarm_msg("flood", 99, at=0)]
    plan, _ = run(limiter, msgs)
    assert [a.alarm.seq for a in plan.alarms] == [99]
    assert len(plan.fixes) == 2


def test_a_limited_batch_is_one_dead_letter_and_keeps_its_alarms() -> None:
    limiter = FloodLimiter(rate_per_s=1, burst=1)
    batch = {
        "v": 1,
        "fixes": [json.loads(fix_msg("flood", s, at=0).payload) for s in (1, 2, 3)],
        "alarms": [{"v": 1, "seq": 4, "t": NOW.isoformat(), "type": "fall"}],
    }
    topic = TOPICS.uplink("flood", UplinkKind.BATCH)
    msgs = [fix_msg("flood", 0, at=0), Received(topic, json.dumps(batch).encode(), NOW)]
    plan, trial = run(limiter, msgs)
    assert [f.fix.seq for f in plan.fixes] == [0]  # the batch counted as ONE message, over
    [letter] = plan.rejected
    assert letter.payload == msgs[1].payload and letter.topic == topic
    assert "its 1 alarm(s) were taken out and stored" in letter.reason
    assert [a.alarm.seq for a in plan.alarms] == [4]
    assert trial.limited.total() == 1


def test_an_offline_batch_counts_as_one_message() -> None:
    limiter = FloodLimiter(rate_per_s=0.1, burst=2)
    fixes = [json.loads(fix_msg("w1", s, at=0, t=-3600 + s).payload) for s in range(500)]
    topic = TOPICS.uplink("w1", UplinkKind.BATCH)
    plan, _ = run(limiter, [Received(topic, json.dumps({"v": 1, "fixes": fixes}).encode(), NOW)])
    assert len(plan.fixes) == 500 and plan.rejected == []


def test_a_backlog_drained_at_once_passes_because_its_device_times_are_spread() -> None:
    """An hour of fixes a watch sent every 10 s while the ingestor was down, received in one
    second: the device's own clock moved an hour, so the bucket refilled."""
    limiter = FloodLimiter(rate_per_s=5, burst=60)
    backlog = [fix_msg("w1", s, at=3600 + s / 360, t=s * 10) for s in range(360)]
    plan, _ = run(limiter, backlog)
    assert len(plan.fixes) == 360 and plan.rejected == []


def test_a_watch_whose_clock_steps_back_still_refills_by_real_time() -> None:
    limiter = FloodLimiter(rate_per_s=1, burst=3)
    run(limiter, [fix_msg("w1", 0, at=0, t=0)])
    # Its clock is now an hour behind; one fix every 2 s of real time is within 1/s.
    later = [fix_msg("w1", s, at=2 * s, t=-3600 + 2 * s) for s in range(1, 50)]
    plan, _ = run(limiter, later)
    assert len(plan.fixes) == 49


def test_status_and_acks_are_charged_state_is_not() -> None:
    limiter = FloodLimiter(rate_per_s=1, burst=1)
    status = Status(seq=1, t=NOW, bat=50).model_dump_json().encode()
    state = b'{"v": 1, "online": false}'
    msgs = [
        Received(TOPICS.uplink("w1", UplinkKind.STATUS), status, NOW),
        Received(TOPICS.uplink("w1", UplinkKind.STATUS), status, NOW),
        Received(TOPICS.uplink("w1", UplinkKind.STATE), state, NOW),
    ]
    plan, trial = run(limiter, msgs)
    assert trial.limited == {"w1": 1}
    assert plan.seen["w1"].online is False  # the will still counts


def test_a_retried_batch_is_not_charged_twice() -> None:
    limiter = FloodLimiter(rate_per_s=1, burst=5)
    msgs = [fix_msg("w1", s, at=0) for s in range(5)]
    for _ in range(3):  # the database was away: planned three times, stored once
        uncommitted = limiter.trial()
        plan = prepare_batch(decode_all(msgs, TOPICS, Limits()), ACCESS, uncommitted)
        assert len(plan.fixes) == 5
    plan, _ = run(limiter, msgs)
    assert len(plan.fixes) == 5


def test_a_fresh_limiter_is_a_limiter() -> None:
    """No ``__len__``: an empty limiter must not read as "no limiter" in ``if limiter:``."""
    assert FloodLimiter(rate_per_s=1, burst=1)


def test_without_a_trial_nothing_is_limited() -> None:
    msgs = [fix_msg("w1", s, at=0) for s in range(500)]
    plan = prepare_batch(decode_all(msgs, TOPICS, Limits()), ACCESS)
    assert len(plan.fixes) == 500


def test_memory_is_bounded_by_the_tracked_devices() -> None:
    limiter = FloodLimiter(rate_per_s=1, burst=1, max_devices=3)
    for i in range(10):
        trial = limiter.trial()
        trial.charge(f"d{i}", 0.0, 0.0)
        trial.commit()
    assert limiter.tracked_devices == 3
    assert limiter.bucket("d9") is not None and limiter.bucket("d0") is None


# -- properties ----------------------------------------------------------------------------

steps = st.lists(
    st.tuples(
        st.sampled_from(["a", "b", "c"]),
        st.floats(0, 5, allow_nan=False),  # receive clock advance
        st.floats(-600, 600, allow_nan=False),  # device time, anywhere around
    ),
    max_size=200,
)


@settings(max_examples=300, deadline=None)
@given(
    rate=st.floats(0.01, 100),
    burst=st.integers(1, 100),
    steps=steps,
    batches=st.integers(1, 5),
)
def test_a_device_never_gets_more_than_its_burst_plus_what_its_clocks_allow(
    rate: float, burst: int, steps: list[tuple[str, float, float]], batches: int
) -> None:
    limiter = FloodLimiter(rate, burst)
    received = 0.0
    admitted: dict[str, int] = {}
    device_times: dict[str, list[float]] = {}
    receive_times: dict[str, list[float]] = {}
    chunk = max(1, len(steps) // batches)
    for start in range(0, len(steps), chunk):
        trial = limiter.trial()
        for device, advance, device_t in steps[start : start + chunk]:
            received += advance
            device_times.setdefault(device, []).append(device_t)
            receive_times.setdefault(device, []).append(received)
            admitted[device] = admitted.get(device, 0) + trial.charge(device, device_t, received)
        trial.commit()
    for device, n in admitted.items():
        d, r = device_times[device], receive_times[device]
        allowance = rate * ((max(d) - d[0]) + (r[-1] - r[0]))
        assert n <= burst + allowance + 1e-6


@settings(max_examples=200, deadline=None)
@given(
    flood=st.lists(st.floats(0, 10, allow_nan=False), max_size=300),
    calm=st.lists(st.floats(0, 10, allow_nan=False), max_size=20),
)
def test_a_flooder_never_costs_another_device_a_single_message(
    flood: list[float], calm: list[float]
) -> None:
    """The calm device's verdicts are the same with or without the flood interleaved."""
    messages = sorted([("flood", t) for t in flood] + [("calm", t) for t in calm],
                      key=lambda m: m[1])  # fmt: skip

    def verdicts(with_flood: bool) -> list[bool]:
        limiter = FloodLimiter(rate_per_s=1, burst=3)
        trial = limiter.trial()
        out = []
        for device, t in messages:
            if device == "flood" and not with_flood:
                continue
            ok = trial.charge(device, t, t)
            if device == "calm":
                out.append(ok)
        return out

    assert verdicts(with_flood=True) == verdicts(with_flood=False)


@settings(max_examples=200, deadline=None)
@given(
    kinds=st.lists(st.sampled_from(["loc", "alarm", "state"]), max_size=60),
    burst=st.integers(1, 5),
)
def test_every_message_is_stored_or_dead_lettered_and_every_alarm_stored(
    kinds: list[str], burst: int
) -> None:
    limiter = FloodLimiter(rate_per_s=0.5, burst=burst)
    msgs = []
    for i, kind in enumerate(kinds):
        if kind == "loc":
            msgs.append(fix_msg("flood", i, at=0))
        elif kind == "alarm":
            msgs.append(alarm_msg("flood", i, at=0))
        else:
            msgs.append(Received(TOPICS.uplink("flood", UplinkKind.STATE), b'{"online":true}', NOW))
    plan, trial = run(limiter, msgs)
    assert len(plan.alarms) == kinds.count("alarm")
    assert len(plan.fixes) + len(plan.rejected) == kinds.count("loc")
    assert len(plan.fixes) == min(burst, kinds.count("loc"))
    assert all(isinstance(r, Rejected) and r.reason.startswith(RATE_LIMITED) for r in plan.rejected)
    assert trial.limited.total() == len(plan.rejected)
    assert all(isinstance(f, FixIn) for f in plan.fixes)
    assert all(isinstance(a, AlarmIn) for a in plan.alarms)


def test_refilled_buckets_are_forgotten_and_a_flooder_is_not() -> None:
    """Memory: a quiet watch's bucket refills within seconds and is dropped, since a fresh
    bucket is full anyway; a device still over its limit keeps its (empty) bucket."""
    limiter = FloodLimiter(rate_per_s=1, burst=3)
    run(limiter, [fix_msg("calm", 1, at=0.0)] + [fix_msg("flood", s, at=s / 100) for s in range(9)])
    assert limiter.tracked_devices == 2
    now = _at(1.5).timestamp()  # calm: 2 + 1.5 tokens ≥ 3; flood: ~0 + 1.4 < 3
    assert limiter.forget_refilled(now) == 1
    assert limiter.bucket("calm") is None and limiter.bucket("flood") is not None
    # The forgotten watch gets the same answer as before: a full burst.
    plan, _ = run(limiter, [fix_msg("calm", s, at=1.5 + s / 100) for s in range(2, 7)])
    assert len(plan.fixes) == 3 and len(plan.rejected) == 2
    assert limiter.forget_refilled(_at(100).timestamp()) == 2
    assert limiter.tracked_devices == 0
