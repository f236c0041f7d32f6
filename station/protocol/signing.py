# Ed25519 keys, flattened JWS (RFC 7515 §7.2.2, alg "Ed25519" per RFC 9864) and JWK (RFC 8037).
from __future__ import annotations

import base64
import json
import os
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from station.errors import KeyFileError, NonCanonicalError, PayloadError, SignatureError, WireFormatError
from station.protocol.wire import b64url, b64url_decode, canonical_json, strict_loads

ALG = "Ed25519"
READBACK_MAX_BYTES = 64 * 1024 * 1024


def create_private_key(path: str | Path) -> Ed25519PrivateKey:
    """Write a new key as PKCS8 PEM, created with mode 0600 so it is never readable by others."""
    path = Path(path)
    if path.exists():
        raise KeyFileError(f"{path}: refusing to overwrite an existing key")
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, pem)
        os.fsync(fd)
    finally:
        os.close(fd)
    return key


def load_private_key(path: str | Path) -> Ed25519PrivateKey:
    path = Path(path)
    try:
        mode = path.stat().st_mode
        data = path.read_bytes()
    except FileNotFoundError:
        raise KeyFileError(f"{path}: signing key file not found (run `station init` or restore the key)") from None
    except OSError as exc:
        raise KeyFileError(f"{path}: cannot read signing key: {exc.strerror}") from None
    if mode & 0o077:
        # A key others can read is a key others may have copied: refuse rather than sign with it.
        raise KeyFileError(f"{path}: signing key is readable by group or others (mode {mode & 0o777:o}); "
                           f"run chmod 600 {path}")
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        raise KeyFileError(f"{path}: not a PEM private key ({exc})") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise KeyFileError(f"{path}: key is {type(key).__name__}, an Ed25519 key is required")
    return key


def public_jwk(public_key: Ed25519PublicKey, kid: str, station: str | None = None) -> dict:
    """station: the full grid path a station key may sign for (an extra JWK member, RFC 7517 §4)."""
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    jwk = {"kty": "OKP", "crv": "Ed25519", "x": b64url(raw), "kid": kid, "alg": ALG, "use": "sig"}
    if station:
        jwk["station"] = station
    return jwk


def jwk_public_key(jwk: dict, where: str = "JWK") -> Ed25519PublicKey:
    if not isinstance(jwk, dict) or jwk.get("kty") != "OKP" or jwk.get("crv") != "Ed25519":
        raise KeyFileError(f"{where}: not an Ed25519 JWK (need kty OKP, crv Ed25519)")
    try:
        raw = b64url_decode(jwk.get("x", ""))
        return Ed25519PublicKey.from_public_bytes(raw)
    except (SignatureError, ValueError) as exc:
        raise KeyFileError(f"{where}: bad public key 'x': {exc}") from None


def load_jwk_file(path: str | Path) -> tuple[str, Ed25519PublicKey]:
    """Read a public JWK file; returns (kid, key)."""
    kid, key, _ = load_jwk_file_with_station(path)
    return kid, key


def load_jwk_file_with_station(path: str | Path) -> tuple[str, Ed25519PublicKey, str | None]:
    """Read a public JWK file; returns (kid, key, the station path it is bound to or None)."""
    path = Path(path)
    try:
        jwk = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise KeyFileError(f"{path}: cannot read public key: {exc.strerror}") from None
    except ValueError as exc:
        raise KeyFileError(f"{path}: not JSON: {exc}") from None
    kid = jwk.get("kid") if isinstance(jwk, dict) else None
    if not isinstance(kid, str) or not kid:
        raise KeyFileError(f"{path}: JWK has no 'kid'")
    station = jwk.get("station")
    if station is not None and not isinstance(station, str):
        raise KeyFileError(f"{path}: JWK 'station' must be the station path as text")
    return kid, jwk_public_key(jwk, str(path)), station


def envelope(protected: str, body: str, signature: str) -> bytes:
    """The one serialisation of a flattened JWS this contract accepts: members in this order, no
    whitespace, base64url values (plain ASCII, so no escapes are possible)."""
    return json.dumps({"protected": protected, "payload": body, "signature": signature},
                      separators=(",", ":")).encode("ascii")


def sign_jws(payload: dict, key: Ed25519PrivateKey, kid: str, typ: str) -> bytes:
    """Flattened JWS JSON; the returned bytes are exactly what is stored, published and chained."""
    protected = b64url(canonical_json({"alg": ALG, "kid": kid, "typ": typ}))
    body = b64url(canonical_json(payload))
    signature = key.sign(f"{protected}.{body}".encode("ascii"))
    return envelope(protected, body, b64url(signature))


def _json(data: bytes | str, what: str, error: type[SignatureError] = SignatureError) -> object:
    try:
        return strict_loads(data)
    except WireFormatError as exc:
        raise error(f"{what}: {exc}") from None


def _parse(message: bytes) -> tuple[dict, str, str, bytes]:
    jws = _json(message, "not JSON")
    if not isinstance(jws, dict) or set(jws) != {"protected", "payload", "signature"}:
        raise SignatureError("not a flattened JWS (need exactly protected, payload, signature)")
    protected, body, sig = jws["protected"], jws["payload"], jws["signature"]
    if not all(isinstance(v, str) and v.isascii() for v in (protected, body, sig)):
        # Non-ASCII here would otherwise surface as UnicodeEncodeError in whoever verifies it.
        raise SignatureError("protected, payload and signature must be base64url text")
    try:
        signature = b64url_decode(sig)
        b64url_decode(body)
    except SignatureError as exc:
        raise NonCanonicalError(str(exc)) from None
    if bytes(message) != envelope(protected, body, sig):
        # The message hash chains results: a re-wrapped copy of a genuine result (other whitespace, member
        # order, escapes) would verify yet hash differently, so only the exact form sign_jws writes is valid.
        raise NonCanonicalError("non-canonical JWS envelope (must be exactly "
                             '{"protected":"…","payload":"…","signature":"…"} with no whitespace)')
    header = _json(b64url_decode(protected), "protected header is not JSON")
    if not isinstance(header, dict) or header.get("alg") != ALG:
        raise SignatureError(f"protected header alg must be {ALG!r}")
    return header, protected, body, signature


def same_signed_content(a: bytes, b: bytes) -> bool:
    """True if two flattened JWS carry the same protected header, payload and signature bytes, however each
    is wrapped: the same signed message, not two. Lenient on purpose (one may be a copy stored before the
    canonical-envelope rule); never use it to accept a message, only to tell a re-wrap from equivocation."""
    def parts(m: bytes) -> tuple[str, str, bytes] | None:
        try:
            jws = json.loads(m)
            sig = "".join(c for c in jws["signature"] if c.isalnum() or c in "-_")
            return jws["protected"], jws["payload"], base64.urlsafe_b64decode(sig + "=" * (-len(sig) % 4))
        except (ValueError, TypeError, KeyError, RecursionError):
            return None
    pa, pb = parts(a), parts(b)
    return pa is not None and pa == pb


def jws_header(message: bytes) -> dict:
    """The protected header, unverified: only for choosing which key to verify with."""
    return _parse(message)[0]


def unverified_payload(message: bytes) -> dict:
    """The payload of a flattened JWS, NOT verified: for reading back what this side stored, or for choosing
    how to report a message that is about to be refused. Raises SignatureError if it is not one."""
    try:
        # No wire size limit: a station reads back its own journal, where an oversized result is kept
        # (quarantined) for a USB export; depth and number limits still hold.
        jws = strict_loads(message, max_bytes=READBACK_MAX_BYTES)
        payload = strict_loads(b64url_decode(jws["payload"]), max_bytes=READBACK_MAX_BYTES)   # type: ignore[index]
    except (ValueError, TypeError, KeyError) as exc:
        raise SignatureError(f"not a flattened JWS carrying JSON ({exc})") from None
    if not isinstance(payload, dict):
        raise SignatureError("JWS payload is not a JSON object")
    return payload


def verify_jws(message: bytes, public_key: Ed25519PublicKey, typ: str | None = None) -> dict:
    header, protected, body, sig = _parse(message)
    if typ is not None and header.get("typ") != typ:
        raise SignatureError(f"typ is {header.get('typ')!r}, expected {typ!r}")
    try:
        public_key.verify(sig, f"{protected}.{body}".encode("ascii"))
    except InvalidSignature:
        raise SignatureError("signature does not verify") from None
    payload = _json(b64url_decode(body), "payload is not acceptable JSON", PayloadError)
    if not isinstance(payload, dict):
        raise SignatureError("payload is not a JSON object")
    return payload
