"""The simulated watch answers every command (locate, speed-dial, listen-in, viewed-by) with an
ack, once; refuses unknown, broken and stale ones; and a listen-in shows and sounds nothing."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

from services.protocol import (
    UPLINK_MODELS,
    Ack,
    Fix,
    ListenIn,
    Locate,
    SpeedDial,
    UplinkKind,
    ViewedBy,
)
from watchsim.commands import NOTICE_VIEWED_BY
from watchsim.watch import Uplink, Watch, WatchConfig

T0 = datetime(2025, 6, 2, 1, 0, tzinfo=UTC).timestamp()
LATER = datetime(2025, 6, 2, 2, 0, tzinfo=UTC)  # the commands' exp, an hour after T0


def make_watch(**cfg: object) -> Watch:
    w = Watch("w00001", now=T0, rng=random.Random(3), config=WatchConfig(**cfg))  # type: ignore[arg-type]
    w.set_link(True, T0)
    w.tick(T0 + 0.1)
    w.take_uplinks()  # the first heartbeat and fixes: not what these tests look at
    return w


def send(w: Watch, command: object, now: float = T0 + 1) -> list[Uplink]:
    payload = command if isinstance(command, bytes) else command.model_dump_json().encode()  # type: ignore[attr-defined]
    w.on_command(payload, now)
    return w.take_uplinks()


def acks(ups: list[Uplink]) -> list[Ack]:
    return [Ack.model_validate_json(u.payload) for u in ups if u.kind is UplinkKind.ACK]


def test_locate_sends_a_fresh_fix_at_once_then_the_ack() -> None:
    w = make_watch(fix_interval_s=600.0)  # no scheduled fix for ten minutes
    ups = send(w, Locate(id="c-locate", exp=LATER), now=T0 + 30)
    assert [u.kind for u in ups] == [UplinkKind.LOC, UplinkKind.ACK]
    fix = Fix.model_validate_json(ups[0].payload)
    assert fix.t.timestamp() == T0 + 30
    (ack,) = acks(ups)
    assert (ack.cmd, ack.ok, ack.detail) == ("c-locate", True, None)
    assert ack.seq > fix.seq  # one counter, strictly increasing
    assert ups[0].fix_seqs == (fix.seq,)  # counted as published, like any fix


def test_a_located_fix_does_not_spend_the_fix_budget() -> None:
    w = make_watch(max_fixes=3, fix_interval_s=600.0)
    made = w.fixes_made
    send(w, Locate(id="c1", exp=LATER), now=T0 + 30)
    assert w.fixes_made == made


def test_locate_while_the_network_is_gone_buffers_the_fix_and_still_answers() -> None:
    w = make_watch(fix_interval_s=600.0)
    w.go_offline(T0 + 20)
    ups = send(w, Locate(id="c1", exp=LATER), now=T0 + 30)
    assert [u.kind for u in ups] == [UplinkKind.ACK]
    assert len(w.buffer) == 1 and w.buffer[0].t.timestamp() == T0 + 30


def test_speed_dial_replaces_the_numbers_and_acks() -> None:
    w = make_watch()
    send(w, SpeedDial(id="s1", exp=LATER, numbers=["+8613800138000", "+8613900139000"]))
    ups = send(w, SpeedDial(id="s2", exp=LATER, numbers=["+4930123456"]))
    assert [(a.cmd, a.ok) for a in acks(ups)] == [("s2", True)]
    assert w.desk.speed_dial == ["+4930123456"]
    assert w.ui_events == []


def test_listen_in_is_acknowledged_and_recorded_but_nothing_is_shown_or_sounded() -> None:
    w = make_watch()
    ups = send(w, ListenIn(id="l1", exp=LATER, number="+8613800138000"), now=T0 + 5)
    assert [(a.cmd, a.ok) for a in acks(ups)] == [("l1", True)]
    assert [u.kind for u in ups] == [UplinkKind.ACK]
    assert w.ui_events == []
    assert w.desk.listen_ins == [
        {
            "id": "l1",
            "number": "+8613800138000",
            "t": datetime.fromtimestamp(T0 + 5, UTC).isoformat(),
        }
    ]


def test_viewed_by_shows_a_notice_and_acks() -> None:
    w = make_watch()
    at = datetime.fromtimestamp(T0, UTC)
    ups = send(w, ViewedBy(id="v1", exp=LATER, viewer="王小明", at=at))
    assert [(a.cmd, a.ok) for a in acks(ups)] == [("v1", True)]
    assert w.ui_events == [NOTICE_VIEWED_BY]
    assert w.desk.notices == [{"id": "v1", "viewer": "王小明", "at": at.isoformat()}]


def test_a_redelivered_command_is_acknowledged_again_but_done_once() -> None:
    w = make_watch(fix_interval_s=600.0)
    view = ViewedBy(id="v1", exp=LATER, viewer="Li", at=datetime.fromtimestamp(T0, UTC))
    send(w, view)
    again = send(w, view, now=T0 + 2)
    assert [(a.cmd, a.ok) for a in acks(again)] == [("v1", True)]
    assert w.ui_events == [NOTICE_VIEWED_BY] and len(w.desk.notices) == 1
    send(w, Locate(id="c1", exp=LATER), now=T0 + 3)
    assert [u.kind for u in send(w, Locate(id="c1", exp=LATER), now=T0 + 4)] == [UplinkKind.ACK]


def test_an_unknown_command_is_refused_with_the_reason() -> None:
    w = make_watch()
    ups = send(w, b'{"v": 1, "type": "fence_sync", "id": "f1"}')
    (ack,) = acks(ups)
    assert (ack.cmd, ack.ok, ack.detail) == ("f1", False, "unknown command type 'fence_sync'")
    assert w.ignored_commands == ["fence_sync"]


def test_an_invalid_command_is_refused_and_says_which_field() -> None:
    w = make_watch()
    ups = send(w, b'{"v": 1, "type": "speed_dial", "id": "s1", "numbers": ["110"]}')
    (ack,) = acks(ups)
    assert not ack.ok and ack.detail is not None
    assert ack.detail.startswith("invalid speed_dial: numbers.0:")
    assert w.desk.speed_dial == [] and w.ignored_commands == ["invalid-speed_dial"]


def test_a_command_past_its_expiry_is_not_carried_out() -> None:
    """A call-back minutes late is worse than none: the watch checks ``exp`` itself too."""
    w = make_watch()
    exp = datetime.fromtimestamp(T0, UTC) + timedelta(minutes=5)
    ups = send(w, ListenIn(id="l1", exp=exp, number="+8613800138000"), now=T0 + 301)
    (ack,) = acks(ups)
    assert (ack.ok, ack.detail) == (False, "it expired before it arrived")
    assert w.desk.listen_ins == []


def test_without_an_id_there_is_nothing_to_acknowledge() -> None:
    w = make_watch()
    assert send(w, b'{"v": 1, "type": "locate"}') == []
    assert send(w, b'{"v": 1, "type": "teleport"}') == []
    assert w.ignored_commands == ["invalid-locate", "teleport"]


def test_every_ack_is_a_valid_uplink() -> None:
    w = make_watch()
    ups = send(w, Locate(id="c1", exp=LATER)) + send(w, b'{"type": "x", "id": "y"}')
    for up in ups:
        UPLINK_MODELS[up.kind].model_validate_json(up.payload)
    assert len(acks(ups)) == 2


def test_the_summary_lists_commands_and_what_they_changed() -> None:
    w = make_watch()
    send(w, SpeedDial(id="s1", exp=LATER, numbers=["+8613800138000"]))
    send(w, ListenIn(id="l1", exp=LATER, number="+8613800138000"))
    s = w.desk.summary()
    assert s["speed_dial"] == ["+8613800138000"]
    assert [c["id"] for c in s["commands"]] == ["s1", "l1"]
    assert [li["number"] for li in s["listen_ins"]] == ["+8613800138000"]
