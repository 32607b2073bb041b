"""The MQTT contract, version 1: topics and payload models.

These models are the single definition of the wire format. The simulator builds them, the
ingestor decodes them and ``docs/protocol.md`` shows examples that a test parses with them, so
the three cannot drift apart. Unknown fields are ignored so that v1 can grow additively; the
device identity is never in a payload, only in the topic.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, TypeAdapter

PROTOCOL_VERSION = 1
DEVICE_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
E164_RE = re.compile(r"^\+[1-9][0-9]{6,14}$")  # +, country code, number; ASCII digits only
MAX_BATCH_ITEMS = 1000


class UplinkKind(StrEnum):
    """The last topic level of a message from a watch."""

    LOC = "loc"  # one location fix, QoS 1
    BATCH = "batch"  # fixes and alarms from the offline buffer, QoS 1
    ALARM = "alarm"  # sos / fall / removed, QoS 1, re-sent until receipted
    STATUS = "status"  # heartbeat with battery, QoS 1
    STATE = "state"  # retained online/offline, also the will message, QoS 1
    ACK = "ack"  # answer to a command, QoS 1


class Source(StrEnum):
    GPS = "gps"
    WIFI = "wifi"
    CELL = "cell"


class AlarmType(StrEnum):
    SOS = "sos"
    FALL = "fall"
    REMOVED = "removed"  # watch taken off the wrist


class AlarmMode(StrEnum):
    AUDIBLE = "audible"
    SILENT = "silent"  # nobody near the wearer may notice anything, receipts included


class _Payload(BaseModel):
    model_config = ConfigDict(extra="ignore", allow_inf_nan=False, frozen=True)


Seq = Annotated[int, Field(ge=0, le=2**53, description="Per-device message counter")]
Lat = Annotated[float, Field(ge=-90, le=90)]
Lon = Annotated[float, Field(ge=-180, le=180)]
Accuracy = Annotated[float, Field(gt=0, le=100_000, description="Radius in metres (68 %)")]


class Position(_Payload):
    """Where the watch was: the part of a fix that an alarm may carry too."""

    t: AwareDatetime = Field(description="Device time of the fix, UTC")
    lat: Lat
    lon: Lon
    acc: Accuracy
    src: Source = Source.GPS


class Fix(Position):
    """One location fix (topic kind ``loc``, or an item of a ``batch``)."""

    v: Literal[1] = 1
    seq: Seq
    spd: Annotated[float, Field(ge=0, le=100)] | None = Field(default=None, description="m/s")
    hdg: Annotated[float, Field(ge=0, lt=360)] | None = Field(default=None, description="degrees")
    bat: Annotated[int, Field(ge=0, le=100)] | None = Field(default=None, description="percent")


class Alarm(_Payload):
    """A button press or a sensor alarm. ``fix`` is optional and checked on its own: an alarm
    is never rejected because its position is missing or bad (it is stored without one)."""

    v: Literal[1] = 1
    seq: Seq
    t: AwareDatetime
    type: AlarmType
    mode: AlarmMode = AlarmMode.AUDIBLE
    fix: dict[str, Any] | None = Field(default=None, description="A Position, if the watch had one")


class Status(_Payload):
    """Heartbeat: the watch is alive, with its battery."""

    v: Literal[1] = 1
    seq: Seq
    t: AwareDatetime
    bat: Annotated[int, Field(ge=0, le=100)]
    charging: bool = False
    worn: bool | None = None


class State(_Payload):
    """Retained online/offline flag. The watch sets ``{"online": false}`` as its will."""

    v: Literal[1] = 1
    online: bool
    t: AwareDatetime | None = None


class Ack(_Payload):
    """The watch's answer to a command it received on its ``cmd`` topic."""

    v: Literal[1] = 1
    seq: Seq
    t: AwareDatetime
    cmd: Annotated[str, Field(min_length=1, max_length=64, description="The command's id")]
    ok: bool
    detail: Annotated[str, Field(max_length=500)] | None = None


class Batch(_Payload):
    """The offline buffer, uploaded when the watch is back. Items are kept as raw objects and
    decoded one by one, so one bad item costs only itself."""

    v: Literal[1] = 1
    fixes: list[dict[str, Any]] = Field(default_factory=list, max_length=MAX_BATCH_ITEMS)
    alarms: list[dict[str, Any]] = Field(default_factory=list, max_length=MAX_BATCH_ITEMS)


UPLINK_MODELS: dict[UplinkKind, type[_Payload]] = {
    UplinkKind.LOC: Fix,
    UplinkKind.BATCH: Batch,
    UplinkKind.ALARM: Alarm,
    UplinkKind.STATUS: Status,
    UplinkKind.STATE: State,
    UplinkKind.ACK: Ack,
}


# Downlink: the backend -> the watch, on ``{prefix}/v1/dev/{device_id}/cmd``, QoS 1.


class AlarmReceipt(_Payload):
    """The alarms with these sequence numbers are committed: stop re-sending them.
    For a silent alarm the watch shows and sounds nothing at all (nobody near the wearer may
    notice); for an audible one it may show "help is coming"."""

    v: Literal[1] = 1
    type: Literal["alarm_receipt"] = "alarm_receipt"
    id: Annotated[str, Field(min_length=1, max_length=64)]
    seqs: list[Seq]


CommandId = Annotated[str, Field(min_length=1, max_length=64, description="Echoed in the ack")]
E164 = Annotated[str, Field(pattern=E164_RE.pattern, description="E.164 phone number")]


class _Order(_Payload):
    """A command the watch carries out and answers with an ``Ack`` naming its ``id``."""

    v: Literal[1] = 1
    id: CommandId
    exp: AwareDatetime | None = Field(
        default=None,
        description="Carry it out only before this time; later, answer ok=false (a stale"
        " command is worse than none). The broker drops it then too (MQTT 5 message expiry)",
    )


class Locate(_Order):
    """Send a fresh fix at once (``loc``), then the ack."""

    type: Literal["locate"] = "locate"


class SpeedDial(_Order):
    """Replace the speed-dial numbers (the watch's call buttons, in this order)."""

    type: Literal["speed_dial"] = "speed_dial"
    numbers: Annotated[list[E164], Field(min_length=1, max_length=5)]


class ListenIn(_Order):
    """Call this number back silently: the watch shows and sounds nothing. The backend sends
    it only with the wearer's recorded consent, to a guardian's number, and audits it."""

    type: Literal["listen_in"] = "listen_in"
    number: E164


class ViewedBy(_Order):
    """Tell the wearer who looked at their location, and when."""

    type: Literal["viewed_by"] = "viewed_by"
    viewer: Annotated[str, Field(min_length=1, max_length=100)]
    at: AwareDatetime


Command = Annotated[
    AlarmReceipt | Locate | SpeedDial | ListenIn | ViewedBy, Field(discriminator="type")
]
COMMAND_ADAPTER: TypeAdapter[Command] = TypeAdapter(Command)
# The model the backend sends for each kind of the ``commands`` table (alarm receipts are not
# queued there: the ingestor sends them itself).
ORDER_MODELS: dict[str, type[_Order]] = {
    "locate": Locate,
    "speed_dial": SpeedDial,
    "listen_in": ListenIn,
    "viewed_by": ViewedBy,
}


_UPLINK_KINDS = {k.value: k for k in UplinkKind}


class Topics:
    """Topic names under one prefix (``anxin`` in production, a random one per test run)."""

    def __init__(self, prefix: str = "anxin") -> None:
        if not prefix or any(c in prefix for c in "+#/$"):
            raise ValueError(f"topic prefix must be one plain topic level, got {prefix!r}")
        self.prefix = prefix
        self._root = f"{prefix}/v{PROTOCOL_VERSION}/dev/"

    def uplink(self, device_id: str, kind: UplinkKind) -> str:
        return f"{self._root}{device_id}/{kind.value}"

    def command(self, device_id: str) -> str:
        return f"{self._root}{device_id}/cmd"

    def uplink_filters(self, kinds: Iterable[UplinkKind] = tuple(UplinkKind)) -> list[str]:
        """One filter per uplink kind: a single ``+/+`` would also match the ``cmd`` topics,
        and the ingestor would receive its own receipts."""
        return [f"{self._root}+/{kind.value}" for kind in kinds]

    def shared_uplink_filters(
        self, group: str, kinds: Iterable[UplinkKind] = tuple(UplinkKind)
    ) -> list[str]:
        return [f"$share/{group}/{f}" for f in self.uplink_filters(kinds)]

    def parse_uplink(self, topic: str) -> tuple[str, UplinkKind] | None:
        """(device_id, kind) for a well-formed uplink topic, else None."""
        if not topic.startswith(self._root):
            return None
        rest = topic[len(self._root) :].split("/")
        if len(rest) != 2 or not DEVICE_ID_RE.match(rest[0]):
            return None
        kind = _UPLINK_KINDS.get(rest[1])  # a dict, not UplinkKind(...): once a message
        return (rest[0], kind) if kind is not None else None
