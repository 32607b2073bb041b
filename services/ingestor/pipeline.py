"""The ingestor's stages, in order. This list is the ingestor: read it first.

    1. identify  topic → device id; the device must be provisioned and not revoked
    2. decode    payload → typed items (decode.py); failures become dead letters with reasons
    2b. limit    a device over its flood limit is dead-lettered, its alarms kept (flood.py)
    3. plan      de-duplicate within the batch, fold latest state per device (plan.py)
    4. store     one transaction: COPY fixes, alarms, state, dead letters (store.py)
    4b. fences   in it: fence decisions, enter/exit events (fence_stage.py)
    4c. alerts   in it: alert rules → alerts, their outbox rows and feed rows (alert_stage.py)
    5. confirm   after the commit: alarm receipts to the watches, then MQTT acks (service.py)

Stages 1–3 are pure and run here; 4 and 5 are I/O at the edge.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import Enum

from services.ingestor.decode import Limits, decode_message
from services.ingestor.flood import FloodTrial
from services.ingestor.items import Item, Rejected
from services.ingestor.plan import BatchPlan, plan_batch
from services.protocol import Topics


class Access(Enum):
    ACTIVE = "active"
    REVOKED = "revoked"
    UNKNOWN = "unknown"


@dataclass(frozen=True, slots=True)
class Received:
    """One MQTT message as it came off the wire."""

    topic: str
    payload: bytes
    received_at: datetime


def topic_devices(messages: Sequence[Received], topics: Topics) -> set[str]:
    """The device ids a batch speaks for, to look up their access before ``prepare_batch``."""
    out = set()
    for m in messages:
        parsed = topics.parse_uplink(m.topic)
        if parsed:
            out.add(parsed[0])
    return out


def identify(message: Received, topics: Topics, access: Mapping[str, Access]) -> Rejected | None:
    """Stage 1: only a provisioned, unrevoked device may publish; the topic names it."""
    parsed = topics.parse_uplink(message.topic)
    if parsed is None:
        return None  # decode rejects malformed topics with its own reason
    state = access.get(parsed[0], Access.UNKNOWN)
    if state is Access.ACTIVE:
        return None
    return Rejected(
        message.topic,
        parsed[0],
        message.payload,
        f"device {parsed[0]!r} is {state.value}: not provisioned to publish",
        message.received_at,
    )


def prepare_batch(
    messages: Sequence[Received],
    access: Mapping[str, Access],
    topics: Topics,
    limits: Limits,
    flood: FloodTrial | None = None,
) -> BatchPlan:
    """Stages 1–3 for one batch of messages (2b only when a ``flood`` trial is given)."""
    items: list[Item] = []
    for m in messages:
        refused = identify(m, topics, access)
        if refused is not None:
            items.append(refused)
            continue
        decoded = decode_message(m.topic, m.payload, m.received_at, topics, limits)
        items.extend(flood.admit(m.topic, m.payload, m.received_at, decoded) if flood else decoded)
    return plan_batch(items)
