# `station init` (issue 8, defect 5): every input checked before anything is written, a refused write is one
# line, the home appears whole or not at all, and values with quotes or backslashes survive into the TOML.
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from station.config import load_config
from station.home import Home, init_home, toml_string


def station(*args: str, prefix: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
    return subprocess.run([*prefix, sys.executable, "-m", "station", *args], capture_output=True, text=True,
                          timeout=60, env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"})


def one_line_error(done: subprocess.CompletedProcess, *needles: str) -> str:
    err = done.stderr.strip()
    assert done.returncode != 0, done.stdout
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    for n in needles:
        assert n in err, err
    return err


def init_args(home: Path, *extra: str) -> list[str]:
    return ["init", "--home", str(home), "--station", "st-0001", "--grid", "d/t/v", *extra]


def test_a_mistyped_town_key_path_is_one_line_and_leaves_no_half_made_home(tmp_path):
    home = tmp_path / "home"
    one_line_error(station(*init_args(home, "--town-key", str(tmp_path / "town.jwkk"))), "town.jwkk")
    assert not home.exists() and not list(tmp_path.iterdir()), list(tmp_path.iterdir())
    # A file that is not a JWK is refused the same way, before anything is written.
    (tmp_path / "town.jwk").write_text("not json")
    one_line_error(station(*init_args(home, "--town-key", str(tmp_path / "town.jwk"))), "town.jwk", "not JSON")
    assert not home.exists()
    # With the path fixed, re-running init simply works.
    (tmp_path / "town.jwk").write_text(json.dumps({"kty": "OKP", "crv": "Ed25519", "kid": "town/1",
                                                   "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}))
    done = station(*init_args(home, "--town-key", str(tmp_path / "town.jwk")))
    assert done.returncode == 0, done.stderr
    assert (home / "trust" / "town.jwk").is_file() and (home / "keys" / "station.key").is_file()


@pytest.fixture
def locked():
    """A folder nobody may write in, reachable by everyone (pytest's own tmp folder is 0700 to its user)."""
    top = Path(tempfile.mkdtemp(prefix="nongan-init-"))
    top.chmod(0o755)
    (top / "locked").mkdir()
    (top / "locked").chmod(0o555)
    yield top / "locked"
    (top / "locked").chmod(0o755)
    shutil.rmtree(top)


def test_no_write_permission_is_one_line(locked):
    prefix: tuple[str, ...] = ()
    if os.geteuid() == 0:
        # root ignores permission bits; run init as nobody, as a newcomer without sudo would.
        if not shutil.which("setpriv"):
            pytest.skip("running as root and setpriv is missing: cannot drop privileges")
        prefix = ("setpriv", "--reuid=65534", "--regid=65534", "--clear-groups")
    one_line_error(station(*init_args(locked / "home"), prefix=prefix), str(locked / "home"),
                   "Permission denied")
    assert list(locked.iterdir()) == []


def test_a_non_empty_folder_without_config_is_refused_untouched(tmp_path):
    (tmp_path / "home").mkdir()
    (tmp_path / "home" / "notes.txt").write_text("mine")
    one_line_error(station(*init_args(tmp_path / "home")), "not an empty folder")
    assert [p.name for p in (tmp_path / "home").iterdir()] == ["notes.txt"]
    (tmp_path / "empty").mkdir()  # an empty folder (systemd's StateDirectory=) is fine
    assert station(*init_args(tmp_path / "empty")).returncode == 0


@pytest.mark.parametrize("value", ['C:\\certs\\ca.pem', 'ca "town".pem', "tab\there", 'end\\'])
def test_quotes_and_backslashes_are_escaped_in_the_toml(tmp_path, value):
    home = Home(tmp_path / "h")
    init_home(home, station="st-0001", grid="d/t/v", ca_file=value, cert_file=value)
    cfg = load_config(home.root)
    assert cfg.broker.ca_file == value and cfg.broker.cert_file == value


def test_toml_string_escapes_control_characters():
    assert toml_string('a"b\\c\n\x7f') == '"a\\"b\\\\c\\u000a\\u007f"'
