# scripts/install-pi --root into a temporary root: the tree, modes and owners it makes, idempotence, uninstall.
from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from station.config import load_config
from station.protocol import signing

REPO = Path(__file__).resolve().parent.parent
SCRIPT = REPO / "scripts" / "install-pi"


def _install(root: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHON": sys.executable}
    return subprocess.run([str(SCRIPT), "--root", str(root), *args], env=env, capture_output=True, text=True,
                          timeout=120)


def _manifest(root: Path) -> dict[str, tuple[str, str]]:
    rows = (root / "opt/nongan-station/install-manifest").read_text().splitlines()
    return {path: (mode, owner) for mode, owner, path in (r.split(" ", 2) for r in rows)}


@pytest.fixture
def staged(tmp_path: Path) -> Path:
    root = tmp_path / "root"
    town = tmp_path / "town.jwk"
    key = signing.create_private_key(tmp_path / "town.key")
    town.write_text(__import__("json").dumps(signing.public_jwk(key.public_key(), "town/1")))
    for name in ("ca.crt", "st.crt", "st.key"):
        (tmp_path / name).write_text(f"-----BEGIN {name}-----\n")
    done = _install(root, "--station", "st-0042", "--grid", "d01/t02/v03", "--broker", "mqtts://broker.town:8883",
                    "--ca-file", str(tmp_path / "ca.crt"), "--cert-file", str(tmp_path / "st.crt"),
                    "--key-file", str(tmp_path / "st.key"), "--town-key", str(town), "--release-key", str(town),
                    "--camera", "picamera2")
    assert done.returncode == 0, done.stderr
    return root


def test_tree_modes_and_owners(staged: Path):
    m = _manifest(staged)
    expect = {
        "/etc/systemd/system/nongan-station.service": ("0644", "root:root"),
        "/usr/lib/sysusers.d/nongan-station.conf": ("0644", "root:root"),
        "/etc/tmpfiles.d/nongan-station.conf": ("0644", "root:root"),
        "/etc/nongan": ("0700", "root:root"),
        "/etc/nongan/station.key": ("0600", "root:root"),
        "/etc/nongan/release.jwk": ("0644", "root:root"),
        "/var/lib/nongan-station": ("0750", "nongan:nongan"),
        "/var/lib/nongan-station/station.toml": ("0640", "nongan:nongan"),
        "/var/lib/nongan-station/tls": ("0700", "nongan:nongan"),
        "/var/lib/nongan-station/tls/station.key": ("0600", "nongan:nongan"),
        "/opt/nongan-station/releases/0.1.0/release.json": ("0644", "root:root"),
    }
    for path, (mode, owner) in expect.items():
        assert m.get(path) == (mode, owner), path
        if not path.endswith("current"):
            assert stat.S_IMODE((staged / path.lstrip("/")).stat().st_mode) == int(mode, 8), path
    # Root-owned files really are root's when the test runs as root (uid 0 is the same in every image).
    if os.geteuid() == 0:
        assert (staged / "etc/nongan/station.key").stat().st_uid == 0
    assert os.readlink(staged / "opt/nongan-station/current") == "releases/0.1.0"
    assert (staged / "opt/nongan-station/releases/0.1.0/docs/pi.md").is_file()


def test_signing_key_moved_out_of_the_home_and_config_points_at_tls(staged: Path):
    home = staged / "var/lib/nongan-station"
    assert not (home / "keys/station.key").exists()
    key = signing.load_private_key(staged / "etc/nongan/station.key")
    cfg = load_config(home)
    assert cfg.station.path == "d01/t02/v03/st-0042"
    assert cfg.broker.url == "mqtts://broker.town:8883"
    assert cfg.camera.driver == "picamera2"
    assert cfg.resolve(cfg.broker.ca_file) == home / "tls/ca.crt"
    assert (home / "trust/town.jwk").is_file()
    # The public key printed for the town is the one of the key now under /etc/nongan.
    _, pub, station = signing.load_jwk_file_with_station(home / "station.pub.jwk")
    assert pub.public_bytes_raw() == key.public_key().public_bytes_raw()
    assert station == "d01/t02/v03/st-0042"


def test_unit_installed_is_the_shipped_one_with_the_release_path(staged: Path):
    unit = (staged / "etc/systemd/system/nongan-station.service").read_text()
    assert unit == (REPO / "systemd/nongan-station.service").read_text()
    assert "ExecStart=/opt/nongan-station/current/.venv/bin/station run" in unit
    assert "LoadCredential=station.key:/etc/nongan/station.key" in unit
    assert "LogRateLimitBurst=" in unit and "WatchdogSec=" in unit


def test_second_run_changes_nothing_and_keeps_the_key(staged: Path):
    before = (staged / "etc/nongan/station.key").read_bytes()
    manifest = (staged / "opt/nongan-station/install-manifest").read_text()
    again = _install(staged)
    assert again.returncode == 0, again.stderr
    assert (staged / "etc/nongan/station.key").read_bytes() == before
    assert (staged / "opt/nongan-station/install-manifest").read_text() == manifest


def test_first_run_without_station_flags_says_what_is_missing(tmp_path: Path):
    done = _install(tmp_path / "root")
    assert done.returncode == 1
    assert "give --station ID and --grid D/T/V" in done.stderr


def test_uninstall_keeps_data_and_key(staged: Path):
    (staged / "var/lib/nongan-station/data/journal.sqlite").write_bytes(b"results")
    done = subprocess.run([str(SCRIPT), "--root", str(staged), "--uninstall"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert not (staged / "opt/nongan-station").exists()
    assert not (staged / "etc/systemd/system/nongan-station.service").exists()
    assert (staged / "var/lib/nongan-station/data/journal.sqlite").read_bytes() == b"results"
    assert (staged / "etc/nongan/station.key").is_file()


@pytest.mark.skipif(not shutil.which("systemd-analyze"), reason="systemd-analyze not installed")
def test_installed_unit_verifies(staged: Path, tmp_path: Path):
    # As install-pi does when staging: the venv is not built, so ExecStart's binary stands in as /bin/true.
    unit = (staged / "etc/systemd/system/nongan-station.service").read_text()
    check = tmp_path / "check" / "nongan-station.service"
    check.parent.mkdir()
    check.write_text(unit.replace("/opt/nongan-station/current/.venv/bin/station", "/bin/true"))
    done = subprocess.run(["systemd-analyze", "verify", str(check)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    broken = check.parent / "nongan-station.service"
    broken.write_text(check.read_text().replace("WatchdogSec=30", "WatchdogSec=thirty"))
    done = subprocess.run(["systemd-analyze", "verify", str(broken)], capture_output=True, text=True)
    assert "Failed to parse sec value" in done.stderr  # the check can fail: a bad value is reported
