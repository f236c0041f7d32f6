# READY only after the journal and every device answered; `station doctor --hardware` on this very machine.
from __future__ import annotations

import datetime as dt
import os
import socket
import subprocess
import sys
from pathlib import Path

import fake_picamera2
import pytest

from station.app import Daemon
from station.config import load_config
from station.errors import DeviceError, DeviceNotFound
from station.home import Home, init_home
from station.host import checks

REPO = Path(__file__).resolve().parent.parent
SAMPLES = REPO / "station" / "lab" / "samples"


@pytest.fixture
def notify(tmp_path, monkeypatch):
    path = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(0.2)
    monkeypatch.setenv("NOTIFY_SOCKET", str(path))

    def received() -> list[str]:
        out = []
        while True:
            try:
                out += sock.recv(4096).decode().splitlines()
            except TimeoutError:
                return out
    yield received
    sock.close()


def _home(tmp_path: Path, camera_lines: str = "") -> Home:
    home = Home(tmp_path / "home")
    init_home(home, station="st-0001", grid="d/t/v", sim_images=str(SAMPLES))
    if camera_lines:
        text = home.config.read_text().replace('driver = "folder"', camera_lines, 1)
        home.config.write_text(text)
    return home


def _start(home: Home) -> Daemon:
    daemon = Daemon(load_config(home.root), home)
    try:
        daemon.start()
    except BaseException:
        daemon.stop()
        raise
    return daemon


def test_ready_after_journal_and_devices(tmp_path, notify):
    daemon = _start(_home(tmp_path))
    try:
        got = notify()
        assert "READY=1" in got and got.index("READY=1") < len(got)
    finally:
        daemon.stop()


def test_no_ready_when_the_camera_is_missing(tmp_path, notify):
    home = _home(tmp_path, 'driver = "v4l2"')
    text = home.config.read_text().replace('device = "/dev/video0"', 'device = "/dev/video97"')
    home.config.write_text(text)
    with pytest.raises(DeviceError):
        _start(home)
    assert "READY=1" not in notify()


def test_no_ready_when_the_camera_controls_do_not_take(tmp_path, notify, monkeypatch):
    world = fake_picamera2.install(monkeypatch, fake_picamera2.World(delay=1, ignore={"ExposureTime"}))
    home = _home(tmp_path, 'driver = "picamera2"')
    with pytest.raises(DeviceError, match="ExposureTime"):
        _start(home)
    assert "READY=1" not in notify()
    assert ("start",) in world.calls and world.calls[-1] == ("close",)
    # And with controls that take, the same station says READY.
    world.ignore.clear()
    _start(home).stop()
    assert "READY=1" in notify()


def _doctor(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "station", "doctor", "--hardware", *args], capture_output=True,
                          text=True, timeout=60, env={**os.environ, "PYTHONPATH": str(REPO)})


@pytest.mark.parametrize("with_home", [True, False])
def test_doctor_hardware_on_this_machine_never_tracebacks(tmp_path, with_home):
    home = _home(tmp_path) if with_home else Home(tmp_path / "none")
    done = _doctor("--home", str(home.root))
    assert "Traceback" not in done.stderr + done.stdout, done.stderr
    lines = done.stdout.splitlines()
    assert lines and lines[-1].endswith("FAIL")
    for line in lines[:-1]:
        assert line.split()[0] in ("OK", "WARN", "FAIL", "fix:"), line
    names = {line[5:19].strip() for line in lines if line[:4].strip() in ("OK", "WARN", "FAIL")}
    expect = {"config", "service user", "device groups", "clock", "service"}
    if with_home:
        expect |= {"camera", "disk", "broker", "signing key"}
    assert expect <= names | {"gpio chip", "serial"}, names
    failed = any(line.startswith("FAIL") for line in lines)
    assert done.returncode == (1 if failed else 0)


def _cert(tmp_path: Path, days: float) -> Path:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "st-0001")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(1).not_valid_before(now - dt.timedelta(days=400))
            .not_valid_after(now + dt.timedelta(days=days)).sign(key, hashes.SHA256()))
    path = tmp_path / f"cert{days}.pem"
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return path


def test_certificate_expiry_levels(tmp_path):
    assert checks.certificate("client cert", _cert(tmp_path, 365))[0].level == checks.OK
    soon = checks.certificate("client cert", _cert(tmp_path, 10))[0]
    assert soon.level == checks.WARN and "days left" in soon.detail
    gone = checks.certificate("client cert", _cert(tmp_path, -1))[0]
    assert gone.level == checks.FAIL and "EXPIRED" in gone.detail and gone.fix
    assert checks.certificate("CA cert", tmp_path / "nope.pem")[0].level == checks.FAIL


def test_broker_reachability(tmp_path):
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen()
    port = srv.getsockname()[1]
    assert checks.broker(f"mqtt://127.0.0.1:{port}")[0].level == checks.OK
    srv.close()
    down = checks.broker(f"mqtt://127.0.0.1:{port}")[0]
    assert down.level == checks.FAIL and "unreachable" in down.detail
    assert checks.broker("")[0].level == checks.WARN


def test_serial_by_id_lists_real_ports_and_their_group(tmp_path):
    master, slave = os.openpty()
    try:
        by_id = tmp_path / "by-id"
        by_id.mkdir()
        (by_id / "usb-Reader_ABC123-if00-port0").symlink_to(os.ttyname(slave))
        found = checks.serial_ports(by_id)
        assert found[-1].level == checks.OK and "usb-Reader_ABC123" in found[-1].detail
        assert found[0].level == checks.WARN and "dialout" in found[0].detail  # a pty is group tty
    finally:
        os.close(master)
        os.close(slave)
    assert checks.serial_ports(tmp_path / "none")[0].level == checks.WARN


def test_a_check_that_crashes_becomes_a_fail_line():
    def boom() -> list:
        raise PermissionError("/dev/gpiochip0")

    line = checks.guarded("gpio", boom)[0]
    assert line.level == checks.FAIL and "PermissionError" in line.detail


def test_missing_camera_device_is_explained():
    c = checks.camera("v4l2", "/dev/video97", Path("."))[0]
    assert c.level == checks.FAIL and "v4l2-ctl" in c.fix
    with pytest.raises(DeviceNotFound):
        from drivers.camera.v4l2 import V4L2Camera

        V4L2Camera("/dev/video97", 640, 480)
