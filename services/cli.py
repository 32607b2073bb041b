"""``anxin``: one entry point, a subcommand per job (demo, ingest, notify, api, sim, db, fences,
devices)."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from pathlib import Path

from services.devices.cli import add_devices_parser
from services.settings import Settings, get_settings


def _need(settings: Settings, *names: str) -> None:
    missing = [f"ANXIN_{n.upper()}" for n in names if not getattr(settings, n)]
    if missing:
        sys.exit(f"anxin: set {' and '.join(missing)} (or run `anxin demo`, which starts its own)")


def _stop_on_signals() -> threading.Event:
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    return stop


def cmd_ingest(args: argparse.Namespace) -> int:
    from services.ingestor.service import run_ingestor

    settings = get_settings()
    _need(settings, "mqtt_url", "database_url")
    run_ingestor(settings, _stop_on_signals(), leave_group=args.leave_group)
    return 0


def cmd_notify(args: argparse.Namespace) -> int:
    from services.notifier.service import Notifier

    settings = get_settings()
    _need(settings, "database_url")
    Notifier(settings).run(_stop_on_signals())
    return 0


def cmd_api(args: argparse.Namespace) -> int:
    import uvicorn

    from services.api.app import create_app

    settings = get_settings()
    _need(settings, "database_url")  # and ANXIN_AUTH_SECRET and/or ANXIN_API_TOKEN: create_app says
    uvicorn.run(
        create_app(settings),
        host=settings.api_host,
        port=settings.api_port,
        log_level="warning",
        access_log=False,
        # The C event loop and HTTP parser: the pure-Python h11 parser and asyncio loop
        # took about a third of the CPU of a location read (docs/performance.md).
        loop="uvloop",
        http="httptools",
    )
    return 0


def cmd_sim(args: argparse.Namespace) -> int:
    """The simulator owns its options (firmware-sim/watchsim/cli.py); they pass through."""
    from watchsim.cli import add_arguments, run

    parser = argparse.ArgumentParser(prog="anxin sim", description="Simulated watches.")
    add_arguments(parser)
    return run(parser.parse_args(args.sim_args))


def cmd_migrate(args: argparse.Namespace) -> int:
    from services.storage.migrate import migrate

    settings = get_settings()
    _need(settings, "database_url")
    flavour, applied = migrate(
        settings.database_url or "", settings.retention_days, settings.partition_days_ahead
    )
    print(f"schema up to date ({flavour.value}); applied now: {', '.join(applied) or 'none'}")
    return 0


def cmd_seed_demo(args: argparse.Namespace) -> int:
    import psycopg

    from services.storage.provisioning import seed_demo

    settings = get_settings()
    _need(settings, "database_url")
    with psycopg.connect(settings.database_url or "") as conn:
        n = seed_demo(conn, args.devices, prefix=args.device_prefix)
    print(f"{n} demo wearers and devices present")
    return 0


def cmd_fences_check(args: argparse.Namespace) -> int:
    from geofences.cli import check_file

    return check_file(args.file)


def cmd_fences_load(args: argparse.Namespace) -> int:
    """Validate a FeatureCollection and store it; nothing is stored unless all of it is valid."""
    import json

    import psycopg

    from geofences.geojson import fences_from_geojson
    from geofences.validate import FenceValidationError
    from services.storage.fences import names_by_wearer, save_fences

    settings = get_settings()
    _need(settings, "database_url")
    try:
        doc = json.loads(args.file.read_text())
    except (OSError, ValueError) as err:
        print(f"{args.file}: {err}", file=sys.stderr)
        return 1
    with psycopg.connect(settings.database_url or "") as conn:
        try:
            fences = fences_from_geojson(doc)
            if not args.replace:
                existing = names_by_wearer(conn, {f.wearer_id for f in fences})
                fences = fences_from_geojson(doc, existing_names=existing)
        except FenceValidationError as err:
            for problem in err.problems:
                print(f"{args.file}: {problem}", file=sys.stderr)
            return 1
        n = save_fences(conn, fences, replace=args.replace)
    print(f"{n} fences stored")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from services.demo import run_demo

    return run_demo(get_settings(), args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="anxin", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser("demo", help="run everything: servers, ingestor, API, watches")
    demo.add_argument("--devices", type=int, default=20, help="simulated watches (default 20)")
    demo.add_argument("--rate", type=float, default=0.2, help="fixes per second per watch")
    demo.add_argument("--duration", type=float, default=None, help="stop after S seconds")
    demo.set_defaults(func=cmd_demo)

    ingest = sub.add_parser("ingest", help="run the ingestor (MQTT → database)")
    ingest.add_argument(
        "--leave-group",
        action="store_true",
        help="scale down: store this replica's backlog, leave the shared subscription, end",
    )
    ingest.set_defaults(func=cmd_ingest)
    sub.add_parser("api", help="serve the family API").set_defaults(func=cmd_api)
    sub.add_parser(
        "notify", help="run the notifier (outbox → channels, escalation, offline alerts)"
    ).set_defaults(func=cmd_notify)

    sim = sub.add_parser("sim", help="run simulated watches (anxin sim --help)", add_help=False)
    sim.set_defaults(func=cmd_sim)

    db = sub.add_parser("db", help="database administration")
    db_sub = db.add_subparsers(dest="db_command", required=True)
    db_sub.add_parser("migrate", help="apply schema migrations (idempotent)").set_defaults(
        func=cmd_migrate
    )
    seed = db_sub.add_parser("seed-demo", help="create the demo wearers w00001…")
    seed.add_argument("--devices", type=int, default=20)
    seed.add_argument("--device-prefix", default="w")
    seed.set_defaults(func=cmd_seed_demo)

    fences = sub.add_parser("fences", help="check and load GeoJSON fence files")
    fences_sub = fences.add_subparsers(dest="fences_command", required=True)
    check = fences_sub.add_parser("check", help="validate a file; one line per problem")
    check.add_argument("file", type=Path)
    check.set_defaults(func=cmd_fences_check)
    load = fences_sub.add_parser("load", help="validate and store a file's fences")
    load.add_argument("file", type=Path)
    load.add_argument(
        "--replace", action="store_true", help="replace fences of the same wearer and name"
    )
    load.set_defaults(func=cmd_fences_load)
    add_devices_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser()
    args, rest = parser.parse_known_args(argv)
    if args.command == "sim":
        args.sim_args = rest
    elif rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
