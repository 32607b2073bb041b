"""Access and refresh tokens.

An access token is short-lived (``ANXIN_ACCESS_TOKEN_TTL_S``, 15 min) and signed with HMAC-SHA256
under ``ANXIN_AUTH_SECRET``: ``base64url(payload).base64url(mac)``, the payload naming the
session and the user. The API still checks the session on every request, so logging out (or a
refresh token used twice) ends every access token of that session at once. A refresh token is
random, shown to the client once, stored only as its SHA-256, and rotates on every use.

Pure: the clock is an argument.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True, slots=True)
class AccessClaims:
    session_id: str
    user_id: int
    expires: int  # unix seconds


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def issue_access_token(
    secret: str, session_id: str, user_id: int, now: datetime, ttl_s: int
) -> str:
    payload = json.dumps(
        {"sid": session_id, "uid": user_id, "exp": int(now.timestamp()) + ttl_s},
        separators=(",", ":"),
    ).encode()
    mac = hmac.new(secret.encode(), payload, hashlib.sha256).digest()
    return f"{_b64(payload)}.{_b64(mac)}"


def read_access_token(secret: str, token: str, now: datetime) -> AccessClaims | None:
    """The claims of a genuine, unexpired token; None for anything else."""
    try:
        body, mac = token.split(".")
        payload = _unb64(body)
        expected = hmac.new(secret.encode(), payload, hashlib.sha256).digest()
        if not hmac.compare_digest(expected, _unb64(mac)):
            return None
        claims = json.loads(payload)
        out = AccessClaims(str(claims["sid"]), int(claims["uid"]), int(claims["exp"]))
    except (ValueError, KeyError, TypeError):
        return None
    return out if out.expires > now.timestamp() else None


def new_refresh_token() -> str:
    return secrets.token_urlsafe(32)


def refresh_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()
