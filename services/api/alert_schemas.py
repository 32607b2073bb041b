"""What the API says about alerts, contacts and escalation (input and output models)."""

from __future__ import annotations

from datetime import datetime, time
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, Field, HttpUrl, field_validator, model_validator

from services.alerts.model import AlertKind, AlertStatus
from services.api.text import Text

SeverityLabel = Literal["low", "medium", "high", "critical"]
KindLabel = Literal[
    "sos_audible", "sos_silent", "fall", "removed", "fence_exit", "fence_enter", "battery",
    "offline",
]  # fmt: skip
StatusLabel = Literal["open", "acknowledged", "resolved"]
assert set(KindLabel.__args__) == {k.value for k in AlertKind}  # type: ignore[attr-defined]
assert set(StatusLabel.__args__) == {s.value for s in AlertStatus}  # type: ignore[attr-defined]


class AlertFence(BaseModel):
    fence_id: str
    name: str
    kind: Literal["safe", "nogo"]


class AlertLocation(BaseModel):
    lat: float
    lon: float
    acc: float | None = Field(description="Accuracy radius in metres")
    t: datetime | None = Field(description="Device time of the fix shown")
    source: Literal["alarm", "fix", "last_known"] | None = Field(
        description="alarm: the alarm's own fix; fix: the fix that crossed the fence;"
        " last_known: the alarm's fix was missing, invalid or too inaccurate"
    )
    fix_problem: str | None = Field(description="Why the alarm's own fix was not used")


class Alert(BaseModel):
    alert_id: int
    wearer_id: str
    wearer_name: str
    device_id: str
    kind: KindLabel
    severity: SeverityLabel
    status: StatusLabel
    t: datetime = Field(description="Device time of what opened the alert")
    opened_at: datetime
    updated_at: datetime
    occurrences: int = Field(description="Repeats that joined this alert (SOS pressed again)")
    fence: AlertFence | None
    location: AlertLocation | None
    battery: int | None
    detail: dict[str, Any]
    tier: int = Field(description="The last escalation tier told (0: nobody configured)")
    next_escalation_at: datetime | None
    acknowledged_at: datetime | None
    acknowledged_by: int | None
    resolved_at: datetime | None
    resolved_by: int | None
    resolution_note: str | None
    auto_resolved: bool


class AlertPage(BaseModel):
    alerts: list[Alert]
    next_before: int | None = Field(description="Pass as ?before= for the next (older) page")


class Counts(BaseModel):
    total: int
    critical: int
    high: int
    medium: int
    low: int


class CareFeed(BaseModel):
    """A caregiver's (or a family's) unresolved alerts, most severe first, oldest first."""

    counts: Counts
    alerts: list[Alert]


class Acknowledge(BaseModel):
    contact_id: int | None = Field(
        default=None,
        description="Only the operator names it: a person always acts as their own contact",
    )


class Resolve(BaseModel):
    contact_id: int | None = Field(
        default=None, description="Only the operator names it (see Acknowledge)"
    )
    note: Text = Field(min_length=1, max_length=2000, description="What happened; required")

    @field_validator("note")
    @classmethod
    def _not_blank(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("a resolution needs a note that says what happened")
        return v


class TimelineEntry(BaseModel):
    at: datetime
    type: Literal["event", "action", "delivery"]
    what: str = Field(description="event kind, action (opened, escalated…) or channel")
    contact_id: int | None = None
    tier: int | None = None
    ok: bool | None = None
    detail: dict[str, Any] = Field(default_factory=dict)


class Timeline(BaseModel):
    alert: Alert
    entries: list[TimelineEntry]


# Contacts ------------------------------------------------------------------------------------


def _check_tz(tz: str) -> str:
    try:
        ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError) as err:
        raise ValueError(f"unknown IANA time zone {tz!r}") from err
    return tz


class QuietHoursIn(BaseModel):
    start: time
    end: time

    @model_validator(mode="after")
    def _not_empty(self) -> QuietHoursIn:
        if self.start.tzinfo is not None or self.end.tzinfo is not None:
            raise ValueError("quiet hours are wall-clock times in the contact's time zone:"
                             " give them without an offset")  # fmt: skip
        if self.start == self.end:
            raise ValueError("quiet hours need different start and end times")
        return self


class ContactIn(BaseModel):
    name: Text = Field(min_length=1, max_length=120)
    role: Literal["family", "caregiver"] = "family"
    language: Text = Field(
        default="zh-CN", pattern=r"^[A-Za-z]{2,3}(-[A-Za-z0-9]{2,8})*$", max_length=35
    )
    tz: Text = Field(default="Asia/Shanghai", max_length=64)
    quiet_hours: QuietHoursIn | None = Field(
        default=None, description="Low and medium alerts wait until they end; critical never do"
    )

    @field_validator("tz")
    @classmethod
    def _tz_ok(cls, v: str) -> str:
        return _check_tz(v)


class ContactPatch(BaseModel):
    name: Text | None = Field(default=None, min_length=1, max_length=120)
    role: Literal["family", "caregiver"] | None = None
    language: Text | None = Field(
        default=None, pattern=r"^[A-Za-z]{2,3}(-[A-Za-z0-9]{2,8})*$", max_length=35
    )
    tz: Text | None = Field(default=None, max_length=64)
    quiet_hours: QuietHoursIn | None = None

    @field_validator("tz")
    @classmethod
    def _tz_ok(cls, v: str | None) -> str | None:
        return None if v is None else _check_tz(v)


class Contact(BaseModel):
    contact_id: int
    name: str
    role: str
    language: str
    tz: str
    quiet_hours: QuietHoursIn | None
    wearer_ids: list[str]


class CareIn(BaseModel):
    wearer_ids: list[Annotated[Text, Field(min_length=1, max_length=80)]] = Field(max_length=10_000)


class PushKeys(BaseModel):
    p256dh: str = Field(min_length=20, max_length=200)
    auth: str = Field(min_length=8, max_length=100)


class ChannelIn(BaseModel):
    kind: Literal["email", "webhook", "webpush"]
    address: Text = Field(
        min_length=3, max_length=2000, description="E-mail address, webhook URL or push endpoint"
    )
    keys: PushKeys | None = Field(default=None, description="Web Push subscription keys")

    @model_validator(mode="after")
    def _address_fits_kind(self) -> ChannelIn:
        if self.kind == "email":
            local, _, domain = self.address.partition("@")
            if not local or "." not in domain or any(c.isspace() for c in self.address):
                raise ValueError(f"{self.address!r} is not an e-mail address")
        else:
            HttpUrl(self.address)
            if self.kind == "webpush" and self.keys is None:
                raise ValueError("a Web Push subscription needs its keys (p256dh, auth)")
        return self


class Channel(BaseModel):
    channel_id: int
    kind: str
    address: str
    enabled: bool


class ChannelCreated(Channel):
    secret: str | None = Field(
        description="Webhook signing secret: shown this once, keep it with the receiver"
    )


class TierIn(BaseModel):
    # Bounded as ids are everywhere (a bigint column): a larger number is a 422, not a 500.
    contact_ids: list[Annotated[int, Field(ge=1, le=2**62)]] = Field(min_length=1, max_length=50)
    ack_critical_s: int = Field(default=120, ge=1, le=86_400)
    ack_high_s: int = Field(default=900, ge=1, le=86_400)


class Escalation(BaseModel):
    tiers: list[TierIn] = Field(max_length=10, description="Tier 1 first")


class VapidKey(BaseModel):
    public_key: str = Field(description="applicationServerKey for PushManager.subscribe")
