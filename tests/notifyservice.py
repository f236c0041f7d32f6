# Test-only stand-in for systemd's Type=notify + WatchdogSec: runs <root>/current/.venv/bin/station as a real process.
#
# No systemd runs as PID 1 in the test machine, so this does the two things an update relies on, the way the
# unit configures them: restart waits for READY=1 on a NOTIFY_SOCKET, and probation requires a WATCHDOG=1 at
# least every watchdog_s while the process lives. station.host.service.SystemdService is the real one (Pi only).
from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path

from station.errors import UpdateError


class NotifyService:
    def __init__(self, opt_root: Path, home: Path, watchdog_s: float = 4.0):
        self.opt_root, self.home, self.watchdog_s = Path(opt_root), Path(home), watchdog_s
        self.proc: subprocess.Popen | None = None
        self.sock: socket.socket | None = None
        self.started: list[str] = []  # the release each start ran, for the test to read

    def _listen(self) -> str:
        if self.sock:
            self.sock.close()
        path = self.home.parent / f"notify-{os.getpid()}-{len(self.started)}.sock"
        path.unlink(missing_ok=True)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        return str(path)

    def _log(self):
        # A file, not a pipe: a daemon blocked on a full stderr pipe would stop pinging and fail for the wrong reason.
        self.log_path = self.home.parent / "service.log"
        return open(self.log_path, "ab")

    def _messages(self, timeout: float) -> list[str]:
        self.sock.settimeout(max(timeout, 0.01))
        try:
            return self.sock.recv(4096).decode().splitlines()
        except TimeoutError:
            return []

    def restart(self, timeout_s: float) -> None:
        self.stop()
        env = {**os.environ, "NOTIFY_SOCKET": self._listen(), "WATCHDOG_USEC": str(int(self.watchdog_s * 1e6))}
        env.pop("WATCHDOG_PID", None)
        exe = self.opt_root / "current" / ".venv" / "bin" / "station"
        self.started.append(os.readlink(self.opt_root / "current"))
        with self._log() as log:
            self.proc = subprocess.Popen([str(exe), "run", "--home", str(self.home)], env=env,
                                         stdout=subprocess.DEVNULL, stderr=log)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if "READY=1" in self._messages(0.2):
                return
            if self.proc.poll() is not None:
                err = self.log_path.read_text(errors="replace").strip().splitlines()[-1:]
                raise UpdateError(f"station exited with {self.proc.returncode} before READY: {' '.join(err)}")
        raise UpdateError(f"station not READY within {timeout_s:.0f} s")

    def probation(self, seconds: float) -> str | None:
        end = time.monotonic() + seconds
        last_ping = time.monotonic()
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                return f"station exited with {self.proc.returncode} during probation"
            if "WATCHDOG=1" in self._messages(0.2):
                last_ping = time.monotonic()
            elif time.monotonic() - last_ping > self.watchdog_s:
                return f"watchdog: no WATCHDOG=1 for {self.watchdog_s:.0f} s"
        return None

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None
