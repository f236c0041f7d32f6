# Wire primitives both sides share: canonical JSON, strict base64url, SHA-256 hex and RFC 3339 stamps.
from __future__ import annotations

import base64
import hashlib
import json
import math
import re
from datetime import UTC, datetime

from station.errors import SignatureError, WireFormatError

# Limits of the strict loader: a message on the wire is at most the broker's message_size_limit, and no
# message of the contract nests deeper than a handful of levels (json.loads would recurse until it crashes).
MAX_MESSAGE_BYTES = 262144
MAX_DEPTH = 32
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
_B64URL = re.compile(r"[A-Za-z0-9_-]*")
_STRINGS = re.compile(r'"(?:[^"\\]|\\.)*"', re.DOTALL)
_BRACKETS = re.compile(r"[\[\]{}]")


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    """Strict base64url without padding: only the alphabet, and only the one encoding b64url() produces
    (the unused trailing bits must be zero), so each byte string has exactly one accepted text."""
    if not isinstance(text, str) or not _B64URL.fullmatch(text) or len(text) % 4 == 1:
        raise SignatureError("not base64url text (alphabet A-Z a-z 0-9 - _, no padding)")
    data = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    if b64url(data) != text:
        raise SignatureError("non-canonical base64url (non-zero trailing bits)")
    return data


def _depth_ok(text: str, limit: int) -> bool:
    """Nesting depth of a JSON text at most `limit`, counted without recursion (brackets inside strings
    are skipped; a malformed text is left to the parser)."""
    if text.count("[") + text.count("{") <= limit:
        return True   # fewer opening brackets than the limit, strings included: no deeper nesting possible
    depth = 0
    for m in _BRACKETS.finditer(_STRINGS.sub("", text)):
        if m.group() in "[{":
            depth += 1
            if depth > limit:
                return False
        else:
            depth -= 1
    return True


def _int(text: str) -> int:
    v = int(text)
    if not INT64_MIN <= v <= INT64_MAX:
        raise WireFormatError(f"integer {text[:24]}{'…' if len(text) > 24 else ''} outside 64-bit range")
    return v


def _float(text: str) -> float:
    v = float(text)
    if not math.isfinite(v):
        raise WireFormatError(f"number {text[:24]} is not a finite 64-bit float")
    return v


def _constant(name: str) -> None:
    raise WireFormatError(f"{name} is not JSON (RFC 8259 has no NaN or Infinity)")


def _object(pairs: list[tuple[str, object]]) -> dict:
    out = dict(pairs)
    if len(out) != len(pairs):
        raise WireFormatError("duplicate key in a JSON object")
    return out


def strict_loads(data: bytes | str, *, max_bytes: int = MAX_MESSAGE_BYTES, max_depth: int = MAX_DEPTH) -> object:
    """Parse untrusted JSON from the wire, or raise WireFormatError (a ValueError) saying why: UTF-8 only,
    at most max_bytes and max_depth, no NaN/Infinity, integers within int64, floats finite, no duplicate
    keys. Every value it returns can be stored in SQLite and printed as standard JSON."""
    if len(data) > max_bytes:
        raise WireFormatError(f"message of {len(data)} bytes exceeds {max_bytes}")
    try:
        text = data.decode("utf-8") if isinstance(data, bytes | bytearray) else data
    except UnicodeDecodeError as exc:
        raise WireFormatError(f"not UTF-8: {exc.reason} at byte {exc.start}") from None
    if not _depth_ok(text, max_depth):
        raise WireFormatError(f"JSON nested deeper than {max_depth} levels")
    try:
        return json.loads(text, parse_int=_int, parse_float=_float, parse_constant=_constant,
                          object_pairs_hook=_object)
    except WireFormatError:
        raise
    except (ValueError, RecursionError) as exc:   # RecursionError: belt and braces behind _depth_ok
        raise WireFormatError(f"not JSON: {str(exc)[:120]}") from None


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
