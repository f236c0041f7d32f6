# Full-disk phase of the chaos run (and the tests' tool for it): the station home on a real, small tmpfs, filled.
"""A real filesystem, really full: the home is moved onto a tmpfs of a few megabytes, a filler file is
written until the kernel says ENOSPC, and the running daemon must stay up, refuse new samples with a
reason (status, red light), let `station doctor` read the journal, and take samples again by itself once
the filler is deleted. Mounting needs root (or CAP_SYS_ADMIN); without it the phase is skipped and says so.
"""
from __future__ import annotations

import errno
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

from station.errors import ControlError, StationError
from station.lab.rig import station_cmd, wait_for

if TYPE_CHECKING:
    from station.lab.chaos import Chaos

FILLER = "filler.bin"
CHAOS_TMPFS_MB = 64  # room for the whole run's journal and photographs, small enough to fill in a second


class Tmpfs:
    """A tmpfs mounted at a folder; unmount() puts the folder back as it was (empty)."""

    def __init__(self, where: Path, size_mb: int):
        self.where, self.size_mb = Path(where), size_mb
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_mb}m,mode=0755", "tmpfs", str(where)],
                              capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise StationError(f"cannot mount a {size_mb} MB tmpfs at {where}: "
                               f"{(done.stderr or done.stdout).strip() or 'mount failed'}")

    def unmount(self, keep: bool = True) -> None:
        """Unmount; with keep, the contents are copied back onto the folder first (a failed run is evidence)."""
        aside = Path(tempfile.mkdtemp(prefix=f".{self.where.name}.keep-", dir=self.where.parent)) if keep else None
        if aside is not None:
            for entry in list(self.where.iterdir()):
                if entry.name != FILLER:
                    shutil.move(str(entry), aside / entry.name)
        subprocess.run(["umount", "-l", str(self.where)], capture_output=True, check=False)
        if aside is not None:
            for entry in list(aside.iterdir()):
                shutil.move(str(entry), self.where / entry.name)
            aside.rmdir()


def move_onto_tmpfs(root: Path, size_mb: int) -> Tmpfs:
    """Move an existing folder (a station home) onto a fresh tmpfs mounted in its place."""
    root = Path(root)
    aside = Path(tempfile.mkdtemp(prefix=f".{root.name}.aside-", dir=root.parent))
    for entry in list(root.iterdir()):
        shutil.move(str(entry), aside / entry.name)
    try:
        fs = Tmpfs(root, size_mb)
    except StationError:
        for entry in list(aside.iterdir()):
            shutil.move(str(entry), root / entry.name)
        aside.rmdir()
        raise
    for entry in list(aside.iterdir()):
        shutil.move(str(entry), root / entry.name)
    aside.rmdir()
    return fs


def fill(folder: Path, leave: int = 0) -> Path:
    """Write a filler file until ENOSPC, then give back `leave` bytes; returns the filler's path."""
    path = Path(folder) / FILLER
    chunk = bytes(256 * 1024)
    with open(path, "ab") as f:
        try:
            while True:
                f.write(chunk)
                f.flush()
        except OSError as exc:
            if exc.errno != errno.ENOSPC:
                raise
        size = f.tell()
    if leave:
        os.truncate(path, max(0, size - leave))
    return path


def free_bytes(folder: Path) -> int:
    st = os.statvfs(folder)
    return st.f_bavail * st.f_frsize


# ---- the chaos phase ------------------------------------------------------------------------------------------

def prepare(run: Chaos) -> Tmpfs | None:
    """Put the chaos station's home on its own tmpfs before the daemon first starts; None (said) if not allowed."""
    try:
        return move_onto_tmpfs(run.rig.home.root, CHAOS_TMPFS_MB)
    except StationError as exc:
        return _skip(f"full-disk phase will be skipped: {exc}")


def judge(rep: dict, disk: dict) -> dict:
    """Fold the phase into the run's report: any problem fails the run, like a lost result."""
    rep["disk_phase"] = disk
    rep["passed"] = bool(rep.get("passed")) and not disk.get("problems")
    return rep


def _skip(msg: str) -> None:
    import sys

    print(f"chaos: {msg}", file=sys.stderr, flush=True)
    return None

def disk_phase(run: Chaos) -> dict:
    """Fill the station's disk while it runs, check it refuses and explains, free it, check it recovers.

    Results shown during the phase go into the run's tally, so the final check covers them like any other.
    """
    home = run.rig.home
    if not os.path.ismount(home.root):
        return {"ran": False, "why": "the station home is not on a tmpfs (mounting needs root)", "problems": []}
    problems: list[str] = []
    try:
        after = _full_then_free(run, problems)
    except StationError as exc:  # a wait that timed out is a finding of the phase, not a crash of the run
        problems.append(str(exc))
        return {"ran": True, "problems": problems}
    with run.t.lock:
        for r in after.get("results") or []:
            run.t.shown[r["seq"]] = {"sample": r["sample"], "verdict": r["verdict"], "id": r["id"]}
    return {"ran": True, "problems": problems, "recovered_results": len(after.get("results") or [])}


def _full_then_free(run: Chaos, problems: list[str]) -> dict:
    home = run.rig.home
    filler = fill(home.root)
    t_full = time.monotonic()
    try:
        st = wait_for(lambda: (s := _status(run)).get("refusing") and s, 15,
                      "the station to refuse samples on a full disk")
        if "disk" not in st["refusing"]:
            problems.append(f"refusal does not name the disk: {st['refusing']}")
        if st.get("panel") != "refused":
            problems.append(f"panel shows {st.get('panel')!r} on a full disk, not the red 'refused'")
        reply = run.daemon.press(timeout=30)
        if reply.get("ok") or "disk" not in str(reply.get("error")):
            problems.append(f"a press on a full disk was not refused with the reason: {reply}")
        doctor = station_cmd("doctor", "--home", str(home.root), timeout=60, check=False)
        if doctor.returncode != 0:
            problems.append(f"station doctor on a full disk: {doctor.stdout.strip()} {doctor.stderr.strip()}")
        # Stay full for a whole status period, so the periodic prune runs against the full disk too.
        wait_for(lambda: time.monotonic() - t_full > 32 or not run.daemon.running, 40, "a prune period")
        if not run.daemon.running:
            raise StationError("the daemon exited on the full disk")
    finally:
        filler.unlink(missing_ok=True)
    wait_for(lambda: not _status(run).get("refusing", "down"), 15, "the station to accept samples again")
    after = run.daemon.press()
    if not after.get("ok"):
        problems.append(f"no press accepted after the disk was freed: {after}")
    return after


def _status(run: Chaos) -> dict:
    try:
        return run.daemon.status(timeout=5)
    except ControlError:
        return {}
