# Time on a Pi without a real-time clock: a persisted boot counter, NTP sync status, RFC 3339 UTC stamps.
from __future__ import annotations

import os
import subprocess
from pathlib import Path

from station.errors import ClockStateError
from station.host.files import atomic_write

BOOT_COUNTER_FILE = "boot_counter"
SYNC_OVERRIDE_ENV = "STATION_CLOCK_SYNCED"




def boot_counter(home_state_dir: str | Path) -> int:
    """Increment and return the boot counter; call once per daemon start.

    Without an RTC the wall clock can jump at any time, so (boot counter, time.monotonic()) is what
    orders events within and across restarts. A damaged counter file is an error, not a reset to 0:
    a counter going backwards would make two boots indistinguishable.
    """
    state = Path(home_state_dir)
    state.mkdir(parents=True, exist_ok=True)
    path = state / BOOT_COUNTER_FILE
    try:
        text = path.read_text(encoding="ascii").strip()
    except FileNotFoundError:
        text = "0"
    except (OSError, UnicodeDecodeError) as exc:
        raise ClockStateError(f"{path}: cannot read boot counter: {exc}") from None
    if not text.isdigit():
        raise ClockStateError(f"{path}: boot counter is {text[:40]!r}, expected a non-negative integer")
    counter = int(text) + 1
    atomic_write(path, f"{counter}\n".encode("ascii"))
    return counter


def clock_synced() -> bool:
    """Trust the wall clock only when systemd-timesyncd (or chrony via timedated) says it is synced."""
    override = os.environ.get(SYNC_OVERRIDE_ENV)
    if override is not None:
        if override not in ("0", "1"):
            raise ClockStateError(f"${SYNC_OVERRIDE_ENV} is {override!r}, expected 0 or 1")
        return override == "1"
    try:
        done = subprocess.run(
            ["timedatectl", "show", "-p", "NTPSynchronized", "--value"],
            capture_output=True, text=True, timeout=3, check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        # No timedatectl (containers, laptops) or a hung D-Bus: an unknown clock is an unsynced clock.
        return False
    return done.returncode == 0 and done.stdout.strip() == "yes"
