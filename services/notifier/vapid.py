"""VAPID keys (RFC 8292): how the push services know our pushes come from us.

The private key stays in ``ANXIN_VAPID_PRIVATE_KEY``; the public key is what the web app
gives the browser as ``applicationServerKey`` when it subscribes, so a subscription only
accepts pushes signed by this key. Changing the key therefore orphans every subscription.

    uv run python -m services.notifier.vapid    # prints a new pair
"""

from __future__ import annotations

import base64

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from py_vapid import Vapid


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def generate_keys() -> tuple[str, str]:
    """A new (private, public) pair: the private key as base64url of its raw 32 bytes (one
    line, fits an environment variable, and pywebpush reads it as it is), the public key as
    the base64url uncompressed point the browser's ``applicationServerKey`` wants."""
    key = ec.generate_private_key(ec.SECP256R1())
    private = _b64url(key.private_numbers().private_value.to_bytes(32, "big"))
    return private, _public_of(key)


def load(private: str) -> Vapid:
    """The signer for a private key given as PEM, base64url raw (32 bytes) or base64url DER.
    Raises ValueError when it is none of these or not a P-256 key."""
    text = private.strip()
    try:
        if text.startswith("-----BEGIN"):
            key = serialization.load_pem_private_key(text.encode(), password=None)
            vapid = Vapid(key)
        else:
            vapid = Vapid.from_string(text)
    except Exception as exc:  # py_vapid raises whatever its decoder raised
        raise ValueError(f"not a VAPID private key (PEM or base64url): {exc}") from exc
    if not isinstance(vapid.private_key, ec.EllipticCurvePrivateKey) or not isinstance(
        vapid.private_key.curve, ec.SECP256R1
    ):
        raise ValueError("a VAPID key must be an EC P-256 key")
    return vapid


def public_key(private: str) -> str:
    """The ``applicationServerKey`` for a private key in any form ``load`` reads."""
    return _public_of(load(private).private_key)


def _public_of(key: ec.EllipticCurvePrivateKey) -> str:
    point = key.public_key().public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )
    return _b64url(point)


if __name__ == "__main__":
    new_private, new_public = generate_keys()
    print(f"ANXIN_VAPID_PRIVATE_KEY={new_private}")
    print(f"applicationServerKey (public): {new_public}")
