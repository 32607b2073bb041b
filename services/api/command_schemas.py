"""What the API says about commands to a watch and the listen-in consent (input and output).

Phone numbers are plain strings here and checked in the route (services/commands/rules.py),
so that a bad list is answered with one line per problem, like a bad fence.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

from services.api.text import Text
from services.commands.rules import LIFETIMES

CommandKind = Literal["locate", "speed_dial", "listen_in", "viewed_by"]
CommandStatus = Literal["pending", "sent", "acknowledged", "failed", "expired"]


def _ttl(kind: str) -> Any:
    life = LIFETIMES[kind]
    return Field(
        default=None,
        ge=1,
        le=life.max_s,
        description=f"Seconds the command may wait for the watch's ack (default"
        f" {life.default_s}, at most {life.max_s}); then it expires, also at the broker",
    )


class LocateIn(BaseModel):
    ttl_s: int | None = _ttl("locate")


class SpeedDialIn(BaseModel):
    numbers: list[str] = Field(
        max_length=50,
        description="1 to 5 different E.164 numbers (+8613800138000), in button order",
        examples=[["+8613800138000", "+8613900139000"]],
    )
    ttl_s: int | None = _ttl("speed_dial")


class ListenInIn(BaseModel):
    number: str = Field(
        max_length=32,
        description="The phone the watch silently calls: must be the phone of the wearer's"
        " guardian or of a family member with an active relation",
        examples=["+8613800138000"],
    )
    ttl_s: int | None = _ttl("listen_in")


class Command(BaseModel):
    command_id: str = Field(description="What the watch echoes in its ack")
    wearer_id: str
    device_id: str
    kind: CommandKind
    payload: dict[str, Any]
    status: CommandStatus = Field(
        description="pending → sent (the broker has it; it waits there while the watch is"
        " offline) → acknowledged | failed (the watch's answer) | expired (no answer in time)"
    )
    requested_by: int | None = Field(description="The user who asked (null: the operator)")
    created_at: datetime
    sent_at: datetime | None
    acked_at: datetime | None
    expires_at: datetime
    detail: str | None = Field(description="Why it failed or expired, or the watch's note")


class Commands(BaseModel):
    commands: list[Command]


class ConsentIn(BaseModel):
    note: Text = Field(
        min_length=3,
        max_length=2000,
        description="How and when the wearer agreed to listen-in (who asked, who witnessed)",
    )


class Consent(BaseModel):
    active: bool = Field(description="Listen-in may be used now")
    consent_id: int | None = Field(default=None, description="The newest consent recorded")
    note: str | None = None
    recorded_by: int | None = Field(default=None, description="The user who recorded it")
    recorded_at: datetime | None = None
    withdrawn_at: datetime | None = None
