# A child process's stderr lines awaited with a deadline: a quiet child fails the test instead of hanging it.
from __future__ import annotations

import queue
import subprocess
import threading
import time


def _lines(proc: subprocess.Popen) -> queue.Queue:
    q = getattr(proc, "_stderr_lines", None)
    if q is None:
        q = proc._stderr_lines = queue.Queue()

        def pump() -> None:
            for line in iter(proc.stderr.readline, ""):
                q.put(line)
            q.put("")      # end of stream

        threading.Thread(target=pump, daemon=True).start()
    return q


def wait_line(proc: subprocess.Popen, text: str, timeout: float, why: str | None = None) -> str:
    """The first stderr line of proc containing text, read within timeout seconds (else the test fails)."""
    q, deadline = _lines(proc), time.monotonic() + timeout
    while True:
        try:
            line = q.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            line = None
        assert line, why or f"no stderr line with {text!r} within {timeout:g} s (process ended or quiet)"
        if text in line:
            return line
