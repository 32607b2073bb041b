"""Stage 1, decode and validate: (topic, payload bytes) → items or rejections, with reasons.

Pure: no I/O, never raises on bad input. Every failure becomes a ``Rejected`` whose reason a
person can act on ("lat: must be <= 90, got 91"), because dead letters are read by people
debugging a watch's firmware.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from pydantic import BaseModel, ValidationError

from services.ingestor.items import AckIn, AlarmIn, FixIn, Item, Rejected, StateIn, StatusIn
from services.protocol import (
    UPLINK_MODELS,
    Ack,
    Alarm,
    Batch,
    Fix,
    Position,
    State,
    Status,
    Topics,
    UplinkKind,
)


@dataclass(frozen=True)
class Limits:
    max_payload_bytes: int = 256 * 1024
    max_future_skew: timedelta = timedelta(minutes=5)
    max_age: timedelta = timedelta(days=30)


# PostgreSQL keeps timestamps from 4713 BC to 294276 AD, Python reads back only years 1…9999. An
# alarm is never refused for its time, so a time outside Python's range (a watch that says
# "0001-01-01T00:00+14:00", which is 1 BC in UTC) is stored at the nearest edge instead: kept
# as it was, it would break every later read of the row (the API's events, the notifier). The
# day of margin keeps it readable in any session time zone; a re-send maps to the same value.
EARLIEST_STORABLE = datetime(1, 1, 2, tzinfo=UTC)
LATEST_STORABLE = datetime(9999, 12, 30, tzinfo=UTC)


def describe_errors(err: ValidationError, prefix: str = "") -> str:
    """One line per problem, naming the field and the offending value (shortened)."""
    parts = []
    for e in err.errors(include_url=False):
        loc = ".".join(str(p) for p in e["loc"]) or "payload"
        if e["type"] == "json_invalid":
            parts.append(f"{prefix}not valid JSON ({e['ctx'].get('error', e['msg'])})")
            continue
        got = "" if e["type"] == "missing" else f", got {_short(e.get('input'))}"
        parts.append(f"{prefix}{loc}: {e['msg']}{got}")
    return "; ".join(parts)


def _short(value: object, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def time_problem(t: datetime, received_at: datetime, limits: Limits) -> str | None:
    """Why a device time cannot order a fix, or None if it is plausible."""
    ahead_by = t - received_at  # timedeltas compared as they are: this runs for every fix
    if ahead_by > limits.max_future_skew:
        ahead = ahead_by.total_seconds()
        return (
            f"device time {t.isoformat()} is {ahead:.0f} s ahead of the server clock"
            f" (limit {limits.max_future_skew.total_seconds():.0f} s)"
        )
    if received_at - t > limits.max_age:
        return f"device time {t.isoformat()} is older than {limits.max_age.days} days"
    return None


def decode_message(
    topic: str, payload: bytes, received_at: datetime, topics: Topics, limits: Limits
) -> list[Item]:
    return decode_parsed(topic, topics.parse_uplink(topic), payload, received_at, limits)


def decode_parsed(
    topic: str,
    parsed: tuple[str, UplinkKind] | None,
    payload: bytes,
    received_at: datetime,
    limits: Limits,
) -> list[Item]:
    """``decode_message`` for a topic already parsed (``Topics.parse_uplink``): the pipeline
    parses each topic once and uses the device id for the access check too."""
    device_id = parsed[0] if parsed else None

    def reject(reason: str, raw: bytes = payload) -> Rejected:
        return Rejected(topic, device_id, raw, reason, received_at)

    if parsed is None:
        return [reject("topic is not an uplink topic of protocol v1")]
    if len(payload) > limits.max_payload_bytes:
        limit = limits.max_payload_bytes
        return [reject(f"payload of {len(payload)} bytes exceeds the {limit}-byte limit")]
    kind = parsed[1]
    try:
        model = UPLINK_MODELS[kind].model_validate_json(payload)
    except ValidationError as err:
        return [reject(describe_errors(err))]
    if isinstance(model, Batch):
        return _decode_batch(model, topic, parsed[0], received_at, limits)
    return [_typed_item(model, topic, parsed[0], payload, received_at, limits)]


def _typed_item(
    model: BaseModel,
    topic: str,
    device_id: str,
    raw: bytes,
    received_at: datetime,
    limits: Limits,
) -> Item:
    # JSON can carry a NUL only escaped, so a payload without that escape needs no look at
    # its fields (looking costs more than decoding, on every message).
    nul = (
        [name for name, value in model if isinstance(value, str) and "\x00" in value]
        if b"\\u0000" in raw
        else []
    )
    if nul:  # PostgreSQL text cannot hold it: refuse here, not by failing the whole batch
        return Rejected(
            topic, device_id, raw, f"{', '.join(nul)}: text may not contain NUL", received_at
        )
    if isinstance(model, Alarm):
        # Never lose an alarm to a bad clock or a bad fix: keep it, note what was wrong.
        position, fix_error = _alarm_position(model, received_at, limits)
        storable = min(max(model.t, EARLIEST_STORABLE), LATEST_STORABLE)
        if storable != model.t:
            note = (
                f"alarm time {model.t.isoformat()} cannot be stored; kept as {storable.isoformat()}"
            )
            fix_error = f"{note}; {fix_error}" if fix_error else note
            model = model.model_copy(update={"t": storable})
        return AlarmIn(device_id, model, position, fix_error, received_at)
    if isinstance(model, State):
        return StateIn(device_id, model, received_at)
    assert isinstance(model, Fix | Status | Ack)
    problem = time_problem(model.t, received_at, limits)
    if problem:
        return Rejected(topic, device_id, raw, problem, received_at)
    if isinstance(model, Fix):
        return FixIn(device_id, model, received_at)
    if isinstance(model, Status):
        return StatusIn(device_id, model, received_at)
    return AckIn(device_id, model, received_at)


def _alarm_position(
    alarm: Alarm, received_at: datetime, limits: Limits
) -> tuple[Position | None, str | None]:
    if alarm.fix is None:
        return None, "alarm carried no fix"
    try:
        position = Position.model_validate(alarm.fix)
    except ValidationError as err:
        return None, describe_errors(err, prefix="fix.")
    problem = time_problem(position.t, received_at, limits)
    if problem:
        return None, f"fix.{problem}"
    return position, None


def _decode_batch(
    batch: Batch, topic: str, device_id: str, received_at: datetime, limits: Limits
) -> list[Item]:
    """Each item of an offline batch stands alone: one bad fix costs only itself."""
    items: list[Item] = []
    for field, model_cls in (("fixes", Fix), ("alarms", Alarm)):
        for i, raw_item in enumerate(getattr(batch, field)):
            raw = json.dumps(raw_item, separators=(",", ":")).encode()
            try:
                model = model_cls.model_validate(raw_item)
            except ValidationError as err:
                items.append(
                    Rejected(
                        topic, device_id, raw, describe_errors(err, f"{field}[{i}]."), received_at
                    )
                )
                continue
            items.append(_typed_item(model, topic, device_id, raw, received_at, limits))
    return items
