# Durable files on the SD card: atomic writes and directory fsyncs, so a power cut leaves old or new, never half.
from __future__ import annotations

import os
import tempfile
from pathlib import Path

from station.errors import StorageError


def fsync_dir(directory: str | Path) -> None:
    """A rename or a new file is only durable once its directory entry is on disk."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: str | Path, data: bytes, mode: int = 0o644) -> None:
    """Readers see either the old file or the whole new one, even across a power cut."""
    path = Path(path)
    tmp: str | None = None
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        try:
            os.fchmod(fd, mode)
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
        tmp = None
        fsync_dir(path.parent)
    except OSError as exc:
        raise StorageError(f"{path}: cannot write durably: {exc.strerror or exc}") from None
    finally:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
