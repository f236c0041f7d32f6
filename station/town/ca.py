# A small X.509 certificate authority for a town: one CA, a broker server cert, one client cert per station.
from __future__ import annotations

import datetime as dt
import ipaddress
import os
import re
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from station.errors import CertError

CA_CERT = "ca.crt"
CA_KEY = "ca.key"
DEFAULT_CA_NAME = "Nong'an Town CA"
CA_DAYS = 3650
# Stations live for years without a technician visit; renew well before the CA itself expires.
LEAF_DAYS = 1825
# How long before issue time certificates are valid from (see _not_before).
BACKDATE_DAYS = 30
# CN becomes the MQTT username (use_identity_as_username); the ACL substitutes it into topic patterns,
# so a CN containing a topic separator or wildcard would widen what that client may touch.
_CN_FORBIDDEN = re.compile(r"[/+#\x00-\x1f\x7f]")
_CN_MAX = 64  # X.509 ub-common-name




@dataclass(frozen=True)
class ClientCert:
    cert_file: Path
    key_file: Path


@dataclass(frozen=True)
class CAFiles:
    cert_file: Path
    key_file: Path


def check_cn(cn: str) -> str:
    """The CN unchanged, or CertError saying why it cannot be an MQTT username in ACL patterns."""
    if not cn or not cn.strip():
        raise CertError("certificate CN is empty; it becomes the MQTT username and must name the client")
    if cn != cn.strip():
        raise CertError(f"certificate CN {cn!r} has leading or trailing spaces")
    bad = _CN_FORBIDDEN.search(cn)
    if bad:
        raise CertError(f"certificate CN {cn!r} contains {bad.group()!r}; '/', '+', '#' and control "
                        "characters are refused because the CN is used in MQTT ACL topic patterns")
    if len(cn) > _CN_MAX:
        raise CertError(f"certificate CN {cn!r} is longer than {_CN_MAX} characters")
    return cn


def _write_private(path: Path, data: bytes) -> None:
    # O_EXCL + 0600 at creation: the key is never readable by others, not even between open and chmod.
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise CertError(f"{path}: already exists; refusing to overwrite a private key") from None
    except OSError as e:
        raise CertError(f"{path}: cannot create key file: {e.strerror}") from None
    with os.fdopen(fd, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.chmod(path, 0o600)  # in case a restrictive umask is not the only thing in play


def _write_public(path: Path, data: bytes) -> None:
    try:
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_bytes(data)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except OSError as e:
        raise CertError(f"{path}: cannot write certificate: {e.strerror}") from None


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _not_before() -> dt.datetime:
    # Back-dated well before issue: a Pi without a clock battery boots at the time it last shut down
    # (fake-hwclock) until NTP answers; a station provisioned weeks after its last boot must still connect.
    return _now() - dt.timedelta(days=BACKDATE_DAYS)


def _mkdir(path: Path) -> None:
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise CertError(f"{path}: cannot create directory: {e.strerror}") from None


def init_ca(ca_dir: Path, *, name: str = DEFAULT_CA_NAME, days: int = CA_DAYS) -> CAFiles:
    """Create ca.key (0600) and a self-signed ca.crt in ca_dir; refuses to replace an existing CA."""
    ca_dir = Path(ca_dir)
    if not name.strip():
        raise CertError("CA name is empty")
    if days < 1:
        raise CertError(f"CA validity {days} days: must be at least 1")
    cert_file, key_file = ca_dir / CA_CERT, ca_dir / CA_KEY
    for f in (cert_file, key_file):
        if f.exists():
            raise CertError(f"{f}: already exists; a CA is initialised once (re-creating it would "
                            "invalidate every issued certificate)")
    _mkdir(ca_dir)
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(_not_before())
        .not_valid_after(_now() + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False,
                                     key_encipherment=False, data_encipherment=False, key_agreement=False,
                                     key_cert_sign=True, crl_sign=True, encipher_only=False,
                                     decipher_only=False), critical=True)
        .add_extension(ski, critical=False)
        .sign(key, hashes.SHA256())
    )
    _write_private(key_file, _key_pem(key))
    _write_public(cert_file, cert.public_bytes(serialization.Encoding.PEM))
    return CAFiles(cert_file, key_file)


def load_ca(ca_dir: Path) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    ca_dir = Path(ca_dir)
    cert_file, key_file = ca_dir / CA_CERT, ca_dir / CA_KEY
    for f in (cert_file, key_file):
        if not f.is_file():
            raise CertError(f"{f}: CA file missing; run `station certs init-ca --dir {ca_dir}` first")
    try:
        cert = x509.load_pem_x509_certificate(cert_file.read_bytes())
    except (OSError, ValueError) as e:
        raise CertError(f"{cert_file}: not a readable PEM certificate: {e}") from None
    try:
        key = serialization.load_pem_private_key(key_file.read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as e:
        raise CertError(f"{key_file}: not a readable unencrypted PEM private key: {e}") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise CertError(f"{key_file}: expected an EC private key")
    if key.public_key().public_numbers() != cert.public_key().public_numbers():
        raise CertError(f"{key_file}: does not belong to {cert_file}")
    return cert, key


def _san_entries(san: list[str]) -> list[x509.GeneralName]:
    out: list[x509.GeneralName] = []
    for raw in san:
        item = raw.strip()
        if not item:
            continue
        try:
            out.append(x509.IPAddress(ipaddress.ip_address(item)))
        except ValueError:
            if not re.fullmatch(r"[A-Za-z0-9*]([A-Za-z0-9.*-]*[A-Za-z0-9])?", item):
                raise CertError(f"subject alternative name {item!r} is neither an IP address nor a DNS name")\
                    from None
            out.append(x509.DNSName(item))
    return out


def issue(ca_dir: Path, cn: str, out_dir: Path, *, server: bool = False, san: list[str] | None = None,
          days: int = LEAF_DAYS) -> ClientCert:
    """Issue <out_dir>/<cn>.crt and <cn>.key (0600) signed by the CA in ca_dir.

    A client cert (default) is for a station (CN = station id) or the town server; --server makes a
    broker certificate whose SANs (default: the CN) are what clients verify the hostname against.
    """
    check_cn(cn)
    if days < 1:
        raise CertError(f"certificate validity {days} days: must be at least 1")
    ca_cert, ca_key = load_ca(ca_dir)
    out_dir = Path(out_dir)
    cert_file, key_file = out_dir / f"{cn}.crt", out_dir / f"{cn}.key"
    if key_file.exists():
        raise CertError(f"{key_file}: already exists; remove it first to re-issue {cn!r}")
    names = _san_entries(san or ([cn] if server else []))
    if server and not names:
        raise CertError("a server certificate needs at least one subject alternative name (--san)")
    _mkdir(out_dir)
    key = ec.generate_private_key(ec.SECP256R1())
    not_after = min(_now() + dt.timedelta(days=days), ca_cert.not_valid_after_utc)
    usage = ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(max(_not_before(), ca_cert.not_valid_before_utc))
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False,
                                     key_encipherment=False, data_encipherment=False, key_agreement=False,
                                     key_cert_sign=False, crl_sign=False, encipher_only=False,
                                     decipher_only=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                       critical=False)
    )
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    cert = builder.sign(ca_key, hashes.SHA256())
    _write_private(key_file, _key_pem(key))
    _write_public(cert_file, cert.public_bytes(serialization.Encoding.PEM))
    return ClientCert(cert_file, key_file)
