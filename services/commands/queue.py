"""Queueing a command for a watch: one row in ``commands`` and a wake-up for the dispatcher.

Used by the API (locate now, speed-dial, listen-in) and by the privacy audit ("your location
was viewed by …"). Sending, acknowledgement and expiry live in services/commands/ (dispatcher)
and the ingestor (acks).
"""

from __future__ import annotations

import uuid

COMMANDS_CHANNEL = "anxin_commands"

ENQUEUE = """
INSERT INTO commands (command_id, device_id, wearer_id, kind, payload, requested_by, expires_at)
VALUES (%(command_id)s, %(device_id)s, %(wearer_id)s, %(kind)s, %(payload)s, %(requested_by)s,
        now() + make_interval(secs => %(ttl_s)s))
RETURNING command_id, status, created_at, expires_at
"""
NOTIFY = f"SELECT pg_notify('{COMMANDS_CHANNEL}', %s)"

# The device a command to a wearer goes to: their newest unrevoked watch.
WEARER_DEVICE = (
    "SELECT device_id FROM devices WHERE wearer_id = %s AND revoked_at IS NULL"
    " ORDER BY created_at DESC, device_id LIMIT 1"
)


def new_command_id() -> str:
    """Short enough for the protocol's Ack.cmd (≤ 64 characters), unique enough."""
    return uuid.uuid4().hex[:16]
