# Update with rollback: verify, install beside the running release, switch, and switch back unless it proves healthy.
from __future__ import annotations

import json
import logging
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from station.errors import ReleaseError, StationError, UpdateError, UpdateRefused
from station.host import probation
from station.host import releases as rel
from station.host.files import atomic_write
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
        # Before the switch: a power cut after it is then undone at the next start (station/host/probation.py).
        probation.begin(releases, info.version, running, probation_s)
        old = releases.switch(info.version)
        log.warning("update: switched %s -> %s; probation %.0f s", old, info.version, probation_s)
        problem = prove(service, ready_timeout_s, probation_s)
        if problem is None:
            probation.end(releases)
            (dest / "FAILED").unlink(missing_ok=True)
            pruned = releases.prune()
            log.warning("update: %s passed probation%s", info.version, f"; removed {pruned}" if pruned else "")
            return Outcome(info.version, old, True)
        log.error("update: %s failed (%s); rolling back to %s", info.version, problem, old)
        (dest / "FAILED").write_text(f"{time.strftime('%Y-%m-%dT%H:%M:%S%z')} {problem}\n", encoding="utf-8")
        if old is None:
            probation.end(releases)
            raise UpdateError(f"release {info.version} failed ({problem}) and there is no release to roll back to")
        releases.switch(old)
        probation.end(releases)
        again = prove(service, ready_timeout_s, 0)
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
        probation.end(releases)
        problem = prove(service, ready_timeout_s, 0)
        if problem:
            raise UpdateError(f"rolled back to {prev}, but it did not start: {problem}")
        return prev


def prove(service: Service, ready_timeout_s: float, probation_s: float) -> str | None:
    try:
        service.restart(ready_timeout_s)
    except UpdateError as exc:
        return str(exc)
    return service.probation(probation_s) if probation_s > 0 else None


def confirm(releases: rel.Releases, version: str) -> None:
    """A release that passed probation: forget earlier failures of it, keep the newest few releases."""
    (releases.path(version) / "FAILED").unlink(missing_ok=True)
    pruned = releases.prune()
    log.warning("update: %s confirmed%s", version, f"; removed {pruned}" if pruned else "")


def run_request(request: Path, key_file: Path, releases: rel.Releases, installer: Installer, service: Service,
                busy: Callable[[], str | None], *, probation_s: float = 120.0,
                ready_timeout_s: float = 90.0) -> dict:
    """The root side of a town-ordered update (`station update --request`, started by nongan-station-update.path).

    The daemon (user nongan) fetched the archive and checked the town's SHA-256; nothing it wrote is trusted
    here: the archive must sit beside the request and carry the release key's signature, as for `station update
    FILE`. The answer goes to result.json beside it, where the loop reads it (station/host/update_order.py).
    """
    folder = request.parent
    taken = folder / "request.taken"
    os.replace(request, taken)  # at once: the .path unit fires again while request.json exists
    result: dict = {"version": None, "nonce": None}
    try:
        req = json.loads(taken.read_text(encoding="utf-8"))
        result.update(version=req.get("version"), nonce=req.get("nonce"))
        archive, signature = (Path(str(req.get(k))) for k in ("archive", "signature"))
        for p in (archive, signature):
            if p.parent.resolve() != folder.resolve() or p.is_symlink():
                raise UpdateError(f"{taken}: {p} is not a file in {folder}")
        info = rel.verify_archive(archive, signature, key_file)
        if info.version != req.get("version"):
            raise UpdateError(f"{archive}: signed as {info.version}, ordered as {req.get('version')}")
        reason = busy()
        if reason:
            raise UpdateRefused(reason)
        out = apply(archive, signature, key_file, releases, installer, service, probation_s=probation_s,
                    ready_timeout_s=ready_timeout_s)
        result.update(outcome="updated" if out.ok else "rolled back", detail=out.problem or
                      f"{out.previous} -> {out.version}")
    except UpdateRefused as exc:
        result.update(outcome="refused", detail=str(exc))
    except (StationError, OSError, ValueError, AttributeError) as exc:
        result.update(outcome="failed", detail=str(exc))
    atomic_write(folder / "result.json", json.dumps(result).encode())
    taken.unlink(missing_ok=True)
    return result
