# Wire primitives both sides share: canonical JSON, strict base64url, SHA-256 hex and RFC 3339 stamps.
from __future__ import annotations

import base64
import hashlib
import json
from datetime import UTC, datetime

from station.errors import SignatureError


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    if not isinstance(text, str) or any(c in text for c in "=+/ \n"):
        raise SignatureError("not base64url text")
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (ValueError, TypeError) as exc:
        raise SignatureError(f"bad base64url: {exc}") from None


def canonical_json(obj: object) -> bytes:
    """One byte form for a JSON value, so hashes and signatures are reproducible."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def message_hash(msg_bytes: bytes) -> str:
    """Hex SHA-256 of a message exactly as published; the next record carries it as 'prev'."""
    return hashlib.sha256(msg_bytes).hexdigest()


def now_rfc3339(now: float | None = None) -> str:
    """UTC with millisecond precision and a 'Z' suffix, e.g. 2026-11-24T02:41:21.123Z; of unix time `now`
    if given, else of the current time."""
    t = datetime.now(UTC) if now is None else datetime.fromtimestamp(now, UTC)
    return t.isoformat(timespec="milliseconds").replace("+00:00", "Z")
