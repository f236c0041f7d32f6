# Is this message signed by whom it claims, for the path it is on? Pure checks that raise Refuse with a kind.
from __future__ import annotations

from typing import TYPE_CHECKING

from station.errors import NonCanonicalError, PayloadError, SignatureError
from station.protocol.signing import jws_header, unverified_payload, verify_jws

if TYPE_CHECKING:
    from station.town.trust import TrustStore

# Refusal kinds that mean a trusted station (or someone holding its key) misbehaves, not mere junk: logged as errors.
LOUD = ("equivocation", "broken-chain", "wrong-path", "checkpoint-mismatch")

# Whoever can reach the broker can send unsigned junk: keep only a sample of it, so refusals cannot fill the disk.
UNAUTHENTICATED_KEEP = 1024

# A station counting one result a second takes 285 million years to get here; the town does seq + 1 in SQLite.
MAX_SEQ = 2**53


class Refuse(Exception):
    """The town refuses a message: `code` is the refusal kind counted per station, `detail` says why."""

    def __init__(self, code: str, detail: str, station: str | None = None, seq: int | None = None):
        self.code, self.detail, self.station, self.seq = code, detail, station, seq


def evidence(code: str, payload: bytes) -> bytes:
    """How much of a refused message to keep as evidence."""
    if code in ("malformed", "unknown-kid", "bad-signature", "non-canonical", "bad-status", "unknown-station",
                "unprocessable"):
        return payload[:UNAUTHENTICATED_KEEP]
    return payload[:262144]


def hex64(v: object) -> bool:
    return isinstance(v, str) and len(v) == 64 and all(c in "0123456789abcdef" for c in v)


def _decode_payload_unverified(message: bytes) -> dict | None:
    try:
        return unverified_payload(message)
    except SignatureError:
        return None


def verified(trust: TrustStore | None, topic_station_id: str, path: str, payload: bytes,
             typs: tuple[str, ...]) -> tuple[dict, str]:
    """(payload body, kid) of a message of one of `typs` published under `path`, or Refuse.
    The signature alone is not enough: the key must belong to the topic's station and sign for that grid path."""
    try:
        header = jws_header(payload)
    except NonCanonicalError as exc:
        # Maybe a re-wrapped copy of a genuine result: refused for its form, never judged as equivocation.
        raise Refuse("non-canonical", str(exc)) from None
    except SignatureError as exc:
        raise Refuse("malformed", f"not a flattened Ed25519 JWS: {exc}") from None
    kid, typ = header.get("kid"), header.get("typ")
    if typ not in typs:
        raise Refuse("malformed", f"typ {typ!r} not one of {', '.join(typs)}")
    if not isinstance(kid, str) or "/" not in kid:
        raise Refuse("unknown-kid", f"kid {kid!r} is not '<station>/<serial>'")
    trusted = trust.get(kid) if trust else None
    if trusted is None:
        raise Refuse("unknown-kid", f"no trusted key for kid {kid!r}")
    key, key_path = trusted
    # The seq of a message that fails verification is only a hint for the refusal log, never trusted.
    unverified = _decode_payload_unverified(payload) or {}
    seq = unverified.get("seq") if isinstance(unverified.get("seq"), int) else None
    try:
        body = verify_jws(payload, key, typ=typ)
    except PayloadError as exc:
        raise Refuse("malformed", f"kid {kid}: {exc}", seq=seq) from None
    except SignatureError as exc:
        raise Refuse("bad-signature", f"kid {kid}: {exc}", seq=seq) from None
    if kid.split("/", 1)[0] != topic_station_id:
        raise Refuse("wrong-path", f"kid {kid!r} (station {kid.split('/', 1)[0]!r}) published under "
                     f"station {topic_station_id!r}'s topic", seq=seq)
    if body.get("station") != path:
        raise Refuse("wrong-path", f"payload station {body.get('station')!r} differs from topic path "
                     f"{path!r}", seq=seq)
    if path != key_path:
        raise Refuse("wrong-path", f"kid {kid!r} signs for {key_path!r}, not {path!r}", seq=seq)
    if body.get("v") != 1:
        raise Refuse("malformed", f"unsupported version v={body.get('v')!r}", seq=seq)
    s = body.get("seq")
    if not isinstance(s, int) or isinstance(s, bool) or not 1 <= s <= MAX_SEQ:
        raise Refuse("malformed", f"seq must be an integer 1..{MAX_SEQ}, got {str(s)[:40]}")
    return body, kid
