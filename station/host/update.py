# Update with rollback: verify, install beside the running release, switch, and switch back unless it proves healthy.
from __future__ import annotations

import json
import logging
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from station.errors import ReleaseError, UpdateError
from station.host import releases as rel
from station.host.service import Service

log = logging.getLogger("station.update")


class Installer(Protocol):
    def install(self, unpacked: Path, dest: Path, meta: dict) -> None: ...


@dataclass(frozen=True)
class Outcome:
    version: str
    previous: str | None
    ok: bool
    problem: str | None = None  # why the new release was rolled back


def apply(archive: Path, signature: Path, key_file: Path, releases: rel.Releases, installer: Installer,
          service: Service, *, probation_s: float = 120.0, ready_timeout_s: float = 90.0) -> Outcome:
    """The caller has checked that the station may be interrupted now (cli/update.py)."""
    info = rel.verify_archive(archive, signature, key_file)
    with releases.lock():
        running = releases.current()
        if info.version == running:
            raise UpdateError(f"release {info.version} is already the running one")
        dest = releases.path(info.version)
        staging = releases.dir / f".{info.version}.unpacked"
        try:
            meta = rel.unpack(archive, staging, info)
            # A leftover of an earlier failed attempt is replaced; the venv must be built at its final path.
            if dest.exists():
                shutil.rmtree(dest)
            dest.mkdir(parents=True)
            installer.install(staging, dest, meta)
            (dest / "release.json").write_text(json.dumps({**meta, "sha256": info.sha256}), encoding="utf-8")
        except BaseException:
            shutil.rmtree(dest, ignore_errors=True)
            raise
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        old = releases.switch(info.version)
        log.warning("update: switched %s -> %s; probation %.0f s", old, info.version, probation_s)
        problem = _prove(service, ready_timeout_s, probation_s)
        if problem is None:
            (dest / "FAILED").unlink(missing_ok=True)
            pruned = releases.prune()
            log.warning("update: %s passed probation%s", info.version, f"; removed {pruned}" if pruned else "")
            return Outcome(info.version, old, True)
        log.error("update: %s failed (%s); rolling back to %s", info.version, problem, old)
        (dest / "FAILED").write_text(f"{time.strftime('%Y-%m-%dT%H:%M:%S%z')} {problem}\n", encoding="utf-8")
        if old is None:
            raise UpdateError(f"release {info.version} failed ({problem}) and there is no release to roll back to")
        releases.switch(old)
        again = _prove(service, ready_timeout_s, 0)
        if again:
            raise UpdateError(f"release {info.version} failed ({problem}); rolled back to {old}, which did not "
                              f"start either: {again}")
        return Outcome(info.version, old, False, problem)


def rollback(releases: rel.Releases, service: Service, ready_timeout_s: float = 90.0) -> str:
    """The technician's way back (for instance after power failed during a probation): current <-> previous."""
    with releases.lock():
        prev = releases.previous()
        if not prev or not releases.path(prev).is_dir():
            raise ReleaseError(f"{releases.root}: no previous release to roll back to")
        releases.switch(prev)
        problem = _prove(service, ready_timeout_s, 0)
        if problem:
            raise UpdateError(f"rolled back to {prev}, but it did not start: {problem}")
        return prev


def _prove(service: Service, ready_timeout_s: float, probation_s: float) -> str | None:
    try:
        service.restart(ready_timeout_s)
    except UpdateError as exc:
        return str(exc)
    return service.probation(probation_s) if probation_s > 0 else None
