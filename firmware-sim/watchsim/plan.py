"""What a fleet run should do: its configuration and the parsers for the CLI's small languages
(the broker URL is parsed by ``services.mqtt_url``, shared by every MQTT client we run).

Kept apart from ``fleet.py`` so that a test (or ``anxin demo``) can build a ``FleetConfig`` in
code, and so the parsing rules are tested without a broker.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from services.mqtt_url import MqttTarget
from services.protocol import DEVICE_ID_RE, AlarmMode, AlarmType


@dataclass(frozen=True)
class PlannedPress:
    """``--press 1:sos:silent@5``: device number 1 presses a silent SOS 5 s after start."""

    device_index: int
    kind: AlarmType
    mode: AlarmMode
    at_s: float


_PRESS_RE = re.compile(r"^(\d+):(sos|fall|removed)(?::(audible|silent))?@(\d+(?:\.\d*)?)$")


def parse_press(spec: str) -> PlannedPress:
    m = _PRESS_RE.match(spec.strip().lower())
    if not m:
        raise ValueError(
            f"bad press {spec!r}: want IDX:KIND[:MODE]@SECONDS, e.g. 1:sos:silent@5 "
            "(KIND sos|fall|removed, MODE audible|silent)"
        )
    idx, kind, mode, at = m.groups()
    if kind == "removed" and mode == "silent":
        raise ValueError(f"bad press {spec!r}: a removed-watch alarm has no silent mode")
    return PlannedPress(int(idx), AlarmType(kind), AlarmMode(mode or "audible"), float(at))


def parse_range(spec: str) -> tuple[float, float]:
    """``A-B`` seconds, e.g. ``30-300``; a single number means exactly that long."""
    a, sep, b = spec.partition("-")
    try:
        lo, hi = float(a), float(b) if sep else float(a)
    except ValueError:
        raise ValueError(f"bad range {spec!r}: want A-B in seconds, e.g. 30-300") from None
    if not 0 < lo <= hi:
        raise ValueError(f"bad range {spec!r}: want 0 < A <= B")
    return lo, hi


def device_id(prefix: str, index: int) -> str:
    """``w`` + 5-digit index: the ids the demo database seeds (w00001, w00002, …)."""
    did = f"{prefix}{index:05d}"
    if not DEVICE_ID_RE.match(did):
        raise ValueError(f"device id {did!r} is not allowed by the protocol")
    return did


@dataclass
class FleetConfig:
    broker: MqttTarget  # log it with .redacted(): its repr shows the password
    topic_prefix: str = "anxin"
    devices: int = 10
    rate: float = 0.2  # fixes per second per watch
    device_prefix: str = "w"
    first_index: int = 1
    seed: int | None = None
    duration_s: float | None = None
    fixes: int | None = None  # each watch makes exactly this many fixes, then the run drains
    drain_timeout_s: float = 60.0
    heartbeat_s: float = 60.0
    sos_every_s: float = 0.0  # mean seconds between random SOS presses, fleet-wide; 0 = never
    presses: list[PlannedPress] = field(default_factory=list)
    offline_every_s: float = 0.0  # per watch; 0 = never
    offline_for_s: tuple[float, float] = (30.0, 300.0)
    utc_offset_h: float = 8.0
    seq_base: int | None = None  # default: epoch milliseconds at start, see fleet.py
    max_payload_bytes: int = 64 * 1024
    progress_every_s: float = 10.0
    keepalive_s: int = 30
    session_expiry_s: int = 24 * 3600

    def device_ids(self) -> list[str]:
        return [device_id(self.device_prefix, self.first_index + i) for i in range(self.devices)]

    def validate(self) -> None:
        if self.devices < 1:
            raise ValueError("--devices must be at least 1")
        if not 0 < self.rate <= 50:
            raise ValueError("--rate must be in (0, 50] fixes per second")
        if self.fixes is not None and self.fixes < 0:
            raise ValueError("--fixes must be >= 0")
        if self.heartbeat_s <= 0:
            raise ValueError("--heartbeat must be > 0")
        last = self.first_index + self.devices - 1
        for p in self.presses:
            if not self.first_index <= p.device_index <= last:
                raise ValueError(
                    f"--press names device {p.device_index}, the fleet is "
                    f"{self.first_index}..{last}"
                )
        self.device_ids()  # raises on an id the protocol refuses
