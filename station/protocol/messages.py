# Town <-> station control messages: signed acks, commands (resend, plan, roster, update) and station checkpoints.
# Pure functions: building and verifying them needs no MQTT, so every refusal path is unit-testable.
from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from station.errors import Refused, SignatureError
from station.protocol.plans import ORDER_BODIES
from station.protocol.signing import jws_header, sign_jws, verify_jws
from station.protocol.wire import message_hash, now_rfc3339

ACK_TYP = "nongan-ack+json"
CMD_TYP = "nongan-cmd+json"
CHECKPOINT_TYP = "nongan-checkpoint+json"
WITHHELD_TYP = "nongan-withheld+json"

KNOWN_COMMANDS = ("resend", *ORDER_BODIES)
MAX_COMMAND_BYTES = 1 << 20    # a roster of MAX_PRODUCERS fits; anything larger is refused unparsed
MAX_TTL_S = 24 * 3600          # a command may not claim to be valid for more than a day
CLOCK_SKEW_S = 30              # tolerated clock difference between town and a synchronised station
MAX_RESEND_RANGE = 100_000
_HEX64 = re.compile(r"^[0-9a-f]{64}$")




# The hash that chains results is also the one acks and checkpoints name: one function for all of them.
sha256_hex = message_hash


def _int(payload: dict, key: str, kind: str, minimum: int = 0) -> int:
    value = payload.get(key)
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise Refused(kind, f"field {key!r} must be an integer >= {minimum}, got {value!r}")
    return value


def _verify(kind: str, message: bytes, key: Ed25519PublicKey | None, typ: str, station_path: str) -> dict:
    if key is None:
        raise Refused(kind, "no trusted town key configured; cannot verify")
    try:
        payload = verify_jws(message, key, typ=typ)
    except SignatureError as exc:
        raise Refused(kind, f"bad signature or format: {exc}") from None
    if payload.get("v") != 1:
        raise Refused(kind, f"unsupported version v={payload.get('v')!r}")
    if payload.get("station") != station_path:
        raise Refused(kind, f"addressed to station {payload.get('station')!r}, this is {station_path!r}")
    return payload


# ---------------------------------------------------------------- acks


@dataclass(frozen=True)
class Ack:
    acked_seq: int
    head: str
    time: str
    checkpoint: dict | None
    message: bytes = field(repr=False)


def build_ack(key: Ed25519PrivateKey, kid: str, station_path: str, acked_seq: int, head: str,
              checkpoint: dict | None = None, now: float | None = None) -> bytes:
    payload = {"v": 1, "station": station_path, "acked_seq": acked_seq, "head": head, "time": now_rfc3339(now)}
    if checkpoint is not None:
        payload["checkpoint"] = checkpoint
    return sign_jws(payload, key, kid, ACK_TYP)


def verify_ack(message: bytes, town_key: Ed25519PublicKey | None, station_path: str) -> Ack:
    """Signature, typ, version, station path and field shapes. The head check against the journal is the
    caller's (it needs the journal): see station.publisher.from_town.TownReplies.ack."""
    p = _verify("ack", message, town_key, ACK_TYP, station_path)
    seq = _int(p, "acked_seq", "ack", 1)
    head = p.get("head")
    if not isinstance(head, str) or not _HEX64.match(head):
        raise Refused("ack", f"head must be 64 lowercase hex digits, got {head!r}")
    cp = p.get("checkpoint")
    if cp is not None:
        if not isinstance(cp, dict):
            raise Refused("ack", "checkpoint must be an object")
        _int(cp, "seq", "ack", 1)
        for k in ("head", "jws_sha256"):
            if not isinstance(cp.get(k), str) or not _HEX64.match(cp[k]):
                raise Refused("ack", f"checkpoint.{k} must be 64 lowercase hex digits")
    t = p.get("time")
    return Ack(seq, head, t if isinstance(t, str) else "", cp, message)


def ack_time_unix(ack: Ack) -> float | None:
    """The town's signed clock reading, usable as a trusted time source when the station clock is not synced."""
    try:
        return datetime.fromisoformat(ack.time.replace("Z", "+00:00")).timestamp()
    except (ValueError, AttributeError):
        return None


# ---------------------------------------------------------------- commands


@dataclass(frozen=True)
class Command:
    cmd: str
    from_seq: int
    to_seq: int
    nonce: str
    expires: int
    expiry_checked: bool
    message: bytes = field(repr=False)


def build_resend(key: Ed25519PrivateKey, kid: str, station_path: str, from_seq: int, to_seq: int,
                 nonce: str, expires: int) -> bytes:
    payload = {"v": 1, "station": station_path, "cmd": "resend", "from_seq": from_seq, "to_seq": to_seq,
               "nonce": nonce, "expires": expires}
    return sign_jws(payload, key, kid, CMD_TYP)


def verify_command(message: bytes, town_key: Ed25519PublicKey | None, station_path: str, *,
                   now: float | None, remember_nonce: Callable[[str, int], bool]) -> Command | OrderCommand:
    """Verify a town command; raises Refused with the reason.

    `now` is a TRUSTED unix time or None. The caller passes the station clock only when it is NTP
    synchronised, else the town's signed time from the newest verified ack plus monotonic time elapsed
    since, else None. With None, expiry cannot be judged: only idempotent commands (resend) are accepted,
    still only once per nonce (nonces are remembered until their expiry). The nonce is consumed last,
    so a command refused for another reason does not burn it.
    """
    if len(message) > MAX_COMMAND_BYTES:
        raise Refused("command", f"{len(message)} bytes, larger than the {MAX_COMMAND_BYTES} allowed")
    p = _verify("command", message, town_key, CMD_TYP, station_path)
    cmd = p.get("cmd")
    if cmd not in KNOWN_COMMANDS:
        raise Refused("command", f"unknown command {cmd!r} (this station knows {', '.join(KNOWN_COMMANDS)})")
    if cmd in ORDER_BODIES:
        return verify_order(p, message, now=now, remember_nonce=remember_nonce)
    from_seq = _int(p, "from_seq", "command", 1)
    to_seq = _int(p, "to_seq", "command", 1)
    if to_seq < from_seq:
        raise Refused("command", f"empty range from_seq={from_seq} > to_seq={to_seq}")
    if to_seq - from_seq >= MAX_RESEND_RANGE:
        raise Refused("command", f"range {from_seq}..{to_seq} larger than {MAX_RESEND_RANGE}")
    nonce, expires = _fresh("command", p, now, idempotent=True)
    _use_nonce("command", nonce, expires, remember_nonce)
    return Command(cmd, from_seq, to_seq, nonce, expires, now is not None, message)


@dataclass(frozen=True)
class OrderCommand:
    """A verified plan or roster: `body` is its checked fields plus issued_at; the loop judges the version."""

    cmd: str
    body: dict
    nonce: str
    expires: int
    message: bytes = field(repr=False)


def build_order(key: Ed25519PrivateKey, kid: str, station_path: str, cmd: str, body: dict, nonce: str,
                expires: int, issued_at: int) -> bytes:
    """A signed plan or roster command; body is {plan_id|roster_id, version, tasks|producers}."""
    payload = {"v": 1, "station": station_path, "cmd": cmd, "nonce": nonce, "expires": expires,
               "issued_at": issued_at, **body}
    return sign_jws(payload, key, kid, CMD_TYP)


def verify_order(p: dict, message: bytes, *, now: float | None,
                 remember_nonce: Callable[[str, int], bool]) -> OrderCommand:
    """A plan or roster replaces what the station works to, so unlike a resend it is never taken on an
    untrusted clock: an old captured order could otherwise be replayed once its nonce was forgotten."""
    cmd = p["cmd"]
    body = ORDER_BODIES[cmd](p)
    issued_at = _int(p, "issued_at", cmd, 1)
    nonce, expires = _fresh(cmd, p, now, idempotent=False)
    if issued_at > now + CLOCK_SKEW_S or issued_at > expires:
        raise Refused(cmd, f"issued_at {issued_at} lies in the future or after its expiry")
    _use_nonce(cmd, nonce, expires, remember_nonce)
    return OrderCommand(cmd, {**body, "issued_at": issued_at}, nonce, expires, message)


def _fresh(kind: str, p: dict, now: float | None, *, idempotent: bool) -> tuple[str, int]:
    """The command's nonce and expiry, the expiry judged against the trusted `now`. Without trusted time only an
    idempotent command (resend) is taken, its expiry unchecked; any other could be an old capture replayed once
    its nonce was forgotten."""
    expires = _int(p, "expires", kind, 1)
    nonce = p.get("nonce")
    if not isinstance(nonce, str) or not 8 <= len(nonce) <= 128:
        raise Refused(kind, "nonce must be a string of 8..128 characters")
    if now is None:
        if idempotent:
            return nonce, expires
        raise Refused(kind, "no trusted time (clock not synchronised, no town ack yet): expiry cannot be judged")
    if expires < now - CLOCK_SKEW_S:
        raise Refused(kind, f"expired {int(now - expires)} s ago")
    if expires > now + MAX_TTL_S + CLOCK_SKEW_S:
        raise Refused(kind, f"expiry {int(expires - now)} s ahead exceeds the {MAX_TTL_S} s limit")
    return nonce, expires


def _use_nonce(kind: str, nonce: str, expires: int, remember_nonce: Callable[[str, int], bool]) -> None:
    """Last of all, so a command refused for another reason does not burn its nonce."""
    if not remember_nonce(nonce, expires):
        raise Refused(kind, f"nonce {nonce!r} already used (replay)")


# ---------------------------------------------------------------- update command
# A release (tens of MB) cannot ride a 128 KB MQTT message, so the command names it: where to fetch it and the
# SHA-256 and size it must have. The archive's own release-key signature is checked again before installing.

MAX_RELEASE_BYTES = 512 * 1024 * 1024
_UPDATE_VERSION = re.compile(r"^[0-9A-Za-z][0-9A-Za-z.+_-]{0,40}$")  # the same rule as host/releases.py


@dataclass(frozen=True)
class UpdateCommand:
    version: str
    url: str
    sha256: str
    size: int
    nonce: str
    expires: int


def build_update(key: Ed25519PrivateKey, kid: str, station_path: str, version: str, url: str, sha256: str,
                 size: int, nonce: str, expires: int) -> bytes:
    payload = {"v": 1, "station": station_path, "cmd": "update", "version": version, "url": url,
               "sha256": sha256, "size": size, "nonce": nonce, "expires": expires}
    return sign_jws(payload, key, kid, CMD_TYP)


def verify_update(message: bytes, town_key: Ed25519PublicKey | None, station_path: str, *, now: float | None,
                  remember_nonce: Callable[[str, int], bool]) -> UpdateCommand:
    """Verify a town `update` command; raises Refused with the reason.

    Unlike resend, an update is not idempotent, so it needs a trusted `now` (see verify_command): without one
    its expiry cannot be judged and it is refused. http:// is allowed here because the SHA-256 is signed; which
    hosts may serve it is the station's policy (station/host/update_order.py).
    """
    p = _verify("update", message, town_key, CMD_TYP, station_path)
    if p.get("cmd") != "update":
        raise Refused("update", f"not an update command: cmd={p.get('cmd')!r}")
    version, url, digest = p.get("version"), p.get("url"), p.get("sha256")
    if not isinstance(version, str) or not _UPDATE_VERSION.match(version):
        raise Refused("update", f"version must be 1-41 letters, digits, '.', '+', '_' or '-', got {version!r}")
    if not isinstance(url, str) or len(url) > 1024 or not re.match(r"^https?://[^/@\s]+/\S*$", url):
        raise Refused("update", f"url must be http(s)://HOST/PATH without credentials, got {str(url)[:80]!r}")
    if not isinstance(digest, str) or not _HEX64.match(digest):
        raise Refused("update", "sha256 must be 64 lowercase hex digits")
    size = _int(p, "size", "update", 1)
    if size > MAX_RELEASE_BYTES:
        raise Refused("update", f"size {size} exceeds the {MAX_RELEASE_BYTES} byte limit")
    nonce, expires = _fresh("update", p, now, idempotent=False)
    _use_nonce("update", nonce, expires, remember_nonce)
    return UpdateCommand(version, url, digest, size, nonce, expires)


# ---------------------------------------------------------------- checkpoints


def build_checkpoint(key: Ed25519PrivateKey, kid: str, station_path: str, seq: int, head: str, boot: str,
                     now: float | None = None) -> bytes:
    payload = {"v": 1, "station": station_path, "seq": seq, "head": head, "boot": boot, "time": now_rfc3339(now)}
    return sign_jws(payload, key, kid, CHECKPOINT_TYP)


def build_withheld(key: Ed25519PrivateKey, kid: str, station_path: str, seq: int, msg_hash: str, size: int,
                   reason: str, now: float | None = None) -> bytes:
    """Signed notice that result `seq` exists (hash, size) but cannot be sent over MQTT (quarantined)."""
    payload = {"v": 1, "station": station_path, "seq": seq, "msg_hash": msg_hash, "size": size,
               "reason": reason, "time": now_rfc3339(now)}
    return sign_jws(payload, key, kid, WITHHELD_TYP)


def message_typ(message: bytes) -> str | None:
    try:
        t = jws_header(message).get("typ")
    except SignatureError:
        return None
    return t if isinstance(t, str) else None
