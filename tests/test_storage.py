# Storage: atomic writes, durable photographs, disk levels, and pruning that never touches unacknowledged photos.
from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from station.errors import StorageError
from station.host.files import atomic_write
from station.journal import Journal
from station.photos import DiskUsage, disk_state, prune_images, save_image
from station.protocol.result import RESULT_TYP, build_result_payload
from station.protocol.signing import sign_jws

KEY = Ed25519PrivateKey.generate()


def record(j: Journal, image_path: Path | str | None, sha: str | None) -> int:
    def make(seq: int, prev: str) -> bytes:
        p = build_result_payload(
            seq=seq, prev=prev, station_path="d/t/v/st-2", station_id="st-2",
            boot={"counter": 1, "monotonic_s": 1.0}, read_at="2026-11-24T00:00:00Z", clock_synced=True,
            sample={"id": f"S-{seq}", "producer": None},
            strip={"type": "p", "analyte": "a", "lot": None, "slot": 0},
            reading={"tc_ratio": 1.0, "c_area": 1.0, "t_area": 1.0, "c_peak": 0.1, "t_peak": 0.1, "snr": 9.0},
            verdict="negative", quality=[], calibration={"id": None, "cutoff": 0.6}, image_sha256=sha,
            source="camera",
        )
        return sign_jws(p, KEY, "st-2/1", RESULT_TYP)

    seq = (j.stats().last_seq or 0) + 1
    return j.append(make, verdict="negative", sample_id=f"S-{seq}", image_path=image_path).seq


def test_atomic_write_replaces_whole_file_and_leaves_no_temp(tmp_path):
    target = tmp_path / "state.json"
    atomic_write(target, b"one")
    atomic_write(target, b"two" * 1000, mode=0o600)
    assert target.read_bytes() == b"two" * 1000
    assert oct(target.stat().st_mode & 0o777) == "0o600"
    assert os.listdir(tmp_path) == ["state.json"]
    with pytest.raises(StorageError, match="missing"):
        atomic_write(tmp_path / "missing" / "x", b"data")


def test_save_image_is_content_addressed(tmp_path):
    jpeg = b"\xff\xd8" + os.urandom(5000) + b"\xff\xd9"
    path, sha = save_image(tmp_path / "images", jpeg)
    assert sha == hashlib.sha256(jpeg).hexdigest()
    assert path.is_absolute() and path.name == f"{sha}.jpg" and path.read_bytes() == jpeg
    assert save_image(tmp_path / "images", jpeg) == (path, sha)  # same photo twice: one file
    assert len(os.listdir(tmp_path / "images")) == 1
    with pytest.raises(StorageError, match="empty"):
        save_image(tmp_path / "images", b"")


def fake_usage(total: int, **used: int):
    return lambda path: DiskUsage(total, used["used"], total - used["used"])


def test_disk_levels():
    assert disk_state("/", usage=fake_usage(1000, used=500)).level == "ok"
    assert disk_state("/", usage=fake_usage(1000, used=800)).level == "warn"
    st = disk_state("/", usage=fake_usage(1000, used=951))
    assert (st.level, st.used_pct, st.free_bytes) == ("full", 95.1, 49)
    assert disk_state("/", warn_pct=50, refuse_pct=60, usage=fake_usage(1000, used=600)).level == "full"
    with pytest.raises(StorageError, match="warn_pct"):
        disk_state("/", warn_pct=90, refuse_pct=80)
    real = disk_state("/")  # the real statvfs path works too
    assert 0 <= real.used_pct <= 100


class SimDisk:
    """A disk whose use is a fixed base plus the photographs really present in images_dir."""

    def __init__(self, images_dir: Path, total: int, base: int):
        self.images_dir, self.total, self.base = images_dir, total, base

    def __call__(self, path) -> DiskUsage:
        used = self.base + sum(p.stat().st_size for p in self.images_dir.iterdir())
        return DiskUsage(self.total, used, self.total - used)


def setup_station(tmp_path, n: int, size: int = 1000):
    images = tmp_path / "images"
    j = Journal(tmp_path / "journal.sqlite")
    paths = []
    for _ in range(n):
        path, sha = save_image(images, os.urandom(size))
        record(j, path, sha)
        paths.append(path)
    return j, images, paths


def test_prune_deletes_only_acknowledged_oldest_first(tmp_path):
    j, images, paths = setup_station(tmp_path, 10)
    j.mark_acked(6)
    disk = SimDisk(images, total=20_000, base=8_000)  # 18 000 used = 90 %
    res = prune_images(j, images, target_pct=75.0, usage=disk)
    assert res.deleted == 3 and res.freed_bytes == 3000 and res.used_pct == 75.0
    assert [p.exists() for p in paths] == [False] * 3 + [True] * 7
    res = prune_images(j, images, target_pct=0.0, usage=disk)  # wants everything gone
    assert res.deleted == 3
    assert [p.exists() for p in paths] == [False] * 6 + [True] * 4  # unacked 7-10 survive
    assert j.stats().last_seq == 10 and all(j.get(s) for s in range(1, 11))  # rows are never deleted
    j.mark_acked(10)
    assert prune_images(j, images, target_pct=0.0, usage=disk).deleted == 4
    j.close()


def test_prune_keeps_photo_shared_with_unacked_result(tmp_path):
    j, images, paths = setup_station(tmp_path, 4)
    shared = paths[3]
    record(j, shared, shared.stem)  # seq 5: a second cassette in the same photograph
    j.mark_acked(4)
    disk = SimDisk(images, total=10_000, base=0)
    res = prune_images(j, images, target_pct=0.0, usage=disk)
    assert res.deleted == 3 and res.kept_unacked == 1 and shared.exists()
    j.mark_acked(5)
    assert prune_images(j, images, target_pct=0.0, usage=disk).deleted == 1
    assert not shared.exists()
    j.close()


def test_prune_never_leaves_images_dir(tmp_path):
    j, images, _ = setup_station(tmp_path, 1)
    outside = tmp_path / "config.toml"
    outside.write_bytes(b"precious")
    record(j, outside, None)
    record(j, "../config.toml", None)
    j.mark_acked(3)
    prune_images(j, images, target_pct=0.0, usage=SimDisk(images, total=10_000, base=5_000))
    assert outside.read_bytes() == b"precious"
    j.close()


def test_prune_does_nothing_below_target(tmp_path):
    j, images, paths = setup_station(tmp_path, 3)
    j.mark_acked(3)
    disk = SimDisk(images, total=100_000, base=0)
    res = prune_images(j, images, target_pct=50.0, usage=disk)
    assert res.deleted == 0 and all(p.exists() for p in paths)
    res = prune_images(j, images, target_pct=50.0, min_free_bytes=98_000, usage=disk)  # 97 000 free now
    assert res.deleted == 1 and [p.exists() for p in paths] == [False, True, True]
    j.close()
