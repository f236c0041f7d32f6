# Result photographs: content-addressed files, disk levels, and pruning of town-acknowledged ones.
from __future__ import annotations

import hashlib
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal, NamedTuple

from station.errors import JournalError, StorageError
from station.host.files import atomic_write, fsync_dir

if TYPE_CHECKING:
    from station.journal import Journal


class DiskUsage(NamedTuple):
    """Same shape as shutil.disk_usage, so a test can hand in a simulated disk."""

    total: int
    used: int
    free: int


UsageFn = Callable[[str | Path], DiskUsage]


def save_image(images_dir: str | Path, jpeg_bytes: bytes, suffix: str = ".jpg") -> tuple[Path, str]:
    """Store a photograph under its own SHA-256 and return (absolute path, hex digest).

    Content addressing matters: one photograph can hold several cassettes, so several results share a
    file, and saving the same bytes twice is harmless. Call this before the journal commit so a
    journaled result never points at a photograph that is not yet on disk.
    """
    if not jpeg_bytes:
        raise StorageError(f"{images_dir}: refusing to save an empty image")
    digest = hashlib.sha256(jpeg_bytes).hexdigest()
    images_dir = Path(images_dir).absolute()
    images_dir.mkdir(parents=True, exist_ok=True)
    path = images_dir / f"{digest}{suffix}"
    atomic_write(path, jpeg_bytes)
    return path, digest


@dataclass(frozen=True)
class DiskState:
    used_pct: float
    level: Literal["ok", "warn", "full"]
    free_bytes: int


def disk_state(
    path: str | Path, warn_pct: float = 80.0, refuse_pct: float = 95.0, usage: UsageFn = shutil.disk_usage
) -> DiskState:
    """'full' means the station must refuse new samples rather than fail half-way through one."""
    if not 0 < warn_pct < refuse_pct <= 100:
        raise StorageError(
            f"disk thresholds: need 0 < warn_pct ({warn_pct}) < refuse_pct ({refuse_pct}) <= 100"
        )
    du = usage(path)
    # From the space the service user may still write (statvfs f_bavail), not the blocks in use: on ext4 the
    # 5 % kept for root would otherwise make the station hit ENOSPC right at the 95 % refusal threshold.
    used_pct = 100.0 * (du.total - du.free) / du.total if du.total else 100.0
    level: Literal["ok", "warn", "full"] = "ok"
    if used_pct >= refuse_pct:
        level = "full"
    elif used_pct >= warn_pct:
        level = "warn"
    return DiskState(round(used_pct, 2), level, du.free)


@dataclass(frozen=True)
class PruneResult:
    deleted: int
    freed_bytes: int
    used_pct: float
    kept_unacked: int  # acknowledged photographs kept because an unacknowledged result shares them


_CURSOR_KEY = "images_pruned_upto"


def prune_images(
    journal: Journal,
    images_dir: str | Path,
    *,
    target_pct: float = 70.0,
    min_free_bytes: int = 0,
    usage: UsageFn = shutil.disk_usage,
    batch: int = 500,
) -> PruneResult:
    """Delete photographs of acknowledged results, oldest first, until the disk is at or below
    target_pct used and has at least min_free_bytes free.

    Only photographs are deleted, never journal rows: the signed record (with image_sha256) stays.
    A photograph also referenced by an unacknowledged result is kept. Files outside images_dir are
    never touched, whatever a journal row says.
    """
    images_dir = Path(images_dir).absolute()
    root = images_dir.resolve()
    keep = {_resolve(p, images_dir) for p in journal.unacked_image_paths()}
    deleted = freed = kept = 0
    # Every photograph of a result at or below the cursor is gone, so the next prune starts there.
    cursor = int(journal.get_state(_CURSOR_KEY) or b"0")
    after, blocked, reached = cursor, False, False

    def used_pct() -> float:
        du = usage(images_dir)
        return 100.0 * (du.total - du.free) / du.total if du.total else 100.0

    def satisfied() -> bool:
        du = usage(images_dir)
        return du.total > 0 and used_pct() <= target_pct and du.free >= min_free_bytes

    while not reached and not satisfied():
        rows = journal.acked_images(after_seq=after, limit=batch)
        if not rows:
            break
        for seq, image_path in rows:
            after = seq
            path = _resolve(image_path, images_dir)
            if path in keep or not path.is_relative_to(root):
                kept += path in keep
                blocked = True  # this row must be revisited, so the cursor may not pass it
                continue
            try:
                size = path.stat().st_size
                path.unlink()
            except FileNotFoundError:
                size = None
            if not blocked:
                cursor = seq
            if size is not None:
                deleted, freed = deleted + 1, freed + size
                if satisfied():
                    reached = True
                    break
    if deleted:
        fsync_dir(images_dir)
    try:
        journal.set_state(_CURSOR_KEY, str(cursor).encode("ascii"))
    except JournalError:
        pass  # the cursor only saves work next time; a full disk refusing it must not undo the prune
    return PruneResult(deleted, freed, round(used_pct(), 2), kept)


def _resolve(image_path: str, images_dir: Path) -> Path:
    p = Path(image_path)
    return (p if p.is_absolute() else images_dir / p).resolve()
