"""The signature of a delivery, as Stripe and GitHub sign theirs: HMAC-SHA256 under the webhook's
secret over `<unix timestamp>.<body>`, sent as `Paddock-Signature: t=<timestamp>,v1=<hex digest>`.
Signing the timestamp with the body lets a receiver refuse a replay of an old delivery. Pure
functions, no Django: docs/webhooks.md shows a receiver the same check."""

import hashlib
import hmac
import time

HEADER = "Paddock-Signature"
TOLERANCE_SECONDS = 300  # what `verify` accepts by default between the signature's time and now


def digest(secret: str, timestamp: int, body: bytes) -> str:
    """The hex HMAC-SHA256 of `<timestamp>.<body>` under the secret (its UTF-8 bytes)."""
    return hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()


def signature_header(secret: str, body: bytes, timestamp: int | None = None) -> str:
    """The `Paddock-Signature` value for a body sent now (or at `timestamp`)."""
    when = int(time.time()) if timestamp is None else timestamp
    return f"t={when},v1={digest(secret, when, body)}"


def verify(secret: str, header: str, body: bytes, *, tolerance: int = TOLERANCE_SECONDS,
           now: float | None = None) -> bool:
    """Whether the header signs this body under the secret, at a time within `tolerance` seconds
    of now. Any `v1` entry may match (room for more than one signature)."""
    timestamp, signatures = None, []
    for item in header.split(","):
        name, _, value = item.strip().partition("=")
        if name == "t" and value.isascii() and value.isdigit():
            timestamp = int(value)
        elif name == "v1":
            signatures.append(value)
    if timestamp is None or not signatures:
        return False
    if abs((time.time() if now is None else now) - timestamp) > tolerance:
        return False
    expected = digest(secret, timestamp, body)
    return any(hmac.compare_digest(expected, signature) for signature in signatures)
