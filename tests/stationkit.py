# Helpers for tests that drive the real station daemon and town listener as subprocesses (rig from station.chaos).
from __future__ import annotations

import json
import socket
import time
from collections.abc import Callable
from pathlib import Path

from station.chaos import (
    PRESS_GAP_S,
    DaemonProcess,
    DaemonRefused,
    JournalReport,
    StationRig,
    TownProcess,
    check_journal,
    check_journal_copy,
    town_show,
)
from station.control import request

__all__ = ["DaemonProcess", "DaemonRefused", "JournalReport", "StationRig", "TownProcess", "check_journal",
           "check_journal_copy", "town_show", "eventually", "press", "send_press", "read_reply", "shown_of"]

_last_press: dict[str, float] = {}


def eventually(pred: Callable[[], object], timeout: float, what: str, interval: float = 0.05) -> object:
    """Poll pred until it returns something truthy; fail the test naming `what` if it never does."""
    deadline = time.monotonic() + timeout
    while True:
        value = pred()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(interval)


def _keep_gap(sock: Path) -> None:
    # A socket press takes the button's path, debounce included: presses closer than the debounce are
    # swallowed by the panel and their reply never comes, so keep real button spacing.
    wait = _last_press.get(str(sock), 0.0) + PRESS_GAP_S - time.monotonic()
    if wait > 0:
        time.sleep(wait)
    _last_press[str(sock)] = time.monotonic()


def press(sock: Path, timeout: float = 30.0, **extra: object) -> dict:
    """One press through the control socket, as `station press` does; returns the daemon's reply."""
    _keep_gap(sock)
    return request(sock, {"cmd": "press", "wait": True, **extra}, timeout=timeout)


def send_press(sock: Path) -> socket.socket:
    """Send a press and return the open connection without waiting, so the daemon can be killed mid-press."""
    _keep_gap(sock)
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(str(sock))
    s.sendall(json.dumps({"cmd": "press", "wait": True}).encode() + b"\n")
    return s


def read_reply(s: socket.socket, timeout: float = 10.0) -> dict | None:
    """The reply on a connection from send_press, or None if it closed without one (the daemon died)."""
    s.settimeout(timeout)
    buf = b""
    with s:
        while not buf.endswith(b"\n"):
            try:
                chunk = s.recv(65536)
            except ConnectionResetError:
                return None
            if not chunk:
                return None
            buf += chunk
    return json.loads(buf)


def shown_of(reply: dict | None) -> dict[int, dict]:
    """seq -> (sample, verdict) for every result a reply showed the operator."""
    return {r["seq"]: {"sample": r["sample"], "verdict": r["verdict"], "id": r["id"]}
            for r in (reply or {}).get("results") or []}
