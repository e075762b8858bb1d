"""The `X-Signature` header of a delivery: `t=<unix time>,v1=<hex HMAC-SHA256 of "<t>.<body>">`.

The timestamp is inside the signed text, so a receiver that refuses old timestamps refuses replays. During a secret
rotation the header carries one `v1=` per valid secret; a receiver accepts the delivery when any of them matches.
"""

import hashlib
import hmac
import secrets
import time
from collections.abc import Iterable

SECRET_PREFIX = "whsec_"


def new_secret() -> str:
    return SECRET_PREFIX + secrets.token_urlsafe(32)


def signature(*, secret: str, timestamp: int, body: bytes) -> str:
    return hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()


def signature_header(*, secrets: Iterable[str], timestamp: int, body: bytes) -> str:
    signatures = [f"v1={signature(secret=secret, timestamp=timestamp, body=body)}" for secret in secrets]
    return ",".join([f"t={timestamp}", *signatures])


def verify_signature(*, secret: str, header: str, body: bytes, tolerance_seconds: int = 300) -> bool:
    """Whether `header` signs `body` with `secret` within `tolerance_seconds` of now: what a receiver checks."""
    fields = [item.split("=", 1) for item in header.split(",") if "=" in item]
    timestamps = [value for key, value in fields if key.strip() == "t"]
    if len(timestamps) != 1 or not timestamps[0].strip().isdigit():
        return False
    timestamp = int(timestamps[0])
    if abs(time.time() - timestamp) > tolerance_seconds:
        return False
    expected = signature(secret=secret, timestamp=timestamp, body=body)
    return any(key.strip() == "v1" and hmac.compare_digest(value.strip(), expected) for key, value in fields)
