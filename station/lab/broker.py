# A private Mosquitto on loopback for tests, the demo and chaos scripts: plain, or the shipped TLS config.
from __future__ import annotations

import atexit
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import time
from importlib import resources
from pathlib import Path

from station.errors import BrokerError, BrokerNotInstalled
from station.town import ca as certs
from station.town.ca import ClientCert

# The town broker's config ships as package data of the town (station/town/mosquitto/), so a checkout and an
# installed package find the very files a town installs. Anchored on `station`, not `station.town`, so it
# holds whether station.town is a module or a package; mosquitto is handed real paths, which pip's
# unpacked installs give.
_SHIPPED_DIR = Path(str(resources.files("station.town").joinpath("mosquitto")))
SHIPPED_CONF = _SHIPPED_DIR / "town-broker.conf"
SHIPPED_ACL = _SHIPPED_DIR / "town-broker.acl"
# Broker-side cap on one PUBLISH payload (the shipped town config says the same; a test keeps them equal).
# The station's client-side cap must stay below it, because Mosquitto drops oversized QoS 1 messages
# silently for MQTT 3.1.1 clients while still sending PUBACK.
MESSAGE_SIZE_LIMIT = 262144
TOWN_SERVER = "town-server"
SERVER_CN = "localhost"
_CANDIDATES = ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto", "/usr/bin/mosquitto")


# Brokers still running when Python exits (a test that failed before stop(), a crashed demo) are
# terminated then, instead of lingering on their ports.
_LIVE: set[subprocess.Popen[bytes]] = set()


@atexit.register
def _terminate_leftovers() -> None:
    for proc in list(_LIVE):
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)






def find_mosquitto() -> str:
    """Path of the mosquitto executable ($NONGAN_MOSQUITTO overrides), or BrokerNotInstalled."""
    override = os.environ.get("NONGAN_MOSQUITTO")
    if override:
        if os.access(override, os.X_OK):
            return override
        raise BrokerNotInstalled(f"NONGAN_MOSQUITTO={override}: not an executable file")
    found = shutil.which("mosquitto")
    # Debian installs it in /usr/sbin, which is not on an ordinary user's PATH.
    for path in ([found] if found else []) + list(_CANDIDATES):
        if os.access(path, os.X_OK):
            return path
    raise BrokerNotInstalled("mosquitto is not installed (apt-get install mosquitto); "
                             "looked on PATH and in " + ", ".join(_CANDIDATES))


def free_port() -> int:
    """An ephemeral loopback port the kernel just handed out (bound to 0, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def shipped_substitutions(*, port: int, ca: Path, cert: Path, key: Path, acl: Path, data: Path,
                          user: str) -> dict[str, str]:
    """Every line of the shipped town config a test run changes: paths, port, run-as user, persistence."""
    return {
        # A root test run keeps root: the mosquitto user cannot enter pytest's 0700 temporary directories.
        "user mosquitto": f"user {user}",
        "listener 8883": f"listener {port} 127.0.0.1",
        "cafile /etc/mosquitto/town/ca.crt": f"cafile {ca}",
        "certfile /etc/mosquitto/town/server.crt": f"certfile {cert}",
        "keyfile /etc/mosquitto/town/server.key": f"keyfile {key}",
        "acl_file /etc/mosquitto/town/town-broker.acl": f"acl_file {acl}",
        "persistence true": "persistence false",
        "persistence_location /var/lib/mosquitto/": f"persistence_location {data}/",
    }


def render_shipped(substitutions: dict[str, str], conf: Path = SHIPPED_CONF) -> str:
    """The shipped config with exactly the listed whole lines replaced; a missing line is an error."""
    try:
        lines = conf.read_text(encoding="utf-8").splitlines()
    except OSError as e:
        raise BrokerError(f"{conf}: cannot read shipped broker config: {e.strerror}") from None
    for old in substitutions:
        count = sum(1 for line in lines if line.strip() == old)
        if count != 1:
            raise BrokerError(f"{conf}: expected the line {old!r} exactly once, found {count}; "
                              "update shipped_substitutions() in station/lab/broker.py with it")
    return "\n".join(substitutions.get(line.strip(), line) for line in lines) + "\n"


def _run_as() -> str:
    # Only meaningful when started as root; otherwise mosquitto ignores `user` and keeps our identity.
    return "root" if os.geteuid() == 0 else "mosquitto"


def _plain_config(port: int) -> str:
    return (
        "# Private test broker: anonymous clients, loopback only, nothing persisted.\n"
        f"listener {port} 127.0.0.1\n"
        "allow_anonymous true\n"
        "persistence false\n"
        f"message_size_limit {MESSAGE_SIZE_LIMIT}\n"
        "log_dest stderr\n"
        "log_type error\nlog_type warning\nlog_type notice\nlog_type information\n"
    )


class LocalBroker:
    """One mosquitto process in workdir. Plain: anonymous on 127.0.0.1. TLS: the shipped town config."""

    def __init__(self, workdir: Path, *, tls: bool = False, port: int | None = None):
        self.workdir = Path(workdir)
        self.tls = tls
        self._port = port
        self._proc: subprocess.Popen[bytes] | None = None
        self.conf_file = self.workdir / "mosquitto.conf"
        self.log_file = self.workdir / "mosquitto.log"
        self.pki = self.workdir / "pki"
        self.ca_dir = self.pki / "ca"
        self.clients_dir = self.pki / "clients"

    # --- addresses ---
    @property
    def host(self) -> str:
        # TLS clients must name the host the server certificate was issued for.
        return SERVER_CN if self.tls else "127.0.0.1"

    @property
    def port(self) -> int:
        if self._port is None:
            raise BrokerError(f"{self.workdir}: broker has no port yet; call start() first")
        return self._port

    @property
    def url(self) -> str:
        return f"{'mqtts' if self.tls else 'mqtt'}://{self.host}:{self.port}"

    @property
    def ca_file(self) -> Path:
        return self.ca_dir / certs.CA_CERT

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self.running else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    # --- certificates (TLS mode) ---
    def _ensure_pki(self) -> tuple[Path, Path]:
        if not self.ca_file.exists():
            certs.init_ca(self.ca_dir, name="Nong'an Test Town CA", days=30)
        server = self.pki / "server"
        if not (server / f"{SERVER_CN}.key").exists():
            certs.issue(self.ca_dir, SERVER_CN, server, server=True, san=["localhost", "127.0.0.1", "::1"],
                        days=30)
        return server / f"{SERVER_CN}.crt", server / f"{SERVER_CN}.key"

    def issue_client(self, name: str) -> ClientCert:
        """A client cert with CN=name from this broker's CA, reused if present."""
        if not self.tls:
            raise BrokerError(f"{self.workdir}: client certificates need LocalBroker(tls=True)")
        self._ensure_pki()
        existing = ClientCert(self.clients_dir / f"{name}.crt", self.clients_dir / f"{name}.key")
        if existing.cert_file.exists() and existing.key_file.exists():
            return existing
        return certs.issue(self.ca_dir, name, self.clients_dir, days=30)

    def ssl_context(self, client: ClientCert | None = None) -> ssl.SSLContext:
        """A verifying client TLS context trusting this broker's CA, presenting `client` if given."""
        if not self.tls:
            raise BrokerError(f"{self.workdir}: ssl_context needs LocalBroker(tls=True)")
        self._ensure_pki()
        ctx = ssl.create_default_context(cafile=str(self.ca_file))
        if client is not None:
            ctx.load_cert_chain(str(client.cert_file), str(client.key_file))
        return ctx

    # --- configuration ---
    def _write_config(self, port: int) -> None:
        if self.tls:
            cert, key = self._ensure_pki()
            data = self.workdir / "data"
            data.mkdir(exist_ok=True)
            text = render_shipped(shipped_substitutions(port=port, ca=self.ca_file, cert=cert, key=key,
                                                        acl=SHIPPED_ACL, data=data, user=_run_as()))
        else:
            text = _plain_config(port)
        self.conf_file.write_text(text, encoding="utf-8")

    def log_tail(self, lines: int = 15) -> str:
        try:
            text = self.log_file.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""
        return " | ".join(text.strip().splitlines()[-lines:])

    # --- lifecycle ---
    def start(self, timeout: float = 10) -> LocalBroker:
        if self.running:
            return self
        exe = find_mosquitto()
        self.workdir.mkdir(parents=True, exist_ok=True)
        # A port picked by binding 0 can, rarely, be taken again before mosquitto binds it; pick anew then.
        attempts = 1 if self._port is not None else 3
        for attempt in range(attempts):
            port = self._port if self._port is not None else free_port()
            try:
                self._launch(exe, port, timeout)
                self._port = port
                return self
            except BrokerError:
                if attempt + 1 < attempts and "Address already in use" in self.log_tail(50):
                    continue
                raise
        raise AssertionError("unreachable")

    def _launch(self, exe: str, port: int, timeout: float) -> None:
        self._write_config(port)
        log_start = self.log_file.stat().st_size if self.log_file.exists() else 0
        with open(self.log_file, "ab") as log:
            # Own session: a Ctrl-C in the terminal running the tests does not hit the broker first.
            self._proc = subprocess.Popen([exe, "-c", str(self.conf_file)], stdin=subprocess.DEVNULL,
                                          stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        _LIVE.add(self._proc)
        deadline = time.monotonic() + timeout
        while True:
            code = self._proc.poll()
            if code is not None:
                _LIVE.discard(self._proc)
                self._proc = None
                raise BrokerError(f"{self.conf_file}: mosquitto exited with status {code} on port {port}: "
                                  f"{self.log_tail()}")
            # Ready = mosquitto says it is running (so the port is its own, not someone else's listener)
            # and the port accepts TCP. In TLS mode the bare probe is logged as a failed handshake: harmless.
            if self._logged_running(log_start):
                try:
                    with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                        return
                except OSError:
                    pass
            if time.monotonic() > deadline:
                self._signal(signal.SIGKILL, 5)
                raise BrokerError(f"{self.conf_file}: mosquitto did not accept connections on "
                                  f"127.0.0.1:{port} within {timeout:g} s: {self.log_tail()}")
            time.sleep(0.05)

    def _logged_running(self, offset: int) -> bool:
        try:
            with open(self.log_file, "rb") as f:
                f.seek(offset)
                return re.search(rb"mosquitto version \S+ running", f.read()) is not None
        except OSError:
            return False

    def _signal(self, sig: int, timeout: float) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        _LIVE.discard(proc)
        if proc.poll() is not None:
            return
        proc.send_signal(sig)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)

    def stop(self, timeout: float = 5) -> None:
        """Graceful stop (SIGTERM; SIGKILL if it lingers). Clients see a normal disconnect."""
        self._signal(signal.SIGTERM, timeout)

    def kill(self) -> None:
        """SIGKILL: the broker vanishes mid-flight, as on a power cut."""
        self._signal(signal.SIGKILL, 5)

    def restart(self, timeout: float = 10) -> LocalBroker:
        """Stop and start again on the same port, so clients with automatic reconnect find it again."""
        self.stop()
        return self.start(timeout)

    def __enter__(self) -> LocalBroker:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = f"pid {self.pid}" if self.running else "stopped"
        return f"LocalBroker({self.workdir}, tls={self.tls}, port={self._port}, {state})"
