"""The ingestor's stages, in order. This list is the ingestor: read it first.

    1. decode    topic → device id, payload → typed items (decode.py); failures become dead
                 letters with reasons. It needs only the message: done once a batch
    2. identify  the topic's device must be provisioned and not revoked; if it is not, its
                 decoded items are dropped for one dead letter of the message
    2b. limit    a device over its flood limit is dead-lettered, its alarms kept (flood.py)
    3. plan      de-duplicate within the batch, fold latest state per device (plan.py)
    4. store     one transaction: COPY fixes, alarms, state, dead letters (store.py)
    4b. fences   in it: fence decisions, enter/exit events (fence_stage.py)
    4c. alerts   in it: alert rules → alerts, their outbox rows and feed rows (alert_stage.py)
    5. confirm   after the commit: alarm receipts to the watches, then MQTT acks (service.py)

Stages 1–3 are pure and run here; 4 and 5 are I/O at the edge.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from enum import Enum
from typing import NamedTuple

from services.ingestor.decode import Limits, decode_parsed
from services.ingestor.flood import FloodTrial
from services.ingestor.items import Item, Rejected
from services.ingestor.plan import BatchPlan, plan_batch
from services.protocol import Topics

log = logging.getLogger("anxin.ingestor")


class Access(Enum):
    ACTIVE = "active"
    REVOKED = "revoked"
    UNKNOWN = "unknown"


class Received(NamedTuple):
    """One MQTT message as it came off the wire. A named tuple: it crosses a pipe to the store
    process (store_process.py) as a plain tuple, which pickles ten times faster than a
    dataclass."""

    topic: str
    payload: bytes
    received_at: datetime


class Decoded(NamedTuple):
    """A received message after stage 1, which needs nothing but the message: the ingestor
    decodes a batch once, before any retry, and parses each topic once (for the access check
    and for decoding)."""

    received: Received
    device_id: str | None  # the topic's device; None if the topic is not an uplink topic
    items: list[Item]


def decode(message: Received, topics: Topics, limits: Limits) -> Decoded:
    """Stage 1 for one message. Never raises: an exception would stop the ingestor's batch
    loop, so even a bug in decoding costs only its message, which is dead-lettered with the
    error as its reason."""
    parsed = topics.parse_uplink(message.topic)
    device_id = parsed[0] if parsed else None
    try:
        items = decode_parsed(message.topic, parsed, message.payload, message.received_at, limits)
    except Exception as err:  # the docstring says why
        log.exception("decoding a message from %r failed", message.topic)
        reason = f"could not be decoded: {type(err).__name__}: {err}"[:500]
        items = [Rejected(message.topic, device_id, message.payload, reason, message.received_at)]
    return Decoded(message, device_id, items)


def decode_all(messages: Iterable[Received], topics: Topics, limits: Limits) -> list[Decoded]:
    return [decode(m, topics, limits) for m in messages]


def topic_devices(messages: Iterable[Decoded]) -> set[str]:
    """The device ids a batch speaks for, to look up their access before ``prepare_batch``."""
    return {m.device_id for m in messages if m.device_id is not None}


def identify(message: Decoded, access: Mapping[str, Access]) -> Rejected | None:
    """Stage 2: only a provisioned, unrevoked device may publish; the topic names it."""
    device_id = message.device_id
    if device_id is None:
        return None  # decode rejected the malformed topic with its own reason
    state = access.get(device_id, Access.UNKNOWN)
    if state is Access.ACTIVE:
        return None
    m = message.received
    return Rejected(
        m.topic,
        device_id,
        m.payload,
        f"device {device_id!r} is {state.value}: not provisioned to publish",
        m.received_at,
    )


def prepare_batch(
    messages: Sequence[Decoded],
    access: Mapping[str, Access],
    flood: FloodTrial | None = None,
) -> BatchPlan:
    """Stages 1–3 for one batch of decoded messages (2b only when a ``flood`` trial is
    given). A refused device's decoded items are dropped for one dead letter of its message."""
    items: list[Item] = []
    for d in messages:
        refused = identify(d, access)
        if refused is not None:
            items.append(refused)
        elif flood is not None:
            m = d.received
            items.extend(flood.admit(m.topic, m.payload, m.received_at, d.items))
        else:
            items.extend(d.items)
    return plan_batch(items)
