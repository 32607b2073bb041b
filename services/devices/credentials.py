"""Secrets of watches and service accounts: made here, shown once, kept only as hashes.

A device password is 24 random bytes (192 bits, URL-safe base64, so it also fits in an
``mqtt://user:pass@host`` URL). It is hashed twice, for two readers:

- ``storage_hash`` (scrypt, N=2^14, r=8, p=1, a 16-byte salt): what Anxin itself checks a
  presented password against (``verify_password``).
- ``mosquitto_hash``: Mosquitto's own password-file format, ``$7$<iterations>$<salt>$<hash>``
  (PBKDF2-HMAC-SHA512, a 12-byte salt, standard base64), byte for byte what
  ``mosquitto_passwd`` writes. The database keeps it so that ``anxin devices broker-files`` can
  rewrite the broker's files at any time without anyone knowing the passwords.

Iterations: Mosquitto verifies passwords on its single network thread, so every CONNECT, also
a wrong one, costs the whole broker that much CPU. 101 (mosquitto_passwd's default) keeps a
reconnect storm or a flood of bad logins cheap. That is safe because no human chooses these
passwords: 192 random bits cannot be guessed from a leaked hash whatever the iteration count.
Service-account passwords come from the operator, so they must be long
(``service_password_problem``).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets

DEVICE_PASSWORD_BYTES = 24
MOSQUITTO_ITERATIONS = 101  # mosquitto_passwd's default (see the module docstring)
MOSQUITTO_SALT_BYTES = 12
MIN_SERVICE_PASSWORD = 20

_SCRYPT_N, _SCRYPT_R, _SCRYPT_P = 2**14, 8, 1


def new_password() -> str:
    return secrets.token_urlsafe(DEVICE_PASSWORD_BYTES)


def new_device_id() -> str:
    """``d`` + 16 hex digits: fits the protocol's device id, never looks like a demo id."""
    return f"d{secrets.token_hex(8)}"


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def mosquitto_hash(
    password: str, iterations: int = MOSQUITTO_ITERATIONS, salt: bytes | None = None
) -> str:
    """The part after ``username:`` in Mosquitto 2's password file."""
    salt = os.urandom(MOSQUITTO_SALT_BYTES) if salt is None else salt
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, iterations)
    return f"$7${iterations}${_b64(salt)}${_b64(digest)}"


def verify_mosquitto_hash(password: str, stored: str) -> bool:
    """Check a password the way Mosquitto does (also accepts mosquitto_passwd's own lines)."""
    try:
        _, kind, iterations, salt, digest = stored.split("$")
        if kind != "7":
            return False
        expected = base64.b64decode(digest, validate=True)
        actual = hashlib.pbkdf2_hmac(
            "sha512", password.encode(), base64.b64decode(salt, validate=True), int(iterations)
        )
    except ValueError:
        return False
    return hmac.compare_digest(actual, expected)


def storage_hash(password: str) -> str:
    """``scrypt$N$r$p$salt$hash`` (base64): the hash Anxin checks passwords against."""
    salt = os.urandom(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=_SCRYPT_N, r=_SCRYPT_R, p=_SCRYPT_P)
    return f"scrypt${_SCRYPT_N}${_SCRYPT_R}${_SCRYPT_P}${_b64(salt)}${_b64(digest)}"


def verify_password(password: str, stored: str) -> bool:
    try:
        kind, n, r, p, salt, digest = stored.split("$")
        if kind != "scrypt":
            return False
        expected = base64.b64decode(digest, validate=True)
        actual = hashlib.scrypt(
            password.encode(),
            salt=base64.b64decode(salt, validate=True),
            n=int(n),
            r=int(r),
            p=int(p),
            dklen=len(expected),
        )
    except ValueError:
        return False
    return hmac.compare_digest(actual, expected)


def service_password_problem(password: str) -> str | None:
    """Why an operator-chosen service-account password is refused (None: acceptable). It is
    hashed with few iterations (see the module docstring), so its length is its strength."""
    if len(password) < MIN_SERVICE_PASSWORD:
        return (
            f"needs at least {MIN_SERVICE_PASSWORD} characters; make one with"
            ' python -c "import secrets; print(secrets.token_urlsafe(24))"'
        )
    return None
