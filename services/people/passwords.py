"""Passwords: Argon2id (argon2-cffi's defaults follow RFC 9106's recommendation).

Only hashes are stored. A hash made with older parameters is re-hashed at the next login.
"""

from __future__ import annotations

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

_hasher = PasswordHasher()

MIN_LENGTH = 10


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(stored_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(stored_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def needs_rehash(stored_hash: str) -> bool:
    return _hasher.check_needs_rehash(stored_hash)


def password_problem(password: str) -> str | None:
    """Why a new password is refused (None: acceptable). Length over rules: a long passphrase
    a grandchild can type beats a short string of symbols."""
    if len(password) < MIN_LENGTH:
        return f"a password needs at least {MIN_LENGTH} characters"
    if len(password) > 256:
        return "a password may have at most 256 characters"
    if len(set(password)) < 4:
        return "a password needs more than a few different characters"
    return None
