"""What a fleet run should do: its configuration and the parsers for the CLI's small languages
(the broker URL is parsed by ``services.mqtt_url``, shared by every MQTT client we run).

Kept apart from ``fleet.py`` so that a test (or ``anxin demo``) can build a ``FleetConfig`` in
code, and so the parsing rules are tested without a broker.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field, replace
from pathlib import Path

from services.mqtt_url import MqttTarget
from services.protocol import DEVICE_ID_RE, AlarmMode, AlarmType
from watchsim.clock import MAX_SPEED

DEFAULT_WALK_RADIUS_M = 1500.0
# The demo neighbourhood fence is 1–2 km across: an ordinary day within 500 m of home keeps
# even the noisy fixes of a walk (true position + receiver error) within about 600 m.
DEMO_WALK_RADIUS_M = 500.0


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


@dataclass(frozen=True)
class PlannedWander:
    """``--wander 2@60:90``: device number 2 is at home until simulated second 60, then walks
    due east (bearing 90°) away from home at 1.2 m/s until the run ends. ``bearing_deg=None``:
    a random bearing, seeded by ``--seed`` and the device id."""

    device_index: int
    at_s: float
    bearing_deg: float | None = None


@dataclass(frozen=True)
class PlannedStay:
    """``--stay 3:31.2304,121.4737:150``: device number 3 stays at that point all run, wifi
    fixes claiming 150 m and scattered accordingly."""

    device_index: int
    lat: float
    lon: float
    acc_m: float


_NUM = r"(\d+(?:\.\d*)?)"
_SIGNED = r"([-+]?\d+(?:\.\d*)?)"
_WANDER_RE = re.compile(rf"^(\d+)@{_NUM}(?::{_SIGNED})?$")
_STAY_RE = re.compile(rf"^(\d+):{_SIGNED},{_SIGNED}:{_NUM}$")


def parse_wander(spec: str) -> PlannedWander:
    m = _WANDER_RE.match(spec.strip())
    if not m:
        raise ValueError(
            f"bad wander {spec!r}: want IDX@SECONDS[:BEARING], e.g. 1@60 or 1@60:90 "
            "(bearing in degrees, 0 = north, 90 = east)"
        )
    idx, at, bearing = m.groups()
    return PlannedWander(int(idx), float(at), None if bearing is None else float(bearing) % 360)


def parse_stay(spec: str) -> PlannedStay:
    m = _STAY_RE.match(spec.strip().replace(" ", ""))
    if not m:
        raise ValueError(f"bad stay {spec!r}: want IDX:LAT,LON:ACC, e.g. 2:31.2304,121.4737:150")
    idx, lat, lon, acc = m.groups()
    stay = PlannedStay(int(idx), float(lat), float(lon), round(float(acc), 1))
    if not (-90 <= stay.lat <= 90 and -180 <= stay.lon <= 180):
        raise ValueError(f"bad stay {spec!r}: latitude or longitude out of range")
    if not 0 < stay.acc_m <= 100_000:  # the protocol's range for acc
        raise ValueError(f"bad stay {spec!r}: want an accuracy in (0, 100000] metres")
    return stay


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


def parse_credentials(path: Path) -> dict[str, str]:
    """``--credentials FILE``: a JSON object {device id: password}, as written by ``anxin
    devices issue-demo`` (or assembled from ``anxin devices provision --json``)."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise ValueError(f"--credentials {path}: {e}") from None
    if not isinstance(data, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in data.items()
    ):
        raise ValueError(f"--credentials {path}: want a JSON object {{device id: password}}")
    return data


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
    # Device time (clock.py): starts this long before now, runs this much faster, never ahead.
    clock_speed: float = 1.0
    clock_start_ago_s: float = 0.0
    demo_homes: bool = False  # homes from geofences.demo.demo_home("wearer-" + device id)
    walk_radius_m: float | None = None  # default: 1500 m, or DEMO_WALK_RADIUS_M with demo homes
    wanders: list[PlannedWander] = field(default_factory=list)
    stays: list[PlannedStay] = field(default_factory=list)
    progress_every_s: float = 10.0
    keepalive_s: int = 30
    session_expiry_s: int = 24 * 3600
    # Per-device broker logins (device id -> password); None: every watch uses ``broker``'s.
    credentials: dict[str, str] | None = field(default=None, repr=False)

    def broker_for(self, did: str) -> MqttTarget:
        """Where watch ``did`` connects, and as whom: with per-device credentials it logs in
        as its own device id, which is what the broker's ACL keys on (docs/security.md)."""
        if self.credentials is None:
            return self.broker
        return replace(self.broker, username=did, password=self.credentials[did])

    def walk_radius(self) -> float:
        if self.walk_radius_m is not None:
            return self.walk_radius_m
        return DEMO_WALK_RADIUS_M if self.demo_homes else DEFAULT_WALK_RADIUS_M

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
        if not 0 < self.clock_speed <= MAX_SPEED:
            raise ValueError(f"--clock-speed must be in (0, {MAX_SPEED:g}]")
        if not self.clock_start_ago_s >= 0:
            raise ValueError("--clock-start-ago must be >= 0")
        if self.clock_speed > 1 and self.clock_start_ago_s == 0:
            raise ValueError(
                "--clock-speed above 1 needs --clock-start-ago: device time never runs ahead "
                "of the real clock, so without a head start there is nothing to compress"
            )
        if not self.walk_radius() > 0:
            raise ValueError("--walk-radius must be > 0")
        last = self.first_index + self.devices - 1
        scripted: dict[int, str] = {}
        for opt, items in (
            ("--press", self.presses),
            ("--wander", self.wanders),
            ("--stay", self.stays),
        ):
            for p in items:
                if not self.first_index <= p.device_index <= last:
                    raise ValueError(
                        f"{opt} names device {p.device_index}, the fleet is "
                        f"{self.first_index}..{last}"
                    )
                if opt == "--press":
                    continue
                if p.device_index in scripted:
                    raise ValueError(
                        f"device {p.device_index} has two scenarios "
                        f"({scripted[p.device_index]} and {opt}); one per watch"
                    )
                scripted[p.device_index] = opt
        ids = self.device_ids()  # raises on an id the protocol refuses
        if self.credentials is not None:
            missing = [d for d in ids if d not in self.credentials]
            if missing:
                more = f" and {len(missing) - 1} more" if len(missing) > 1 else ""
                raise ValueError(f"--credentials has no password for {missing[0]}{more}")
