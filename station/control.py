# The local control socket: one JSON request line in, one JSON reply line out (used by `station press`/`status`).
from __future__ import annotations

import json
import os
import socket
import threading
from collections.abc import Callable
from pathlib import Path

from station.errors import ControlError

MAX_REQUEST = 64 * 1024




def request(sock_path: Path, req: dict, timeout: float = 120.0) -> dict:
    """Send one request to the running daemon and return its reply."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        s.connect(str(sock_path))
    except (FileNotFoundError, ConnectionRefusedError):
        raise ControlError(f"no station daemon is listening on {sock_path} (start it with `station run`)") from None
    except PermissionError:
        raise ControlError(f"{sock_path}: permission denied (run as the station user)") from None
    with s:
        s.sendall(json.dumps(req).encode() + b"\n")
        buf = b""
        try:
            while not buf.endswith(b"\n"):
                chunk = s.recv(65536)
                if not chunk:
                    break
                buf += chunk
        except TimeoutError:
            raise ControlError(f"the daemon did not answer within {timeout:.0f} s") from None
    if not buf:
        raise ControlError("the daemon closed the connection without answering")
    return json.loads(buf)


class ControlServer:
    """Accepts connections on a thread; each request is handed to `handle`, which must return the reply dict.

    `handle` runs on the connection's thread: the daemon's handler only posts an event and waits for the loop.
    """

    def __init__(self, sock_path: Path, handle: Callable[[dict], dict]):
        self.path = Path(sock_path)
        self._handle = handle
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.path.exists() or self.path.is_symlink():
            self._remove_stale()
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._sock.bind(str(self.path))
        os.chmod(self.path, 0o660)
        self._sock.listen(16)
        self._thread = threading.Thread(target=self._accept, name="control", daemon=True)
        self._closed = False

    def _remove_stale(self) -> None:
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.connect(str(self.path))
        except OSError:
            self.path.unlink()  # nobody answers: left behind by a killed daemon
            return
        finally:
            probe.close()
        raise ControlError(f"another station daemon is already running on {self.path}")

    def start(self) -> None:
        self._thread.start()

    def _accept(self) -> None:
        while not self._closed:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), name="control-conn", daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        with conn:
            conn.settimeout(10)  # a client that connects and never sends must not hold a thread for ever
            buf = b""
            try:
                while not buf.endswith(b"\n") and len(buf) < MAX_REQUEST:
                    chunk = conn.recv(4096)
                    if not chunk:
                        return
                    buf += chunk
            except TimeoutError:
                return
            conn.settimeout(None)  # the reply may take as long as the sample does
            try:
                req = json.loads(buf)
                if not isinstance(req, dict):
                    raise ValueError("request must be a JSON object")
            except ValueError as exc:
                reply = {"ok": False, "error": f"bad request: {exc}"}
            else:
                reply = self._handle(req)
            try:
                conn.sendall(json.dumps(reply).encode() + b"\n")
            except OSError:
                pass  # the client gave up waiting; the result is in the journal regardless

    def close(self) -> None:
        self._closed = True
        self._sock.close()
        try:
            self.path.unlink()
        except FileNotFoundError:
            pass
