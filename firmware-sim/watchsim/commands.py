"""What the watch makes of a message on its ``cmd`` topic. Pure, like ``watch.py``, which
carries out the answer (a fresh fix, a notice on the screen, the ack).

Every command with an ``id`` is answered with an ack, once it is done or refused: an unknown
type, an invalid payload or one past its ``exp`` gets ``ok=false`` with the reason. A command
delivered again (QoS 1 redelivery) is acknowledged again but not carried out twice. Alarm
receipts are not commands the watch answers; they go to the alarm keeper.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError

from services.protocol import ORDER_MODELS, AlarmReceipt, ListenIn, Locate, SpeedDial, ViewedBy

NOTICE_VIEWED_BY = "notice:viewed-by"  # the wearer is shown who looked at their location
REMEMBERED = 1000  # command ids remembered, to recognise a redelivery


@dataclass(frozen=True)
class Answer:
    """The watch's answer to one command: its ack and, the first time, what to do."""

    command_id: str
    kind: str
    ok: bool
    detail: str | None = None
    send_fix: bool = False  # a fresh fix goes out before the ack
    ui: tuple[str, ...] = ()  # what the wearer sees or hears
    repeat: bool = False  # received before: acknowledge again, do nothing again


@dataclass
class CommandDesk:
    speed_dial: list[str] = field(default_factory=list)
    listen_ins: list[dict[str, Any]] = field(default_factory=list)  # call-backs placed
    notices: list[dict[str, Any]] = field(default_factory=list)  # "viewed by" shown
    ignored: list[str] = field(default_factory=list)  # unknown or broken messages
    answered: OrderedDict[str, Answer] = field(default_factory=OrderedDict)

    def receive(self, payload: bytes, now: float) -> AlarmReceipt | Answer | None:
        """A receipt for the alarm keeper, an answer to carry out, or None (ignored)."""
        try:
            data: Any = json.loads(payload)
        except (ValueError, UnicodeDecodeError):
            self.ignored.append("invalid-json")
            return None
        if not isinstance(data, dict):
            self.ignored.append("None")
            return None
        kind = data.get("type")
        if kind == "alarm_receipt":
            try:
                return AlarmReceipt.model_validate(data)
            except ValidationError:
                self.ignored.append("invalid-alarm_receipt")
                return None
        cid = data.get("id")
        cid = cid if isinstance(cid, str) and 0 < len(cid) <= 64 else None
        if cid is not None and cid in self.answered:
            return replace(self.answered[cid], repeat=True)
        if kind not in ORDER_MODELS:
            self.ignored.append(str(kind)[:64])
            return self._done(cid, str(kind)[:64], False, f"unknown command type {kind!r}")
        try:
            order = ORDER_MODELS[kind].model_validate(data)
        except ValidationError as err:
            self.ignored.append(f"invalid-{kind}")
            e = err.errors()[0]
            where = ".".join(str(x) for x in e["loc"]) or "payload"
            return self._done(cid, kind, False, f"invalid {kind}: {where}: {e['msg']}")
        if order.exp is not None and now > order.exp.timestamp():
            return self._done(order.id, kind, False, "it expired before it arrived")
        return self._carry_out(order, now)

    def _carry_out(self, order: Locate | SpeedDial | ListenIn | ViewedBy, now: float) -> Answer:
        t = datetime.fromtimestamp(now, UTC).isoformat()
        if isinstance(order, Locate):
            return self._done(order.id, order.type, True, send_fix=True)
        if isinstance(order, SpeedDial):
            self.speed_dial = list(order.numbers)
            return self._done(order.id, order.type, True)
        if isinstance(order, ListenIn):
            # A real watch now calls the number with its screen dark and its speaker off.
            self.listen_ins.append({"id": order.id, "number": order.number, "t": t})
            return self._done(order.id, order.type, True)
        assert isinstance(order, ViewedBy)
        self.notices.append({"id": order.id, "viewer": order.viewer, "at": order.at.isoformat()})
        return self._done(order.id, order.type, True, ui=(NOTICE_VIEWED_BY,))

    def _done(
        self, cid: str | None, kind: str, ok: bool, detail: str | None = None, **effects: Any
    ) -> Answer | None:
        if cid is None:
            return None  # nothing to acknowledge to
        answer = Answer(cid, kind, ok, detail[:500] if detail else None, **effects)
        self.answered[cid] = answer
        while len(self.answered) > REMEMBERED:
            self.answered.popitem(last=False)
        return answer

    def summary(self) -> dict[str, Any]:
        return {
            "speed_dial": list(self.speed_dial),
            "listen_ins": list(self.listen_ins),
            "notices": list(self.notices),
            "commands": [
                {"id": a.command_id, "type": a.kind, "ok": a.ok, "detail": a.detail}
                for a in self.answered.values()
            ],
        }
