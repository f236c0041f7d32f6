# Download one file of a known size and SHA-256: bounded, with a timeout, resumed after a cut connection.
from __future__ import annotations

import hashlib
import os
import urllib.error
import urllib.request
from pathlib import Path

from station.errors import UpdateError

CHUNK = 256 * 1024


def fetch(url: str, dest: Path, *, sha256: str | None, size: int | None, max_bytes: int,
          timeout_s: float = 30.0) -> Path:
    """Fetch url into dest (via dest.part) and return dest; raise UpdateError naming the URL and what went wrong.

    A village line drops often, so a .part left by an earlier try is resumed with a Range request; a server that
    ignores the range (200) is read from the start again. More bytes than size (or max_bytes) is refused as it
    arrives, so a hostile or broken server cannot fill the SD card.
    """
    limit = min(size, max_bytes) if size is not None else max_bytes
    part = dest.with_name(dest.name + ".part")
    have = part.stat().st_size if part.exists() else 0
    if have > limit:
        part.unlink()
        have = 0
    if size is None or have < size:
        headers = {"User-Agent": "nongan-station-update"}
        if have:
            headers["Range"] = f"bytes={have}-"
        try:
            with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout_s) as resp:
                if have and resp.status != 206:
                    have = 0  # the server sends the whole file: start over
                with open(part, "ab" if have else "wb") as out:
                    while chunk := resp.read(CHUNK):
                        have += len(chunk)
                        if have > limit:
                            raise UpdateError(f"{url}: more than the {limit} bytes announced; refused")
                        out.write(chunk)
                    out.flush()
                    os.fsync(out.fileno())
        except urllib.error.HTTPError as exc:
            raise UpdateError(f"{url}: HTTP {exc.code} {exc.reason}") from None
        except (urllib.error.URLError, OSError, ValueError) as exc:
            reason = getattr(exc, "reason", exc)
            raise UpdateError(f"{url}: download failed after {have} bytes: {reason} (will resume)") from None
    if size is not None and have != size:
        raise UpdateError(f"{url}: got {have} bytes, the order says {size} (will resume)")
    if sha256 is not None:
        digest = _sha256(part)
        if digest != sha256:
            part.unlink()
            raise UpdateError(f"{url}: SHA-256 {digest[:16]}… is not the ordered {sha256[:16]}…: altered in "
                              "transit or the wrong file; deleted")
    os.replace(part, dest)
    return dest


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()
