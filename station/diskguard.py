# A full disk must not stop the station: a pre-allocated reserve released so promised writes can still commit.
from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from station.errors import JournalDamagedError, StationError
from station.host.files import fsync_dir

log = logging.getLogger("station.app")

T = TypeVar("T")
RESERVE_NAME = "reserve.bin"
MAX_RESERVE = 4 * 1024 * 1024  # a tray photograph (about 0.5 MB) and its journal rows, several times over
_CHUNK = 1024 * 1024


def reserve_size(total_bytes: int) -> int:
    """4 MB, or a twentieth of a small filesystem (a 20 MB test tmpfs keeps 1 MB)."""
    return max(64 * 1024, min(MAX_RESERVE, total_bytes // 20))


class Reserve:
    """A file of real blocks in the station home, deleted when a write hits a full disk and re-made when
    space returns. The disk levels count it as used, so the station refuses new samples before the
    filesystem is really full, and a sample already taken can still be stored when it is."""

    def __init__(self, path: str | Path, size: int):
        self.path, self.size = Path(path), size

    @property
    def held(self) -> bool:
        try:
            return self.path.stat().st_size >= self.size
        except OSError:
            return False

    def release(self) -> bool:
        """Free the reserve; True if there was one to free."""
        try:
            self.path.unlink()
        except FileNotFoundError:
            return False
        except OSError as exc:
            log.error("%s: cannot release the disk reserve: %s", self.path, exc.strerror)
            return False
        fsync_dir(self.path.parent)
        log.warning("disk full: released the %d-byte reserve in %s so promised results can be stored",
                    self.size, self.path)
        return True

    def restore(self, free_bytes: int) -> bool:
        """Make the reserve again when there is room for it twice over; True if it is held afterwards."""
        if self.held:
            return True
        if free_bytes < 2 * self.size:
            return False
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                _allocate(fd, self.size)
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError as exc:
            self.path.unlink(missing_ok=True)
            log.warning("%s: cannot make the %d-byte disk reserve: %s", self.path, self.size, exc.strerror)
            return False
        fsync_dir(self.path.parent)
        return True


def _allocate(fd: int, size: int) -> None:
    """Real blocks, not a sparse file: a sparse reserve would free nothing when deleted."""
    try:
        os.posix_fallocate(fd, 0, size)
        return
    except OSError as exc:
        if exc.errno not in (95, 22):  # EOPNOTSUPP, EINVAL: the filesystem cannot; write zeros instead
            raise
    zeros = bytes(_CHUNK)
    left = size
    while left > 0:
        left -= os.write(fd, zeros[:min(left, _CHUNK)])


def with_reserve(reserve: Reserve | None, what: str, fn: Callable[[], T]) -> T:
    """Run a write; if it fails (a full disk, most likely), release the reserve and try once more.

    A damaged journal is not a space problem and is never retried.
    """
    try:
        return fn()
    except JournalDamagedError:
        raise
    except StationError as exc:
        if reserve is None or not reserve.release():
            raise
        log.warning("%s failed (%s); retrying with the reserve released", what, exc)
        return fn()
