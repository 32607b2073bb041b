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
from pathlib import Path
from types import FrameType

from services.mqtt_url import parse_mqtt_url
from services.settings import get_settings
from watchsim.fleet import Fleet
from watchsim.plan import FleetConfig, PlannedPress, parse_press, parse_range


def _press(spec: str) -> PlannedPress:  # argparse turns the ValueError into a usage error
    try:
        return parse_press(spec)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _range(spec: str) -> tuple[float, float]:
    try:
        return parse_range(spec)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


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
        help="stop after S seconds (default: until Ctrl-C/SIGTERM)",
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
        type=_press,
        action="append",
        default=[],
        metavar="SPEC",
        help="IDX:KIND[:MODE]@SECONDS, e.g. 1:sos:silent@5 (KIND sos|fall|removed; repeatable)",
    )
    a(
        "--offline-every",
        type=float,
        default=0.0,
        metavar="S",
        help="mean seconds between offline periods per watch (default 0 = never)",
    )
    a(
        "--offline-for",
        type=_range,
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
        offline_every_s=args.offline_every,
        offline_for_s=args.offline_for,
        utc_offset_h=args.utc_offset,
        seq_base=args.seq_base,
        max_payload_bytes=settings.max_payload_bytes,
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
