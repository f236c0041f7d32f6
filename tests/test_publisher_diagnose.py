# Issue 8 defect 6: the publisher says why it cannot reach the broker (refused, DNS, TLS clock), once per
# change, backs off, and keeps the cause in its state for `station status`. Real sockets and TLS servers.
from __future__ import annotations

import datetime as dt
import queue
import socket
import ssl
import threading
import time

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from stationkit import eventually

from station.config import BrokerConfig
from station.lab.rig import StationRig
from station.protocol.mqtt import parse_broker_url
from station.publisher.client import Publisher
from station.publisher.diagnose import Backoff, explain
from station.publisher.settings import PublisherSettings
from station.town import ca


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def publisher(kit, url: str, **broker):
    events: queue.Queue = queue.Queue()
    cfg = BrokerConfig(url=url, keepalive_s=5, max_payload_bytes=131072, **broker)
    settings = PublisherSettings.from_config(cfg, kit.ident, kit.tmp / "journal.sqlite", str(kit.town_jwk),
                                             reconnect_max_delay_s=30, status_interval_s=5)
    return Publisher(settings, kit.key, on_event=events.put), events


def collect(events: queue.Queue, seconds: float) -> list:
    out, end = [], time.monotonic() + seconds
    while time.monotonic() < end:
        try:
            out.append(events.get(timeout=0.1))
        except queue.Empty:
            pass
    return out


class CountingServer:
    """A TCP (optionally TLS) server that counts connection attempts and then hangs up."""

    def __init__(self, tls: ssl.SSLContext | None = None):
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.tls, self.accepted = tls, 0
        self.sock.settimeout(0.2)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            self.accepted += 1
            try:
                if self.tls is not None:
                    conn.settimeout(2)
                    with self.tls.wrap_socket(conn, server_side=True):
                        pass
            except (OSError, ssl.SSLError):
                pass   # the client refusing our certificate is the point
            finally:
                conn.close()

    def close(self) -> None:
        self.stop.set()
        self.thread.join(2)
        self.sock.close()


def test_refused_port_is_explained_once_and_kept_in_state(station_kit, capfd):
    pub, events = publisher(station_kit, f"mqtt://127.0.0.1:{free_port()}")
    pub.start()
    try:
        seen = collect(events, 6)
        state = pub.state
    finally:
        pub.stop(2)
    unreachable = [e for e in seen if e.kind == "unreachable"]
    assert len(unreachable) == 1, [str(e) for e in seen]
    assert "refused the connection" in unreachable[0].detail and "is the broker running" in unreachable[0].detail
    assert not [e for e in seen if e.kind == "rebuilt"]        # no "paho network thread ended" every 3.5 s
    assert "refused the connection" in state.last_error       # what `station status` shows as broker_error
    assert "Traceback" not in capfd.readouterr().err


def test_unresolvable_host_is_explained(station_kit):
    pub, events = publisher(station_kit, "mqtt://nonexistent.invalid:1883")
    pub.start()
    try:
        seen = collect(events, 4)
    finally:
        pub.stop(2)
    details = [e.detail for e in seen if e.kind == "unreachable"]
    assert details and "cannot resolve the broker host 'nonexistent.invalid'" in details[0], details


def test_failed_attempts_back_off(station_kit):
    server = CountingServer()
    pub, events = publisher(station_kit, f"mqtt://127.0.0.1:{server.port}")
    pub.start()
    try:
        seen = collect(events, 7.5)
    finally:
        pub.stop(2)
        server.close()
    # attempts at about 0, 1, 3, 7 s; the old client was rebuilt every ~0.5-3.5 s without a reason
    assert 2 <= server.accepted <= 5, server.accepted
    assert len([e for e in seen if e.kind == "unreachable"]) == 1


def _future_server_cert(tmp_path, years_ahead: float = 2.0) -> tuple[ssl.SSLContext, object]:
    files = ca.init_ca(tmp_path / "ca")
    ca_cert, ca_key = ca.load_ca(tmp_path / "ca")
    key = ec.generate_private_key(ec.SECP256R1())
    start = dt.datetime.now(dt.UTC) + dt.timedelta(days=365.25 * years_ahead)
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
            .issuer_name(ca_cert.subject).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(start).not_valid_after(start + dt.timedelta(days=365))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    (tmp_path / "srv.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "srv.key").write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                                          serialization.PrivateFormat.PKCS8,
                                                          serialization.NoEncryption()))
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(tmp_path / "srv.crt", tmp_path / "srv.key")
    return ctx, files


def test_certificate_not_yet_valid_names_the_clock_and_the_wait(station_kit, tmp_path, capfd):
    ctx, files = _future_server_cert(tmp_path)
    server = CountingServer(ctx)
    pub, events = publisher(station_kit, f"mqtts://localhost:{server.port}", ca_file=str(files.cert_file))
    pub.start()
    try:
        seen = collect(events, 5)
        state = pub.state
    finally:
        pub.stop(2)
        server.close()
    details = [e.detail for e in seen if e.kind == "unreachable"]
    assert len(details) == 1, [str(e) for e in seen]
    assert "is 2 years behind the broker certificate" in details[0], details[0]
    assert "waiting for time sync" in details[0]
    assert "behind the broker certificate" in state.last_error
    assert "Traceback" not in capfd.readouterr().err


def test_a_clock_behind_the_certificate_is_said_once_while_the_minutes_pass(tmp_path):
    """The cause quotes the station clock: the next minute's attempt is the same cause, not a new one."""
    ctx, files = _future_server_cert(tmp_path)
    server = CountingServer(ctx)
    settings = BrokerConfig(url=f"mqtts://localhost:{server.port}", ca_file=str(files.cert_file))
    addr = parse_broker_url(settings.url)
    try:
        ctx = ssl.create_default_context(cafile=settings.ca_file)
        with pytest.raises(ssl.SSLCertVerificationError) as caught, \
                socket.create_connection((addr.host, addr.port), 5) as sock:
            ctx.wrap_socket(sock, server_hostname=addr.host)
        exc = caught.value
        now = time.time()
        causes = [explain(exc, addr, settings, now=now + dt_s) for dt_s in (0, 61, 3 * 3600)]
    finally:
        server.close()
    assert causes[0] != causes[1], "the clock in the message did not move"
    backoff = Backoff(max_s=60)
    assert [backoff.failed(c)[1] for c in causes] == [True, False, False]
    assert backoff.failed("TCP to localhost: connection refused")[1] is True


def test_issued_certificates_are_valid_from_well_before_issue(tmp_path):
    ca.init_ca(tmp_path / "ca")
    out = ca.issue(tmp_path / "ca", "st-0001", tmp_path / "out")
    for path in (tmp_path / "ca" / "ca.crt", out.cert_file):
        cert = x509.load_pem_x509_certificate(path.read_bytes())
        behind = dt.datetime.now(dt.UTC) - cert.not_valid_before_utc
        assert behind >= dt.timedelta(days=ca.BACKDATE_DAYS - 1), (path, behind)
        assert cert.not_valid_after_utc - dt.datetime.now(dt.UTC) >= dt.timedelta(days=ca.LEAF_DAYS - 1)


def test_station_status_shows_the_broker_error(tmp_path):
    """A real daemon (subprocess) whose broker port refuses: `station status` carries the cause."""
    rig = StationRig(tmp_path, broker_url=f"mqtt://127.0.0.1:{free_port()}", photos=("negative.jpg",))
    daemon = rig.daemon().start()
    try:
        eventually(lambda: "refused the connection" in daemon.status().get("broker_error", ""), 20,
                   "the broker error in the status")
        assert daemon.status()["connected"] is False
    finally:
        daemon.terminate()
