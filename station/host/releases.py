# Release folders side by side under /opt/nongan-station, the `current` link the unit runs, signed release archives.
#
# Layout:  releases/<version>/.venv   one venv per release, built in place (a venv holds absolute paths)
#          current  -> releases/<v>   what ExecStart runs; switched with one rename, so never half-switched
#          previous -> releases/<v>   where a failed update rolls back to
# An archive is a tar.gz with release.json {"name", "version", "wheel"} and wheels/ (the station wheel plus any
# dependency wheels, so an update needs no network); its signature is a detached flattened JWS (FILE.sig)
# whose payload names the version and the archive's SHA-256, signed by the release key in /etc/nongan.
from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
import tarfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from station.errors import KeyFileError, ReleaseError, SignatureError
from station.protocol import signing

DEFAULT_ROOT = Path("/opt/nongan-station")
DEFAULT_RELEASE_KEY = Path("/etc/nongan/release.jwk")
RELEASE_TYP = "nongan-release+json"
NAME = "nongan-station"
_VERSION_RE = re.compile(r"^[0-9A-Za-z][0-9A-Za-z.+_-]{0,40}$")


@dataclass(frozen=True)
class ReleaseInfo:
    version: str
    sha256: str
    size: int


def _sha256(path: Path) -> tuple[str, int]:
    h, size = hashlib.sha256(), 0
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
            size += len(chunk)
    return h.hexdigest(), size


def sign_archive(archive: Path, version: str, key: Ed25519PrivateKey, kid: str) -> bytes:
    """The detached signature build-release writes beside the archive as FILE.sig."""
    if not _VERSION_RE.match(version):
        raise ReleaseError(f"version {version!r}: 1-41 letters, digits, '.', '+', '_' or '-'")
    digest, size = _sha256(archive)
    return signing.sign_jws({"name": NAME, "version": version, "sha256": digest, "size": size}, key, kid,
                            RELEASE_TYP)


def verify_archive(archive: Path, signature: Path, key_file: Path) -> ReleaseInfo:
    """Check the signature against the release key and the archive against the signature, before any unpacking."""
    try:
        _, public = signing.load_jwk_file(key_file)
    except KeyFileError as exc:
        raise ReleaseError(f"release key: {exc} (install-pi --release-key puts it there)") from None
    try:
        sig = signature.read_bytes()
    except OSError as exc:
        raise ReleaseError(f"{signature}: cannot read the signature: {exc.strerror}") from None
    try:
        payload = signing.verify_jws(sig, public, typ=RELEASE_TYP)
    except SignatureError as exc:
        raise ReleaseError(f"{signature}: not signed by the release key {key_file}: {exc}") from None
    version = payload.get("version")
    if payload.get("name") != NAME or not isinstance(version, str) or not _VERSION_RE.match(version):
        raise ReleaseError(f"{signature}: signed payload is not a {NAME} release with a valid version")
    try:
        digest, size = _sha256(archive)
    except OSError as exc:
        raise ReleaseError(f"{archive}: cannot read: {exc.strerror}") from None
    if digest != payload.get("sha256") or size != payload.get("size"):
        raise ReleaseError(f"{archive}: SHA-256 {digest[:16]}… ({size} bytes) is not what {signature} signed "
                           f"({str(payload.get('sha256'))[:16]}…, {payload.get('size')} bytes): altered or cut short")
    return ReleaseInfo(version, digest, size)


def unpack(archive: Path, dest: Path, info: ReleaseInfo) -> dict:
    """Extract with tarfile's "data" filter (no absolute paths, links out of dest, devices); returns release.json."""
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    try:
        with tarfile.open(archive, "r:*") as tar:
            tar.extractall(dest, filter="data")
        meta = json.loads((dest / "release.json").read_text(encoding="utf-8"))
    except (tarfile.TarError, OSError, ValueError) as exc:
        raise ReleaseError(f"{archive}: not a release archive: {exc}") from None
    if not isinstance(meta, dict) or meta.get("version") != info.version or meta.get("name") != NAME:
        raise ReleaseError(f"{archive}: release.json does not name {NAME} {info.version}")
    wheel = meta.get("wheel")
    if not isinstance(wheel, str) or not wheel.startswith("wheels/") or not (dest / wheel).is_file():
        raise ReleaseError(f"{archive}: release.json 'wheel' must name a file under wheels/, got {wheel!r}")
    return meta


class Releases:
    """The release folders under root and the two links; every change of a link is one atomic rename."""

    def __init__(self, root: Path = DEFAULT_ROOT):
        self.root = Path(root)
        self.dir = self.root / "releases"

    def path(self, version: str) -> Path:
        return self.dir / version

    def _link(self, name: str) -> str | None:
        try:
            return Path(os.readlink(self.root / name)).name
        except OSError:
            return None

    def current(self) -> str | None:
        return self._link("current")

    def previous(self) -> str | None:
        return self._link("previous")

    def installed(self) -> list[str]:
        if not self.dir.is_dir():
            return []
        return sorted((p.name for p in self.dir.iterdir() if p.is_dir() and not p.name.startswith(".")),
                      key=lambda v: self.path(v).stat().st_mtime)

    def _point(self, name: str, version: str) -> None:
        tmp = self.root / f".{name}.new"
        tmp.unlink(missing_ok=True)
        os.symlink(f"releases/{version}", tmp)
        os.replace(tmp, self.root / name)
        fd = os.open(self.root, os.O_RDONLY)  # the rename is durable only once the folder is synced
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def switch(self, version: str) -> str | None:
        """Make version current; the one it replaces becomes previous. Returns that one (None on a first install)."""
        if not (self.path(version) / ".venv" / "bin" / "station").exists():
            raise ReleaseError(f"{self.path(version)}: no installed release there (no .venv/bin/station)")
        old = self.current()
        if old and old != version:
            self._point("previous", old)
        self._point("current", version)
        return old

    def prune(self, keep: int = 3) -> list[str]:
        """Delete the oldest releases beyond keep; never current or previous. Returns what was deleted."""
        protected = {v for v in (self.current(), self.previous()) if v}
        others = [v for v in self.installed() if v not in protected]  # oldest first
        victims = others[: max(len(others) - max(keep - len(protected), 0), 0)]
        for v in victims:
            shutil.rmtree(self.path(v), ignore_errors=True)
        return victims

    @contextmanager
    def lock(self, wait_s: float = 0.0) -> Iterator[None]:
        """One update at a time: a second `station update` fails (after wait_s) instead of racing the first.

        The kernel drops a flock when its holder dies, so a held lock also means "an update or probation watcher
        is alive right now" (station/host/probation.py relies on that after a power cut or a SIGKILL).
        """
        self.root.mkdir(parents=True, exist_ok=True)
        deadline = time.monotonic() + wait_s
        with open(self.root / ".update.lock", "w") as f:
            while True:
                try:
                    fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() >= deadline:
                        raise ReleaseError(f"{self.root}: another update is running") from None
                    time.sleep(0.2)
            yield


class PipInstaller:
    """A venv with --system-site-packages (picamera2 and lgpio come from apt), then pip from the archive only.

    --no-index: a station in a village may have no route to PyPI; every wheel comes from the archive or from the
    wheelhouse install-pi left behind. The venv gets no pip of its own (ensurepip is slow on an SD card);
    python's pip (apt's python3-pip, which install-pi installs) installs into it with --python.
    """

    def __init__(self, python: str = "/usr/bin/python3", wheelhouse: Path | None = DEFAULT_ROOT / "wheels",
                 pip_args: tuple[str, ...] = ()):
        self.python, self.wheelhouse, self.pip_args = python, wheelhouse, pip_args

    def make_venv(self, venv: Path) -> None:
        _run([self.python, "-m", "venv", "--system-site-packages", "--without-pip", str(venv)], "python -m venv")

    def install(self, unpacked: Path, dest: Path, meta: dict) -> None:
        venv = dest / ".venv"
        self.make_venv(venv)
        links = ["--find-links", str(unpacked / "wheels")]
        if self.wheelhouse and self.wheelhouse.is_dir():
            links += ["--find-links", str(self.wheelhouse)]
        _run([self.python, "-m", "pip", "--python", str(venv / "bin" / "python"), "install", "-q",
              "--disable-pip-version-check", "--no-index", *links, *self.pip_args, str(unpacked / meta["wheel"])],
             "pip install")
        if (unpacked / "docs").is_dir():
            shutil.copytree(unpacked / "docs", dest / "docs")


def _run(cmd: list[str], what: str) -> None:
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ReleaseError(f"{what}: {exc}") from None
    if done.returncode != 0:
        tail = " | ".join((done.stderr or done.stdout).strip().splitlines()[-3:])
        raise ReleaseError(f"{what} failed (exit {done.returncode}): {tail}")
