# Test-only helpers around a daemon run by station.lab.rig: raw presses on the control socket, replies, waits.
from __future__ import annotations

import json
import socket
from pathlib import Path

from station.control import request
from station.lab.rig import wait_for

__all__ = ["eventually", "press", "send_press", "read_reply", "shown_of"]

# Tests fail with the station's own "timed out after N s waiting for <what>".
eventually = wait_for


def press(sock: Path, timeout: float = 30.0, **extra: object) -> dict:
    """One press through the control socket, as `station press` does; returns the daemon's reply."""
    return request(sock, {"cmd": "press", "wait": True, **extra}, timeout=timeout)


def send_press(sock: Path) -> socket.socket:
    """Send a press and return the open connection without waiting, so the daemon can be killed mid-press."""
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
