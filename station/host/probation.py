# A release on probation leaves a record beside the links, so a power cut mid-probation is noticed and undone.
#
# apply() writes probation.json before it switches and removes it once the new release passed (or was rolled
# back). If the Pi loses power in between, nobody is left to judge the new release: the unit's ExecStartPre runs
# boot_check() before the daemon starts. The update lock tells whether a watcher is alive (a flock dies with its
# holder). Without one, the first such start gives the new release one more probation under a fresh watcher
# (resume()); a second start without a watcher and without confirmation rolls back to the previous release.
from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path

from station.errors import ReleaseError, StationError
from station.host import releases as rel
from station.host.files import atomic_write

log = logging.getLogger("station.update")

RECORD = "probation.json"
UNWATCHED_STARTS = 2  # the second start on probation without a watcher rolls back


def _boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


def begin(releases: rel.Releases, version: str, previous: str | None, probation_s: float = 120.0) -> None:
    _write(releases, {"version": version, "previous": previous, "probation_s": probation_s, "starts": 0,
                      "boot_id": _boot_id(),
                      "pid": os.getpid(), "since": time.strftime("%Y-%m-%dT%H:%M:%S%z")})


def end(releases: rel.Releases) -> None:
    (releases.root / RECORD).unlink(missing_ok=True)
    rel_fsync(releases)


def read(releases: rel.Releases) -> dict | None:
    try:
        rec = json.loads((releases.root / RECORD).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise ReleaseError(f"{releases.root / RECORD}: unreadable ({exc}); delete it after checking "
                           "`station update` (which release runs)") from None
    return rec if isinstance(rec, dict) else None


def boot_check(releases: rel.Releases, spawn_watcher: Callable[[], None]) -> str:
    """Before the daemon starts (ExecStartPre, as root): undo or re-watch an unconfirmed switch. Never restarts
    the unit itself (it is being started); a rollback here only moves the links, and ExecStart then runs the
    previous release."""
    rec = read(releases)
    if rec is None:
        return "no release on probation"
    with ExitStack() as held:
        try:
            held.enter_context(releases.lock())
        except ReleaseError:
            return f"release {rec.get('version')} is on probation, watched by a running update"
        version, previous = rec.get("version"), rec.get("previous")
        if version != releases.current():
            end(releases)  # the power went after the switch back, or before the switch: nothing to undo
            return f"stale probation record for {version} removed; running {releases.current()}"
        starts = int(rec.get("starts", 0)) + 1
        if starts >= UNWATCHED_STARTS:
            return _roll_back(releases, rec, f"start {starts} on probation without confirmation (power lost "
                              "during probation?)")
        _write(releases, {**rec, "starts": starts, "boot_id": _boot_id(), "pid": None})
    try:
        spawn_watcher()
    except (OSError, StationError) as exc:
        log.error("update: cannot start a probation watcher (%s); the next start rolls back", exc)
        return f"release {version} unconfirmed; no watcher ({exc}); the next start rolls back to {previous}"
    return f"release {version} unconfirmed after a restart (power lost?): one more probation, then confirm"


def resume(releases: rel.Releases, prove: Callable[[float], str | None], confirm: Callable[[str], None]) -> str:
    """The watcher boot_check spawned: prove the release on probation again; confirm it or roll it back.

    prove(seconds) restarts the unit, waits for READY and watches a probation that long (update.prove); it returns
    why not. The probation is the one the interrupted update asked for."""
    with releases.lock(wait_s=60):
        rec = read(releases)
        if rec is None or rec.get("version") != releases.current():
            return "nothing on probation"
        _write(releases, {**rec, "boot_id": _boot_id(), "pid": os.getpid()})
        problem = prove(float(rec.get("probation_s", 120.0)))
        if problem is None:
            end(releases)
            confirm(rec["version"])
            return f"release {rec['version']} passed its probation after the restart"
        out = _roll_back(releases, rec, problem)
        again = prove(0)
    return out if again is None else f"{out}; and {rec.get('previous')} did not start either: {again}"


def _roll_back(releases: rel.Releases, rec: dict, why: str) -> str:
    version, previous = rec.get("version"), rec.get("previous")
    if not previous or not releases.path(previous).is_dir():
        end(releases)
        return f"release {version} unconfirmed ({why}), but there is no previous release; kept"
    (releases.path(version) / "FAILED").write_text(f"{time.strftime('%Y-%m-%dT%H:%M:%S%z')} {why}\n",
                                                   encoding="utf-8")
    releases.switch(previous)
    end(releases)
    log.error("update: %s rolled back to %s: %s", version, previous, why)
    return f"release {version} rolled back to {previous}: {why}"


def _write(releases: rel.Releases, rec: dict) -> None:
    atomic_write(releases.root / RECORD, json.dumps(rec).encode())


def rel_fsync(releases: rel.Releases) -> None:
    fd = os.open(releases.root, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
