# Bad input gets one line naming the problem and a non-zero exit, never a traceback (DEBUG=1 shows one).
from __future__ import annotations

import os
import subprocess
import sys
from importlib import resources

import pytest


def station(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "station", *args], capture_output=True, text=True, timeout=60,
                          env={**os.environ, **(env or {})})


def one_line_error(done: subprocess.CompletedProcess, *needles: str) -> None:
    assert done.returncode != 0
    err = done.stderr.strip()
    assert "Traceback" not in err, err
    assert len(err.splitlines()) == 1, err
    for n in needles:
        assert n in err, err


@pytest.fixture
def home(tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    (photos / "a.jpg").write_bytes(resources.files("station.lab").joinpath("samples/negative.jpg").read_bytes())
    h = tmp_path / "home"
    done = station("init", "--home", str(h), "--station", "st-0001", "--grid", "d/t/v", "--sim-images", str(photos))
    assert done.returncode == 0, done.stderr
    return h


def test_init_writes_config_and_private_key(home):
    key = home / "keys" / "station.key"
    assert oct(key.stat().st_mode & 0o777) == "0o600"
    assert "[station]" in (home / "station.toml").read_text()
    done = station("pubkey", "--home", str(home))
    assert '"kty": "OKP"' in done.stdout and '"kid": "st-0001/1"' in done.stdout


def test_init_refuses_existing_home(home):
    one_line_error(station("init", "--home", str(home), "--station", "st-0001", "--grid", "d/t/v"),
                   "already exists")


def test_unknown_config_key_names_file_and_line(home):
    cfg = home / "station.toml"
    lines = cfg.read_text().splitlines()
    at = lines.index("[camera]") + 1
    lines.insert(at, 'resolution = "hd"')
    cfg.write_text("\n".join(lines) + "\n")
    one_line_error(station("run", "--home", str(home)), f"station.toml:{at + 1}: camera.resolution: unknown key")


def test_missing_key_file(home):
    (home / "keys" / "station.key").unlink()
    one_line_error(station("run", "--home", str(home)), "station.key: signing key file not found")


def test_bad_broker_url(tmp_path):
    one_line_error(station("init", "--home", str(tmp_path / "h"), "--station", "st-1", "--grid", "d/t/v",
                           "--broker", "http://town:1883"), "http://town:1883")
    assert not (tmp_path / "h" / "station.toml").exists()


def test_bad_station_id(tmp_path):
    one_line_error(station("init", "--home", str(tmp_path / "h"), "--station", "st/1", "--grid", "d/t/v"),
                   "'st/1'")


def test_unreadable_image(tmp_path):
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"not a jpeg")
    done = station("score", str(bad), str(tmp_path / "missing.jpg"), "--json")
    assert done.returncode != 0 and "Traceback" not in done.stderr
    assert "broken.jpg" in done.stdout and "missing.jpg" in done.stdout


def test_debug_shows_traceback(home):
    (home / "keys" / "station.key").unlink()
    done = station("run", "--home", str(home), env={"DEBUG": "1"})
    assert done.returncode != 0 and "Traceback" in done.stderr


def test_credentials_directory_key_wins(home, tmp_path):
    creds = tmp_path / "creds"
    creds.mkdir()
    (home / "keys" / "station.key").rename(creds / "station.key")
    done = station("pubkey", "--home", str(home), env={"CREDENTIALS_DIRECTORY": str(creds)})
    assert done.returncode == 0, done.stderr
    assert '"kid": "st-0001/1"' in done.stdout


def test_signing_key_readable_by_others_is_refused(home):
    key = home / "keys" / "station.key"
    key.chmod(0o644)
    one_line_error(station("run", "--home", str(home)), "readable by group or others (mode 644)", "chmod 600")


def test_doctor_checks_then_sets_a_damaged_journal_aside_on_request(home):
    from station.journal import Journal

    Journal(home / "data" / "journal.sqlite").close()
    done = station("doctor", "--home", str(home))
    assert done.returncode == 0 and "healthy: 0 results" in done.stdout, done.stdout + done.stderr
    journal = home / "data" / "journal.sqlite"
    data = bytearray(journal.read_bytes())
    data[0:16] = b"garbage garbage!"
    journal.write_bytes(bytes(data))
    done = station("doctor", "--home", str(home))
    assert done.returncode == 1 and "DAMAGED" in done.stdout and journal.exists()
    done = station("doctor", "--home", str(home), "--set-aside")
    assert done.returncode == 1 and "set aside as" in done.stdout and not journal.exists()
    aside = list(journal.parent.glob("journal.sqlite.damaged-*"))
    assert len(aside) == 1 and aside[0].read_bytes()[:16] == b"garbage garbage!"
