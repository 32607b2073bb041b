"""``anxin devices …``: provision a watch (its password shown once), rotate, revoke, and write
Mosquitto's password and ACL files. Mounted by ``services/cli.py``; see docs/security.md."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from services.settings import Settings, get_settings

if TYPE_CHECKING:
    import psycopg

    from services.storage.provisioning import IssuedCredentials

RELOAD_HINT = (
    "then reload Mosquitto: kill -HUP <pid> (docker-compose: "
    "docker-compose run --rm broker-files && docker-compose kill -s HUP mosquitto)"
)


def _database_url(settings: Settings) -> str:
    if not settings.database_url:
        sys.exit("anxin devices: set ANXIN_DATABASE_URL")
    return settings.database_url


def _print_issued(issued: IssuedCredentials, as_json: bool, what: str) -> None:
    if as_json:
        print(
            json.dumps(
                {
                    "device_id": issued.device_id,
                    "wearer_id": issued.wearer_id,
                    "username": issued.device_id,
                    "password": issued.password,
                }
            )
        )
        return
    print(f"device    {issued.device_id}  ({what})")
    print(f"wearer    {issued.wearer_id}")
    print(f"username  {issued.device_id}")
    print(f"password  {issued.password}")
    print(
        "\nShown once: the database keeps only hashes. Put these on the watch, write the broker"
        " files (anxin devices broker-files --out DIR) and " + RELOAD_HINT.removeprefix("then "),
        file=sys.stderr,
    )


def _issue(
    args: argparse.Namespace, what: str, issue: Callable[[psycopg.Connection], IssuedCredentials]
) -> int:
    """Run ``issue`` (which makes credentials) and show them, once."""
    import psycopg

    from services.storage.provisioning import ProvisioningError

    with psycopg.connect(_database_url(get_settings())) as conn:
        try:
            issued = issue(conn)
        except ProvisioningError as e:
            print(f"anxin devices {args.devices_command}: {e}", file=sys.stderr)
            return 1
    _print_issued(issued, args.json, what)
    return 0


def cmd_provision(args: argparse.Namespace) -> int:
    from services.storage.provisioning import provision_device

    return _issue(
        args,
        "provisioned",
        lambda conn: provision_device(conn, args.wearer, args.device, args.name),
    )


def cmd_rotate(args: argparse.Namespace) -> int:
    from services.storage.provisioning import rotate_credentials

    return _issue(args, "new credentials", lambda conn: rotate_credentials(conn, args.device))


def cmd_revoke(args: argparse.Namespace) -> int:
    import psycopg

    from services.storage.provisioning import revoke

    with psycopg.connect(_database_url(get_settings())) as conn:
        changed = revoke(conn, args.device)
    if not changed:
        print(f"anxin devices revoke: no active device {args.device!r}", file=sys.stderr)
        return 1
    print(
        f"{args.device} revoked: the ingestor refuses it now; the broker once you regenerate"
        f" its files (anxin devices broker-files --out DIR), {RELOAD_HINT}"
    )
    return 0


def service_hashes(settings: Settings) -> dict[str, str]:
    """Mosquitto hashes of the service accounts whose password is set; exits on a weak one."""
    from services.devices.broker_files import service_accounts
    from services.devices.credentials import mosquitto_hash, service_password_problem
    from services.protocol import Topics

    out = {}
    for account in service_accounts(Topics(settings.topic_prefix)):
        secret = getattr(settings, account.setting)
        password = secret.get_secret_value() if secret is not None else ""
        if not password:
            continue
        problem = service_password_problem(password)
        if problem:
            sys.exit(f"anxin devices broker-files: ANXIN_{account.setting.upper()} {problem}")
        out[account.username] = mosquitto_hash(password)
    return out


def cmd_broker_files(args: argparse.Namespace) -> int:
    import psycopg

    from services.devices.broker_files import parse_owner, write_broker_files
    from services.protocol import Topics
    from services.storage.provisioning import broker_logins, count_devices_without_credentials

    settings = get_settings()
    owner = parse_owner(args.owner) if args.owner else None
    services = service_hashes(settings)
    with psycopg.connect(_database_url(settings)) as conn:
        devices = broker_logins(conn)
        lacking = count_devices_without_credentials(conn)
    passwords, acl = write_broker_files(
        args.out, Topics(settings.topic_prefix), devices, services, owner
    )
    print(
        f"wrote {passwords} and {acl}: {len(devices)} devices,"
        f" service accounts: {', '.join(services) or 'none'}; prefix {settings.topic_prefix!r}"
    )
    if lacking:
        print(
            f"{lacking} active devices have no credentials and cannot log in"
            " (anxin devices rotate DEVICE, or issue-demo for the demo fleet)",
            file=sys.stderr,
        )
    print(f"If Mosquitto is running, {RELOAD_HINT}", file=sys.stderr)
    return 0


def cmd_issue_demo(args: argparse.Namespace) -> int:
    import psycopg

    from services.devices.broker_files import parse_owner, write_file_atomically
    from services.storage.provisioning import (
        ProvisioningError,
        demo_device_id,
        issue_demo_credentials,
    )

    owner = parse_owner(args.owner) if args.owner else None
    known: dict[str, str] = {}
    try:
        loaded = json.loads(args.out.read_text())
        if isinstance(loaded, dict):
            known = {str(k): str(v) for k, v in loaded.items()}
    except (OSError, ValueError):
        pass
    first = args.first_index
    ids = [demo_device_id(i, args.device_prefix) for i in range(first, first + args.devices)]
    with psycopg.connect(_database_url(get_settings())) as conn:
        try:
            creds = issue_demo_credentials(conn, ids, known)
        except ProvisioningError as e:
            print(f"anxin devices issue-demo: {e}", file=sys.stderr)
            return 1
    write_file_atomically(args.out, json.dumps(creds, indent=1) + "\n", 0o600, owner)
    kept = sum(1 for d, pw in creds.items() if known.get(d) == pw)
    print(f"wrote {args.out}: {len(creds)} devices ({kept} kept, {len(creds) - kept} new)")
    return 0


def add_devices_parser(sub: argparse._SubParsersAction) -> None:
    devices = sub.add_parser("devices", help="device credentials and the broker's files")
    dsub = devices.add_subparsers(dest="devices_command", required=True)

    p = dsub.add_parser("provision", help="a new device for a wearer; its password shown once")
    p.add_argument("--wearer", required=True, help="the wearer's id")
    p.add_argument("--device", default=None, help="device id (default: a random d…)")
    p.add_argument("--name", default=None, help="create the wearer with this name if missing")
    p.add_argument("--json", action="store_true", help="print the credentials as JSON")
    p.set_defaults(func=cmd_provision)

    r = dsub.add_parser("rotate", help="new credentials for an active device (shown once)")
    r.add_argument("device")
    r.add_argument("--json", action="store_true", help="print the credentials as JSON")
    r.set_defaults(func=cmd_rotate)

    v = dsub.add_parser("revoke", help="revoke a device for good and delete its credentials")
    v.add_argument("device")
    v.set_defaults(func=cmd_revoke)

    owner_help = "chown the files (needs root), e.g. 1883:1883 or mosquitto"
    b = dsub.add_parser(
        "broker-files", help="write Mosquitto's password_file and acl_file into a directory"
    )
    b.add_argument("--out", type=Path, required=True, metavar="DIR")
    b.add_argument("--owner", default=None, metavar="USER[:GROUP]", help=owner_help)
    b.set_defaults(func=cmd_broker_files)

    d = dsub.add_parser(
        "issue-demo",
        help="credentials for the seeded demo devices, into a JSON file for `anxin sim"
        " --credentials` (valid ones already in the file are kept)",
    )
    d.add_argument("--devices", type=int, required=True, metavar="N")
    d.add_argument("--device-prefix", default="w")
    d.add_argument("--first-index", type=int, default=1, metavar="I")
    d.add_argument("--out", type=Path, required=True, metavar="FILE")
    d.add_argument("--owner", default=None, metavar="USER[:GROUP]", help=owner_help)
    d.set_defaults(func=cmd_issue_demo)
