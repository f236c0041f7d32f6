# station update: signed archives from scripts/build-release, real venvs and pip, a real daemon; rollback on failure.
from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest
from notifyservice import NotifyService

from station.errors import ReleaseError, UpdateError
from station.home import Home, init_home
from station.host import releases as rel
from station.host import update
from station.journal import Journal
from station.protocol import signing

REPO = Path(__file__).resolve().parent.parent
SAMPLES = REPO / "station" / "lab" / "samples"

# A release whose daemon says READY and then hangs: it would pass a naive "did it start?" check.
HANGS_AFTER_READY = '''\
import time
from station.host import sdnotify
def add_parser(sub):
    p = sub.add_parser("run"); p.add_argument("--home"); p.set_defaults(func=run)
def run(args):
    sdnotify.notify("READY=1")
    time.sleep(3600)
'''
CRASHES_AT_START = '''\
def add_parser(sub):
    p = sub.add_parser("run"); p.add_argument("--home"); p.set_defaults(func=run)
def run(args):
    raise SystemExit("release 0.3.0: cannot start (simulated regression)")
'''


class OfflineInstaller(rel.PipInstaller):
    """The real PipInstaller with one difference: dependencies come from this test venv (no network here).

    The station itself is installed by pip from the archive's wheel into a fresh venv, as on the Pi.
    """

    def __init__(self):
        super().__init__(python=sys.executable, wheelhouse=None, pip_args=("--no-deps",))

    def make_venv(self, venv: Path) -> None:
        super().make_venv(venv)
        site = next((venv / "lib").glob("python3*/site-packages"))
        (site / "test-deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(out),
                    str(REPO)], check=True, capture_output=True)
    return next(out.glob("nongan_station-*.whl"))


def _patched(wheel: Path, dest: Path, member: str, text: str) -> Path:
    """The same wheel with one module replaced: a release that installs cleanly but misbehaves."""
    dest.mkdir(parents=True, exist_ok=True)
    out = dest / wheel.name
    with zipfile.ZipFile(wheel) as src, zipfile.ZipFile(out, "w") as dst:
        for item in src.infolist():
            dst.writestr(item, text if item.filename == member else src.read(item.filename))
    return out


@pytest.fixture
def kit(tmp_path: Path):
    key = signing.create_private_key(tmp_path / "release.key")
    jwk = tmp_path / "release.jwk"
    jwk.write_text(json.dumps(signing.public_jwk(key.public_key(), "release/1")))
    home = Home(tmp_path / "home")
    init_home(home, station="st-0001", grid="d/t/v", sim_images=str(SAMPLES))
    service = NotifyService(tmp_path / "opt", home.root, watchdog_s=3)
    yield {"tmp": tmp_path, "key": tmp_path / "release.key", "jwk": jwk, "home": home, "service": service,
           "releases": rel.Releases(tmp_path / "opt")}
    service.stop()


def _build(kit, version: str, wheel: Path) -> Path:
    done = subprocess.run([sys.executable, str(REPO / "scripts" / "build-release"), "--key", str(kit["key"]),
                           "--version", version, "--wheel", str(wheel), "--out", str(kit["tmp"] / "dist")],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return Path(done.stdout.split()[0])


def _apply(kit, archive: Path, probation_s: float = 4.0) -> update.Outcome:
    return update.apply(archive, archive.with_name(archive.name + ".sig"), kit["jwk"], kit["releases"],
                        OfflineInstaller(), kit["service"], probation_s=probation_s, ready_timeout_s=60)


@pytest.mark.slow
def test_update_that_hangs_after_ready_rolls_back(kit, wheel):
    releases, service = kit["releases"], kit["service"]
    first = _apply(kit, _build(kit, "0.1.0", wheel))
    assert first.ok and releases.current() == "0.1.0"
    good = _apply(kit, _build(kit, "0.2.0", wheel))
    assert good.ok and (good.previous, releases.current(), releases.previous()) == ("0.1.0", "0.2.0", "0.1.0")

    bad = _apply(kit, _build(kit, "0.3.0", _patched(wheel, kit["tmp"] / "bad", "station/cli/run.py",
                                                    HANGS_AFTER_READY)))
    assert not bad.ok and "watchdog" in bad.problem
    # Back on 0.2.0, started again, and alive: it keeps pinging its watchdog.
    assert releases.current() == "0.2.0"
    assert service.started == ["releases/0.1.0", "releases/0.2.0", "releases/0.3.0", "releases/0.2.0"]
    assert service.probation(2) is None
    assert "watchdog" in (releases.path("0.3.0") / "FAILED").read_text()
    # The station's data went through all of it untouched.
    with Journal(kit["home"].journal) as j:
        assert j.stats().last_seq == 0


def test_update_that_crashes_before_ready_rolls_back(kit, wheel):
    releases, service = kit["releases"], kit["service"]
    assert _apply(kit, _build(kit, "0.1.0", wheel), probation_s=0).ok
    bad = _apply(kit, _build(kit, "0.3.0", _patched(wheel, kit["tmp"] / "bad", "station/cli/run.py",
                                                    CRASHES_AT_START)))
    assert not bad.ok and "before READY" in bad.problem and "simulated regression" in bad.problem
    assert releases.current() == "0.1.0" and service.started[-1] == "releases/0.1.0"
    assert service.probation(2) is None


def test_bad_signature_is_refused_and_nothing_installed(kit, wheel):
    archive = _build(kit, "0.2.0", wheel)
    sig = archive.with_name(archive.name + ".sig")
    other = signing.create_private_key(kit["tmp"] / "other.key")
    sig.write_bytes(rel.sign_archive(archive, "0.2.0", other, "release/1"))
    with pytest.raises(ReleaseError, match="not signed by the release key"):
        _apply(kit, archive)
    assert kit["releases"].installed() == [] and kit["service"].started == []


def test_altered_archive_is_refused(kit, wheel):
    archive = _build(kit, "0.2.0", wheel)
    with open(archive, "ab") as f:
        f.write(b"\0")
    with pytest.raises(ReleaseError, match="altered or cut short"):
        _apply(kit, archive)
    assert kit["releases"].installed() == []


def test_missing_release_key_names_the_file(kit, wheel):
    archive = _build(kit, "0.2.0", wheel)
    with pytest.raises(ReleaseError, match="release key: .*nope.jwk"):
        rel.verify_archive(archive, archive.with_name(archive.name + ".sig"), kit["tmp"] / "nope.jwk")


def test_archive_escaping_its_folder_is_refused(kit, tmp_path):
    import io
    import tarfile

    archive = tmp_path / "evil.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        data = b"x"
        info = tarfile.TarInfo("../../escaped")
        info.size = 1
        tar.addfile(info, io.BytesIO(data))
    sig = tmp_path / "evil.tar.gz.sig"
    sig.write_bytes(rel.sign_archive(archive, "9.9", signing.load_private_key(kit["key"]), "release/1"))
    with pytest.raises(ReleaseError, match="not a release archive"):
        _apply(kit, archive)
    assert not (tmp_path.parent / "escaped").exists()


def test_update_refused_while_positives_wait(kit):
    from station.cli.update import busy_reason

    home = kit["home"]
    with Journal(home.journal) as j:
        key = signing.load_private_key(home.root / "keys" / "station.key")
        record = {"verdict": "positive", "sample": {"id": "S1"}}
        j.append(lambda seq, prev: signing.sign_jws({**record, "id": f"st:{seq}", "seq": seq, "prev": prev}, key,
                                                    "st/1", "t"), verdict="positive", sample_id="S1", image_path=None)
        created = j.unacked_positives()[0].created_monotonic
    assert busy_reason(home, now_monotonic=created + 5) is None  # fresh: the publisher is still on it
    reason = busy_reason(home, now_monotonic=created + 61)
    assert reason and "1 positive result(s) older than 60 s" in reason and "seq 1" in reason


def test_rollback_by_hand_and_lock(kit, wheel):
    _apply(kit, _build(kit, "0.1.0", wheel), probation_s=0)
    _apply(kit, _build(kit, "0.2.0", wheel), probation_s=0)
    assert update.rollback(kit["releases"], kit["service"]) == "0.1.0"
    assert kit["releases"].current() == "0.1.0"
    with kit["releases"].lock(), pytest.raises(ReleaseError, match="another update is running"):
        with kit["releases"].lock():
            pass
    with pytest.raises(UpdateError, match="already the running one"):
        _apply(kit, _build(kit, "0.1.0", wheel))
    assert os.readlink(kit["tmp"] / "opt" / "current") == "releases/0.1.0"


def test_cli_refuses_a_bad_signature_in_one_line(kit, wheel):
    archive = _build(kit, "0.2.0", wheel)
    other = kit["tmp"] / "other.jwk"
    key = signing.create_private_key(kit["tmp"] / "other.key")
    other.write_text(json.dumps(signing.public_jwk(key.public_key(), "release/9")))
    done = subprocess.run([sys.executable, "-m", "station", "update", str(archive), "--release-key", str(other),
                           "--root", str(kit["tmp"] / "opt"), "--home", str(kit["home"].root)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert done.stderr.startswith("station update: error: ") and "not signed by the release key" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    assert not (kit["tmp"] / "opt" / "releases").exists()


def test_update_refused_while_a_sample_incubates(kit):
    import threading

    from stationkit import eventually

    from station.app import Daemon
    from station.cli.update import busy_reason
    from station.config import load_config
    from station.control import request
    from station.events import Stop

    home = kit["home"]
    home.config.write_text(home.config.read_text().replace("wait_incubation = false", "wait_incubation = true"))
    held: dict = {}

    def run() -> None:  # the journal's SQLite connection belongs to the thread that opens it: the loop's
        held["daemon"] = daemon = Daemon(load_config(home.root), home)
        daemon.start()
        try:
            daemon.serve()
        finally:
            daemon.stop()

    loop = threading.Thread(target=run, daemon=True)
    loop.start()
    try:
        eventually(lambda: home.control_socket.exists() and "daemon" in held, timeout=20, what="the daemon")
        eventually(lambda: busy_reason(home) is None, timeout=10, what="idle: an update may go ahead")
        assert request(home.control_socket, {"cmd": "press", "wait": False})["queued"]
        eventually(lambda: held["daemon"].state == "working", timeout=10, what="the sample incubating")
        reason = busy_reason(home)
        assert reason and "the station is working" in reason
    finally:
        if "daemon" in held:
            held["daemon"].post(Stop())
        loop.join(timeout=15)
