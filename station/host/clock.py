# Time on a Pi without a real-time clock: a persisted boot counter, NTP sync status, RFC 3339 UTC stamps.
from __future__ import annotations

import os
import subprocess
import threading
import time
from pathlib import Path

from station.errors import ClockStateError, StorageError
from station.host.files import atomic_write

BOOT_COUNTER_FILE = "boot_counter"
SYNC_OVERRIDE_ENV = "STATION_CLOCK_SYNCED"


def boot_counter(home_state_dir: str | Path) -> int:
    """Increment and return the boot counter; call once per daemon start.

    Without an RTC the wall clock can jump at any time, so (boot counter, time.monotonic()) is what
    orders events within and across restarts. A damaged counter file is an error, not a reset to 0:
    a counter going backwards would make two boots indistinguishable.
    """
    counter = next_boot_counter(home_state_dir)
    save_boot_counter(home_state_dir, counter)
    return counter


def next_boot_counter(home_state_dir: str | Path) -> int:
    """The counter this boot takes, read but not yet saved (a full disk may refuse the save)."""
    path = Path(home_state_dir) / BOOT_COUNTER_FILE
    try:
        text = path.read_text(encoding="ascii").strip()
    except FileNotFoundError:
        text = "0"
    except (OSError, UnicodeDecodeError) as exc:
        raise ClockStateError(f"{path}: cannot read boot counter: {exc}") from None
    if not text.isdigit():
        raise ClockStateError(f"{path}: boot counter is {text[:40]!r}, expected a non-negative integer")
    return int(text) + 1


def save_boot_counter(home_state_dir: str | Path, counter: int) -> None:
    """StorageError if it cannot be saved; the caller must not record results under an unsaved counter."""
    state = Path(home_state_dir)
    try:
        state.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StorageError(f"{state}: cannot create: {exc.strerror or exc}") from None
    atomic_write(state / BOOT_COUNTER_FILE, f"{counter}\n".encode("ascii"))


SYNC_TTL_S = 30.0


class _SyncCache:
    """The last answer of timedatectl and when it came; refreshed on a thread so no caller ever waits for D-Bus."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.value = False  # an unknown clock is an unsynced clock
        self.at: float | None = None
        self.refreshing = False

    def get(self) -> bool:
        with self.lock:
            stale = self.at is None or time.monotonic() - self.at >= SYNC_TTL_S
            if stale and not self.refreshing:
                self.refreshing = True
                threading.Thread(target=self._refresh, name="clock-sync", daemon=True).start()
            return self.value

    def _refresh(self) -> None:
        value = ask_timedatectl()
        with self.lock:
            self.value, self.at, self.refreshing = value, time.monotonic(), False


_cache = _SyncCache()


def clock_synced() -> bool:
    """Trust the wall clock only when systemd-timesyncd (or chrony via timedated) says it is synced.

    Never blocks: the loop calls this on its status path, and timedatectl can hang for seconds on a busy
    D-Bus. It answers from a cache at most SYNC_TTL_S old (False until the first answer arrives).
    """
    override = os.environ.get(SYNC_OVERRIDE_ENV)
    if override is not None:
        if override not in ("0", "1"):
            raise ClockStateError(f"${SYNC_OVERRIDE_ENV} is {override!r}, expected 0 or 1")
        return override == "1"
    return _cache.get()


def ask_timedatectl() -> bool:
    """Blocking (up to 3 s): only the cache's refresh thread calls this."""
    try:
        done = subprocess.run(
            ["timedatectl", "show", "-p", "NTPSynchronized", "--value"],
            capture_output=True, text=True, timeout=3, check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        # No timedatectl (containers, laptops) or a hung D-Bus: an unknown clock is an unsynced clock.
        return False
    return done.returncode == 0 and done.stdout.strip() == "yes"
