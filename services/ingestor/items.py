"""What one received MQTT message becomes after decoding: typed items, or a rejection.

Plain frozen dataclasses shared by the pipeline's stages (decode → plan → store), so each stage
can be tested alone with values built by hand.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from services.protocol import Ack, Alarm, Fix, Position, State, Status


@dataclass(frozen=True, slots=True)
class FixIn:
    device_id: str
    fix: Fix
    received_at: datetime


@dataclass(frozen=True, slots=True)
class AlarmIn:
    """An alarm is kept even when its position is unusable: ``fix_error`` says why."""

    device_id: str
    alarm: Alarm
    position: Position | None
    fix_error: str | None
    received_at: datetime


@dataclass(frozen=True, slots=True)
class StatusIn:
    device_id: str
    status: Status
    received_at: datetime


@dataclass(frozen=True, slots=True)
class StateIn:
    device_id: str
    state: State
    received_at: datetime


@dataclass(frozen=True, slots=True)
class AckIn:
    device_id: str
    ack: Ack
    received_at: datetime


@dataclass(frozen=True, slots=True)
class Rejected:
    """A payload (or one item of a batch) that failed; stored raw in ``dead_letters``."""

    topic: str
    device_id: str | None
    payload: bytes
    reason: str
    received_at: datetime


Item = FixIn | AlarmIn | StatusIn | StateIn | AckIn | Rejected
