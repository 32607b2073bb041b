"""``anxin sim`` / ``python -m watchsim``: run a fleet of simulated watches against a broker.

``add_arguments`` and ``run`` are split so that ``services/cli.py`` can mount this as a
sub-command without this package knowing about the rest of the CLI.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import TypeVar

from services.mqtt_url import parse_mqtt_url
from services.settings import get_settings
from watchsim.fleet import Fleet
from watchsim.plan import (
    DEFAULT_WALK_RADIUS_M,
    DEMO_WALK_RADIUS_M,
    FleetConfig,
    parse_credentials,
    parse_press,
    parse_range,
    parse_stay,
    parse_wander,
)

T = TypeVar("T")


def _arg(parse: Callable[[str], T]) -> Callable[[str], T]:
    """argparse turns an ArgumentTypeError into a usage error that shows our message."""

    def convert(spec: str) -> T:
        try:
            return parse(spec)
        except ValueError as e:
            raise argparse.ArgumentTypeError(str(e)) from None

    convert.__name__ = parse.__name__.removeprefix("parse_")
    return convert


def add_arguments(parser: argparse.ArgumentParser) -> None:
    a = parser.add_argument
    a("--devices", type=int, default=10, metavar="N", help="number of watches (default 10)")
    a(
        "--rate",
        type=float,
        default=0.2,
        metavar="R",
        help="fixes per second per watch (default 0.2)",
    )
    a("--device-prefix", default="w", help="device id prefix (default w: w00001, w00002, …)")
    a("--first-index", type=int, default=1, metavar="I", help="first device number (default 1)")
    a("--seed", type=int, default=None, help="random seed (default: random, printed)")
    a(
        "--duration",
        type=float,
        default=None,
        metavar="S",
        help="stop after S real seconds, whatever the clock speed (default: until Ctrl-C)",
    )
    a(
        "--fixes",
        type=int,
        default=None,
        metavar="K",
        help="each watch publishes exactly K fixes; the run ends when all publishes are acked "
        "and all alarms receipted (exit 0) or after --drain-timeout (exit 1)",
    )
    a(
        "--drain-timeout",
        type=float,
        default=60.0,
        metavar="S",
        help="with --fixes: how long to wait for acks and receipts (default 60)",
    )
    a(
        "--heartbeat",
        type=float,
        default=60.0,
        metavar="S",
        help="seconds between status heartbeats (default 60)",
    )
    a(
        "--sos-every",
        type=float,
        default=0.0,
        metavar="S",
        help="mean seconds between random SOS presses in the fleet (default 0 = never)",
    )
    a(
        "--press",
        type=_arg(parse_press),
        action="append",
        default=[],
        metavar="SPEC",
        help="IDX:KIND[:MODE]@SECONDS, e.g. 1:sos:silent@5: device number IDX presses at that "
        "simulated second (KIND sos|fall|removed; repeatable)",
    )
    a(
        "--wander",
        type=_arg(parse_wander),
        action="append",
        default=[],
        metavar="IDX@S[:BEARING]",
        help="device number IDX stays home until simulated second S, then walks in a straight "
        "line away from home at 1.2 m/s (outdoors, gps, accuracy 5-15 m) until the run ends; "
        "BEARING in degrees, 0 = north, 90 = east (default: random, from --seed). Repeatable",
    )
    a(
        "--stay",
        type=_arg(parse_stay),
        action="append",
        default=[],
        metavar="IDX:LAT,LON:ACC",
        help="device number IDX stays indoors at LAT,LON for the whole run: wifi fixes claiming "
        "ACC metres, scattered around the point as that accuracy says (68 %% within ACC, "
        "none beyond 2×ACC). Repeatable; one --wander or --stay per device",
    )
    a(
        "--demo-homes",
        action="store_true",
        help="home of each watch = geofences.demo.demo_home('wearer-' + device id), the "
        "centre of the demo fences, instead of a random point; the ordinary day then stays "
        f"within --walk-radius {DEMO_WALK_RADIUS_M:g} m of home",
    )
    a(
        "--walk-radius",
        type=float,
        default=None,
        metavar="M",
        help="the ordinary day's places are at most M metres from home (default "
        f"{DEFAULT_WALK_RADIUS_M:g}, {DEMO_WALK_RADIUS_M:g} with --demo-homes)",
    )
    a(
        "--clock-start-ago",
        type=float,
        default=0.0,
        metavar="S",
        help="device time starts S seconds before now (default 0); with --clock-speed it "
        "catches up with the real clock and never overtakes it",
    )
    a(
        "--clock-speed",
        type=float,
        default=1.0,
        metavar="X",
        help="device time runs X times faster than real time until it reaches the real clock, "
        "then at real speed (default 1; above 1 needs --clock-start-ago). Fix rate, heartbeats, "
        "presses, offline periods and scenarios are all in device time; e.g. "
        "--clock-start-ago 600 --clock-speed 20 plays ten minutes in about 32 s",
    )
    a(
        "--offline-every",
        type=float,
        default=0.0,
        metavar="S",
        help="mean device seconds between offline periods per watch (default 0 = never)",
    )
    a(
        "--offline-for",
        type=_arg(parse_range),
        default=(30.0, 300.0),
        metavar="A-B",
        help="duration range of an offline period in seconds (default 30-300)",
    )
    a(
        "--utc-offset",
        type=float,
        default=8.0,
        metavar="H",
        help="the homes' time zone; people walk by day, stay home at night (default 8)",
    )
    a(
        "--seq-base",
        type=int,
        default=None,
        metavar="N",
        help="first sequence number - 1 (default: epoch milliseconds, so restarts keep growing)",
    )
    a(
        "--mqtt-url",
        default=None,
        help="broker, mqtt://[user:pass@]host:port (default: ANXIN_MQTT_URL)",
    )
    a(
        "--credentials",
        type=Path,
        default=None,
        metavar="FILE",
        help="per-device broker logins: a JSON object {device id: password} (anxin devices "
        "issue-demo writes one); each watch logs in as its own device id. Default: the "
        "URL's user:pass, if any, for every watch",
    )
    a("--topic-prefix", default=None, help="first topic level (default: ANXIN_TOPIC_PREFIX)")
    a("--summary", type=Path, default=None, metavar="FILE", help="write a JSON summary at exit")


def config_from_args(args: argparse.Namespace) -> FleetConfig:
    settings = get_settings()
    url = args.mqtt_url or settings.mqtt_url
    if not url:
        raise ValueError("no broker: set ANXIN_MQTT_URL or pass --mqtt-url mqtt://host:port")
    return FleetConfig(
        broker=parse_mqtt_url(url),
        topic_prefix=args.topic_prefix or settings.topic_prefix,
        devices=args.devices,
        rate=args.rate,
        device_prefix=args.device_prefix,
        first_index=args.first_index,
        seed=args.seed,
        duration_s=args.duration,
        fixes=args.fixes,
        drain_timeout_s=args.drain_timeout,
        heartbeat_s=args.heartbeat,
        sos_every_s=args.sos_every,
        presses=list(args.press),
        wanders=list(args.wander),
        stays=list(args.stay),
        demo_homes=args.demo_homes,
        walk_radius_m=args.walk_radius,
        clock_speed=args.clock_speed,
        clock_start_ago_s=args.clock_start_ago,
        offline_every_s=args.offline_every,
        offline_for_s=args.offline_for,
        utc_offset_h=args.utc_offset,
        seq_base=args.seq_base,
        max_payload_bytes=settings.max_payload_bytes,
        credentials=parse_credentials(args.credentials) if args.credentials else None,
    )


def run(args: argparse.Namespace) -> int:
    try:
        config = config_from_args(args)
        fleet = Fleet(config)
    except ValueError as e:
        print(f"watchsim: {e}", file=sys.stderr)
        return 2

    def stop(signum: int, frame: FrameType | None) -> None:
        fleet.request_stop()

    previous = {}
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            previous[sig] = signal.signal(sig, stop)
    try:
        code = fleet.run()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if args.summary is not None:
            args.summary.parent.mkdir(parents=True, exist_ok=True)
            args.summary.write_text(json.dumps(fleet.summary(), indent=2) + "\n")
    return code


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="watchsim", description="Simulated Anxin watches: walks, alarms, offline buffers."
    )
    add_arguments(parser)
    return run(parser.parse_args(argv))
