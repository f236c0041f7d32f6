# The station's systemd unit as an update sees it: restart until READY, then a probation it must survive.
from __future__ import annotations

import subprocess
import time
from typing import Protocol

from station.errors import UpdateError

UNIT = "nongan-station.service"


class Service(Protocol):
    def restart(self, timeout_s: float) -> None:
        """Restart the daemon and return once it said READY=1; raise UpdateError if it did not."""

    def probation(self, seconds: float) -> str | None:
        """Watch the daemon for seconds; None if it kept running and pinging its watchdog, else why not."""


class SystemdService:
    """Type=notify makes `systemctl restart` wait for READY=1; the watchdog (WatchdogSec=) does the rest.

    A daemon that stops pinging is killed and restarted by systemd, so during probation a changed MainPID or a
    higher NRestarts means the new release failed its watchdog (or crashed), and the unit not being
    active/running means it is down.
    """

    def __init__(self, unit: str = UNIT, poll_s: float = 1.0):
        self.unit, self.poll_s = unit, poll_s

    def _show(self) -> dict[str, str]:
        done = subprocess.run(["systemctl", "show", self.unit, "-p", "ActiveState,SubState,MainPID,NRestarts"],
                              capture_output=True, text=True, timeout=30)
        return dict(line.split("=", 1) for line in done.stdout.splitlines() if "=" in line)

    def restart(self, timeout_s: float) -> None:
        try:
            done = subprocess.run(["systemctl", "restart", self.unit], capture_output=True, text=True,
                                  timeout=timeout_s)
        except subprocess.TimeoutExpired:
            raise UpdateError(f"{self.unit}: not READY within {timeout_s:.0f} s") from None
        except OSError as exc:
            raise UpdateError(f"systemctl: {exc}") from None
        if done.returncode != 0:
            raise UpdateError(f"{self.unit} did not start: {done.stderr.strip() or 'exit ' + str(done.returncode)} "
                              f"(journalctl -u {self.unit})")

    def probation(self, seconds: float) -> str | None:
        first = self._show()
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            now = self._show()
            if (now.get("ActiveState"), now.get("SubState")) != ("active", "running"):
                return f"{self.unit} is {now.get('ActiveState')}/{now.get('SubState')}"
            if now.get("MainPID") != first.get("MainPID") or now.get("NRestarts") != first.get("NRestarts"):
                return f"{self.unit} was restarted (watchdog or crash): MainPID {first.get('MainPID')} -> " \
                       f"{now.get('MainPID')}, NRestarts {first.get('NRestarts')} -> {now.get('NRestarts')}"
            time.sleep(self.poll_s)
        return None
