# Power lost during a probation: the update process is SIGKILLed mid-probation (with the daemon it started), and
# the next starts' boot check re-watches the unconfirmed release once, then rolls it back.
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from notifyservice import NotifyService
from stationkit import eventually

from station.control import request
from station.errors import ControlError
from station.home import Home, init_home
from station.host import probation, update
from station.host import releases as rel
from station.protocol import signing

REPO = Path(__file__).resolve().parent.parent
SAMPLES = REPO / "station" / "lab" / "samples"


class ScriptInstaller:
    """A release whose .venv/bin/station runs this checkout: the probation logic is under test, not pip."""

    def install(self, unpacked: Path, dest: Path, meta: dict) -> None:
        exe = dest / ".venv" / "bin" / "station"
        exe.parent.mkdir(parents=True)
        exe.write_text(f"#!/bin/sh\nPYTHONPATH={REPO} exec {sys.executable} -m station \"$@\"\n")
        exe.chmod(0o755)


def _archive(tmp: Path, key: Path, version: str) -> Path:
    import io
    import tarfile

    out = tmp / f"r-{version}.tar.gz"
    with tarfile.open(out, "w:gz") as tar:
        for name, data in (("release.json", json.dumps({"name": rel.NAME, "version": version,
                                                          "wheel": "wheels/x.whl"}).encode()),
                           ("wheels/x.whl", b"stand-in: ScriptInstaller does not read it")):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    out.with_name(out.name + ".sig").write_bytes(
        rel.sign_archive(out, version, signing.load_private_key(key), "release/1"))
    return out


CHILD = textwrap.dedent('''
    import sys
    from pathlib import Path
    sys.path[:0] = [{tests!r}, {repo!r}]
    from notifyservice import NotifyService
    from test_update_probation import ScriptInstaller
    from station.host import releases as rel, update

    class Service(NotifyService):
        def restart(self, timeout_s):
            super().restart(timeout_s)
            Path({pidfile!r}).write_text(str(self.proc.pid))

    archive = Path({archive!r})
    update.apply(archive, archive.with_name(archive.name + ".sig"), Path({jwk!r}), rel.Releases(Path({opt!r})),
                 ScriptInstaller(), Service(Path({opt!r}), Path({home!r}), watchdog_s=5), probation_s=600)
''')


@pytest.fixture
def kit(tmp_path: Path):
    key = tmp_path / "release.key"
    pub = signing.create_private_key(key).public_key()
    jwk = tmp_path / "release.jwk"
    jwk.write_text(json.dumps(signing.public_jwk(pub, "release/1")))
    home = Home(tmp_path / "home")
    init_home(home, station="st-0001", grid="d/t/v", sim_images=str(SAMPLES))
    releases = rel.Releases(tmp_path / "opt")
    service = NotifyService(tmp_path / "opt", home.root, watchdog_s=5)
    first = _archive(tmp_path, key, "0.1.0")
    assert update.apply(first, first.with_name(first.name + ".sig"), jwk, releases, ScriptInstaller(), service,
                        probation_s=0).ok
    service.stop()
    yield {"tmp": tmp_path, "key": key, "jwk": jwk, "home": home, "releases": releases, "service": service}
    service.stop()


def _power_cut_mid_probation(kit) -> None:
    """apply 0.2.0 in a child process, then SIGKILL it and the daemon it started once the daemon answers."""
    tmp, releases = kit["tmp"], kit["releases"]
    pidfile = tmp / "daemon.pid"
    code = CHILD.format(tests=str(REPO / "tests"), repo=str(REPO), pidfile=str(pidfile),
                        archive=str(_archive(tmp, kit["key"], "0.2.0")), jwk=str(kit["jwk"]), opt=str(releases.root),
                        home=str(kit["home"].root))
    child = subprocess.Popen([sys.executable, "-c", code], stderr=open(tmp / "child.log", "wb"))
    try:
        def answering() -> bool:
            try:
                return request(kit["home"].control_socket, {"cmd": "status"}, timeout=2).get("ok", False)
            except (ControlError, OSError, ValueError):
                return False

        eventually(lambda: pidfile.exists() and answering(), timeout=60, what="0.2.0 on probation")
        assert releases.current() == "0.2.0" and probation.read(releases)["previous"] == "0.1.0"
        # While the update process lives, a start (a watchdog restart) leaves everything alone.
        assert "watched by a running update" in probation.boot_check(releases, lambda: None)
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(10)
        if pidfile.exists():
            try:
                os.kill(int(pidfile.read_text()), signal.SIGKILL)
            except ProcessLookupError:
                pass


def test_power_cut_during_probation_rolls_back_on_the_second_unconfirmed_start(kit):
    releases = kit["releases"]
    _power_cut_mid_probation(kit)
    assert releases.current() == "0.2.0" and probation.read(releases) is not None  # the switch stands, unconfirmed

    watchers = []
    first = probation.boot_check(releases, lambda: watchers.append("spawned"))
    assert "one more probation" in first and watchers == ["spawned"] and releases.current() == "0.2.0"
    # The watcher never got to judge it (power lost again): the next start, through the CLI, rolls back.
    done = subprocess.run([sys.executable, "-m", "station", "update", "--boot-check", "--root", str(releases.root)],
                          capture_output=True, text=True, timeout=60, cwd=REPO)
    assert done.returncode == 0, done.stderr
    assert "rolled back to 0.1.0" in done.stdout
    assert releases.current() == "0.1.0" and probation.read(releases) is None
    assert "without confirmation" in (releases.path("0.2.0") / "FAILED").read_text()
    assert "no release on probation" in probation.boot_check(releases, lambda: None)


def test_power_cut_during_probation_then_the_release_proves_itself(kit):
    releases, service = kit["releases"], kit["service"]
    _power_cut_mid_probation(kit)
    assert "one more probation" in probation.boot_check(releases, lambda: None)
    asked: list[float] = []

    def prove(seconds: float) -> str | None:  # the interrupted update's 600 s, shortened for the test
        asked.append(seconds)
        return update.prove(service, 60, min(seconds, 3))

    out = probation.resume(releases, prove, lambda v: update.confirm(releases, v))
    assert "passed its probation" in out and asked == [600]
    assert releases.current() == "0.2.0" and probation.read(releases) is None
    assert service.started[-1] == "releases/0.2.0" and service.probation(1) is None


def test_stale_record_after_the_switch_back_is_removed(kit):
    releases = kit["releases"]
    probation.begin(releases, "0.9.9", "0.1.0")  # written, then the power went before the switch
    assert "stale probation record" in probation.boot_check(releases, lambda: None)
    assert probation.read(releases) is None and releases.current() == "0.1.0"
