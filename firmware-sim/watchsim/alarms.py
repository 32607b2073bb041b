"""Alarms a watch keeps until the backend has committed them (end-to-end acknowledgement).

QoS 1 only gets an alarm to the broker, and a broker that crashes between its PUBACK and its
next snapshot loses it (docs: "A broker crash loses acknowledged messages"). So a watch keeps
every alarm and re-sends the very same bytes, same seq, with exponential backoff until an
``AlarmReceipt`` on its cmd topic names that seq. The backend's unique (device, seq) key makes
the copies harmless.
"""

from __future__ import annotations

from dataclasses import dataclass

from services.protocol import Alarm, AlarmMode, AlarmType


@dataclass
class PendingAlarm:
    """An alarm not yet receipted: its payload is frozen at press time and re-sent as is."""

    alarm: Alarm
    payload: bytes
    sends: int = 0
    next_send: float = 0.0

    @property
    def seq(self) -> int:
        return self.alarm.seq


@dataclass
class AlarmRecord:
    """History for the summary: every alarm ever raised, receipted or not."""

    seq: int
    type: AlarmType
    mode: AlarmMode
    t: float
    sends: int = 0
    receipted_t: float | None = None


class AlarmKeeper:
    def __init__(self, resend_first_s: float = 2.0, resend_max_s: float = 30.0) -> None:
        self.resend_first_s = resend_first_s
        self.resend_max_s = resend_max_s
        self.pending: dict[int, PendingAlarm] = {}
        self.records: dict[int, AlarmRecord] = {}
        self.unknown_receipts: list[int] = []

    def add(self, alarm: Alarm, now: float) -> PendingAlarm:
        p = PendingAlarm(alarm, alarm.model_dump_json(exclude_none=True).encode())
        self.pending[alarm.seq] = p
        self.records[alarm.seq] = AlarmRecord(alarm.seq, alarm.type, alarm.mode, now)
        return p

    def backoff(self, sends: int) -> float:
        """2 s, 4 s, 8 s … capped: after the ``sends``-th send."""
        return min(self.resend_max_s, self.resend_first_s * 2 ** max(0, sends - 1))

    def mark_sent(self, p: PendingAlarm, now: float) -> None:
        p.sends += 1
        p.next_send = now + self.backoff(p.sends)
        self.records[p.seq].sends = p.sends

    def in_order(self) -> list[PendingAlarm]:
        return sorted(self.pending.values(), key=lambda p: p.seq)

    def due(self, now: float) -> list[PendingAlarm]:
        return [p for p in self.in_order() if p.next_send <= now]

    def receipt(self, seqs: list[int], now: float) -> list[Alarm]:
        """Forget the named alarms; return those that were pending. Unknown seqs (a duplicate
        receipt, a number from before a restart) are recorded and otherwise ignored."""
        done = []
        for seq in seqs:
            p = self.pending.pop(seq, None)
            if p is None:
                self.unknown_receipts.append(seq)
                continue
            self.records[seq].receipted_t = now
            done.append(p.alarm)
        return done
