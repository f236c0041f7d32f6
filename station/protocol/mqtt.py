# Broker URLs, TLS files and paho-mqtt 2.x client construction (MQTT v5), shared by publisher and town.
from __future__ import annotations

import os
import ssl
from dataclasses import dataclass
from typing import Protocol
from urllib.parse import urlsplit

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from station.errors import BrokerURLError, TLSFileError

DEFAULT_PORTS = {"mqtt": 1883, "mqtts": 8883}






class BrokerSettings(Protocol):
    """What station.config.BrokerConfig provides (empty string or None = not set)."""

    url: str
    ca_file: str | None
    cert_file: str | None
    key_file: str | None
    keepalive_s: int
    max_payload_bytes: int
    client_id: str | None


@dataclass(frozen=True)
class BrokerAddress:
    url: str
    host: str
    port: int
    tls: bool


def parse_broker_url(url: str) -> BrokerAddress:
    """mqtt://host[:1883] (plain) or mqtts://host[:8883] (TLS); anything else is a one-line BrokerURLError."""
    if not isinstance(url, str) or not url.strip():
        raise BrokerURLError("broker URL is empty (expected mqtt://HOST:PORT or mqtts://HOST:PORT)")
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError as exc:
        raise BrokerURLError(f"{url}: bad broker URL ({exc})") from None
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS:
        raise BrokerURLError(f"{url}: scheme must be mqtt:// or mqtts://, not {parts.scheme or 'missing'!r}")
    if not parts.hostname:
        raise BrokerURLError(f"{url}: no host (expected {scheme}://HOST:PORT)")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise BrokerURLError(f"{url}: a broker URL has no path, query or fragment")
    if parts.username or parts.password:
        raise BrokerURLError(f"{url}: credentials in the URL are not supported (use client certificates)")
    if port is None:
        port = DEFAULT_PORTS[scheme]
    if not 0 < port < 65536:
        raise BrokerURLError(f"{url}: port {port} out of range 1..65535")
    return BrokerAddress(url=url.strip(), host=parts.hostname, port=port, tls=scheme == "mqtts")


def _opt(value: str | None) -> str | None:
    return value or None


def _check_file(url: str, what: str, path: str) -> None:
    if not os.path.isfile(path):
        raise TLSFileError(f"{url}: {what} file not found: {path}")
    if not os.access(path, os.R_OK):
        raise TLSFileError(f"{url}: {what} file not readable: {path}")


def tls_context(addr: BrokerAddress, ca_file: str | None, cert_file: str | None,
                key_file: str | None) -> ssl.SSLContext:
    """Verifying TLS context for an mqtts:// broker: CA required; client cert and key go together."""
    if not ca_file:
        raise TLSFileError(f"{addr.url}: mqtts:// needs a CA file (ca_file / --ca) to verify the broker")
    _check_file(addr.url, "CA", ca_file)
    if bool(cert_file) != bool(key_file):
        missing = "client key (key_file)" if cert_file else "client certificate (cert_file)"
        raise TLSFileError(f"{addr.url}: client certificate auth needs both cert and key; {missing} is missing")
    if cert_file:
        _check_file(addr.url, "client certificate", cert_file)
        _check_file(addr.url, "client key", key_file)  # type: ignore[arg-type]
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=ca_file)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if cert_file:
        try:
            ctx.load_cert_chain(cert_file, key_file)
        except (ssl.SSLError, OSError) as exc:
            raise TLSFileError(f"{cert_file}: cannot load client certificate/key {key_file}: {exc}") from None
    return ctx


def make_client(broker: BrokerSettings, client_id: str, *, will: tuple[str, bytes] | None = None,
                max_inflight: int = 100) -> tuple[mqtt.Client, BrokerAddress]:
    """A fresh MQTT v5 client (not yet connected), TLS configured, last will set, no auto-reconnect.

    Each connection gets its own client: paho's in-RAM retry queue is never relied on (the journal
    is the outbox), message ids start fresh, and a wedged client can simply be abandoned.
    """
    addr = parse_broker_url(broker.url)
    client = mqtt.Client(
        callback_api_version=CallbackAPIVersion.VERSION2,
        client_id=_opt(getattr(broker, "client_id", None)) or client_id,
        protocol=mqtt.MQTTv5,
        reconnect_on_failure=False,
    )
    if addr.tls:
        client.tls_set_context(tls_context(addr, _opt(broker.ca_file), _opt(broker.cert_file),
                                           _opt(broker.key_file)))
    client.max_inflight_messages_set(max(1, max_inflight))
    client.max_queued_messages_set(0)
    client.reconnect_delay_set(min_delay=1, max_delay=30)
    if will is not None:
        client.will_set(will[0], will[1], qos=1, retain=True)
    return client, addr
