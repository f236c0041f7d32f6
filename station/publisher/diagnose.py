# Why the station cannot reach its broker, in one line that says what to do: refused, DNS, TLS, clock.
#
# Threads: called by the publisher worker with the exception its network thread posted; the extra TLS probe
# for an unverifiable certificate opens one short connection of its own (at most once per change of cause).
from __future__ import annotations

import datetime as dt
import errno
import re
import socket
import ssl
import time

from station.protocol.mqtt import BrokerAddress, BrokerSettings

# OpenSSL X509_V_ERR_* codes (x509_vfy.h) that have a fix worth naming.
NOT_YET_VALID, EXPIRED, UNKNOWN_ISSUER, SELF_SIGNED_IN_CHAIN, HOSTNAME_MISMATCH = 9, 10, 20, 19, 62


class Backoff:
    """Connection attempts failed in a row: when to try next (after 1, 2, 4 … up to max_s seconds), and
    whether the cause changed (said once per change, not once per attempt)."""

    def __init__(self, max_s: float) -> None:
        self.max_s, self.failures, self.cause = max_s, 0, None

    def failed(self, cause: str) -> tuple[float, bool]:
        """(monotonic time of the next attempt, is this a new cause)."""
        self.failures += 1
        # the clock-skew causes quote the station clock and the gap, which move every minute while the
        # cause stays the same: numbers do not make a cause new
        key = re.sub(r"\d+", "#", cause)
        new, self.cause = key != self.cause, key
        return time.monotonic() + min(self.max_s, 2.0 ** min(self.failures - 1, 10)), new

    def reset(self) -> None:
        self.failures, self.cause = 0, None


def _span(seconds: float) -> str:
    s = abs(seconds)
    for unit, n in (("year", 365.25 * 86400), ("day", 86400), ("hour", 3600), ("minute", 60)):
        if s >= 0.95 * n:
            k = max(1, round(s / n))
            return f"{k} {unit}{'s' if k > 1 else ''}"
    return f"{s:.0f} s"


def _utc(t: dt.datetime) -> str:
    return t.strftime("%Y-%m-%d %H:%M UTC")


def _ca_not_before(ca_file: str | None) -> dt.datetime | None:
    from cryptography import x509

    try:
        with open(ca_file or "", "rb") as f:
            return x509.load_pem_x509_certificate(f.read()).not_valid_before_utc
    except (OSError, ValueError):
        return None


def broker_cert_dates(addr: BrokerAddress, broker: BrokerSettings,
                      timeout: float = 5.0) -> tuple[dt.datetime, dt.datetime] | None:
    """(notBefore, notAfter) of the certificate the broker presents, read without verifying it: only to
    tell the technician what verification said no to. None if the probe itself fails."""
    from cryptography import x509

    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    try:
        if broker.cert_file and broker.key_file:   # a broker requiring client certificates then lets us finish
            ctx.load_cert_chain(broker.cert_file, broker.key_file)
        with socket.create_connection((addr.host, addr.port), timeout) as sock, \
                ctx.wrap_socket(sock, server_hostname=addr.host) as tls:
            der = tls.getpeercert(binary_form=True)
        cert = x509.load_der_x509_certificate(der or b"")
    except (OSError, ValueError):
        return None
    return cert.not_valid_before_utc, cert.not_valid_after_utc


def _cert_error(exc: ssl.SSLCertVerificationError, addr: BrokerAddress, broker: BrokerSettings,
                now: float) -> str:
    code = getattr(exc, "verify_code", None)
    clock = dt.datetime.fromtimestamp(now, dt.UTC)
    if code in (NOT_YET_VALID, EXPIRED):
        dates = broker_cert_dates(addr, broker)
        if code == NOT_YET_VALID:
            starts = [d for d in (dates[0] if dates else None, _ca_not_before(broker.ca_file)) if d is not None]
            start = max(starts) if starts else None
            if start is not None and start > clock:
                return (f"TLS to {addr.host}:{addr.port}: the station clock ({_utc(clock)}) is "
                        f"{_span((start - clock).total_seconds())} behind the broker certificate (valid from "
                        f"{_utc(start)}): waiting for time sync (NTP); a Pi without a clock battery has the "
                        "wrong time until the network time arrives")
            return (f"TLS to {addr.host}:{addr.port}: a certificate is not yet valid by the station clock "
                    f"({_utc(clock)}): waiting for time sync (NTP)")
        end = f" on {_utc(dates[1])}" if dates else ""
        return (f"TLS to {addr.host}:{addr.port}: the broker certificate expired{end} (station clock "
                f"{_utc(clock)}): renew it with `station certs issue --server`, or fix the station clock if it "
                "is ahead")
    if code == HOSTNAME_MISMATCH:
        return (f"TLS to {addr.host}:{addr.port}: the broker certificate is not issued for {addr.host!r}: "
                f"use the host name it was issued for in [broker] url, or reissue it with --san {addr.host}")
    if code in (UNKNOWN_ISSUER, SELF_SIGNED_IN_CHAIN):
        return (f"TLS to {addr.host}:{addr.port}: the broker certificate is not signed by the CA in "
                f"{broker.ca_file}: wrong ca_file, or not the town's broker")
    return f"TLS to {addr.host}:{addr.port}: broker certificate refused: {exc.verify_message or exc}"


def explain(exc: BaseException, addr: BrokerAddress, broker: BrokerSettings, now: float | None = None) -> str:
    """One line: what went wrong connecting to the broker and what to do about it."""
    now = time.time() if now is None else now
    where = f"{addr.host}:{addr.port}"
    if isinstance(exc, ssl.SSLCertVerificationError):
        return _cert_error(exc, addr, broker, now)
    if isinstance(exc, ssl.SSLError):
        reason = (exc.reason or str(exc)).lower()
        if "wrong_version" in reason or "wrong version" in reason or "record layer" in reason:
            return f"TLS to {where}: that port does not speak TLS (is it the plain mqtt:// port?)"
        if "eof" in reason:
            return (f"TLS to {where}: the broker closed the connection during the handshake: it may have "
                    "refused the station's client certificate (see the broker log)")
        if "alert" in reason or "certificate" in reason:
            return (f"TLS to {where}: the broker rejected the station's client certificate ({exc.reason}): "
                    f"issue one from the town CA (`station certs issue --cn <station id>`) and set cert_file, "
                    "key_file")
        return f"TLS to {where}: {exc.reason or exc}"
    if isinstance(exc, socket.gaierror):
        return (f"cannot resolve the broker host {addr.host!r} ({exc.strerror}): check [broker] url, and the "
                "station's network and DNS")
    if isinstance(exc, ConnectionRefusedError):
        return (f"{where} refused the connection (nothing listening there): is the broker running, and is "
                "the port in [broker] url right?")
    if isinstance(exc, TimeoutError | socket.timeout):
        return f"no answer from {where} in time: network down, wrong address, or a firewall dropping packets"
    if isinstance(exc, ConnectionResetError | BrokenPipeError) or "EOF" in str(exc):
        return (f"{where} closed the connection during setup: a TLS port reached with mqtt://, or the broker "
                "refused the client certificate")
    if isinstance(exc, OSError) and exc.errno in (errno.ENETUNREACH, errno.EHOSTUNREACH, errno.ENETDOWN):
        return f"no route to {where} ({exc.strerror}): is the station's network up?"
    return f"cannot connect to {where}: {type(exc).__name__}: {exc}"
