# The local control socket: one JSON request line in, one JSON reply line out (used by `station press`/`status`).
from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path

from station.errors import ControlError

MAX_REQUEST = 64 * 1024
MAX_CLIENTS = 32  # connections served at once; more get a one-line "busy" rather than a thread each
BACKLOG = 64
CONNECT_RETRY_S = 2.0
log = logging.getLogger("station.control")


def request(sock_path: Path, req: dict, timeout: float = 120.0) -> dict:
    """Send one request to the running daemon and return its reply."""
    s = _connect(sock_path, timeout)
    with s:
        try:
            s.sendall(json.dumps(req).encode() + b"\n")
        except (BrokenPipeError, ConnectionResetError):
            pass  # a busy daemon answers and closes before reading the request; its answer is still readable
        buf = b""
        try:
            while not buf.endswith(b"\n"):
                chunk = s.recv(65536)
                if not chunk:
                    break
                buf += chunk
        except TimeoutError:
            raise ControlError(f"the daemon did not answer within {timeout:.0f} s") from None
        except ConnectionResetError:
            pass
    if not buf:
        raise ControlError("the daemon closed the connection without answering")
    try:
        reply = json.loads(buf)
    except ValueError:
        raise ControlError(f"the daemon's answer is not JSON: {buf[:80]!r}") from None
    if not isinstance(reply, dict):
        raise ControlError(f"the daemon's answer is not a JSON object: {buf[:80]!r}")
    return reply


def _connect(sock_path: Path, timeout: float) -> socket.socket:
    """Connect, retrying briefly while the daemon's backlog is full (EAGAIN on a Unix socket)."""
    deadline = time.monotonic() + CONNECT_RETRY_S
    while True:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(timeout)
        try:
            s.connect(str(sock_path))
            return s
        except (FileNotFoundError, ConnectionRefusedError):
            s.close()
            raise ControlError(f"no station daemon is listening on {sock_path} (start it with `station run`)") from None
        except PermissionError:
            s.close()
            raise ControlError(f"{sock_path}: permission denied (run as the station user)") from None
        except BlockingIOError:
            s.close()
            if time.monotonic() >= deadline:
                raise ControlError(f"{sock_path}: the daemon has too many clients connected; try again") from None
            time.sleep(0.05)


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
        self._sock.listen(BACKLOG)
        self._slots = threading.BoundedSemaphore(MAX_CLIENTS)
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
            if not self._slots.acquire(blocking=False):
                _answer(conn, {"ok": False, "error": f"busy: {MAX_CLIENTS} clients connected; try again"})
                conn.close()
                continue
            threading.Thread(target=self._serve_slot, args=(conn,), name="control-conn", daemon=True).start()

    def _serve_slot(self, conn: socket.socket) -> None:
        try:
            self._serve(conn)
        finally:
            self._slots.release()

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
            _answer(conn, self._reply_to(buf))

    def _reply_to(self, buf: bytes) -> dict:
        """Every request gets a one-line reply, however odd: a closed connection tells the client nothing."""
        if len(buf) >= MAX_REQUEST and not buf.endswith(b"\n"):
            return {"ok": False, "error": f"bad request: longer than {MAX_REQUEST} bytes"}
        try:
            req = json.loads(buf)
        except RecursionError:
            return {"ok": False, "error": "bad request: JSON nested too deeply"}
        except ValueError as exc:
            return {"ok": False, "error": f"bad request: {str(exc)[:120]}"}
        if not isinstance(req, dict):
            return {"ok": False, "error": "bad request: must be a JSON object"}
        try:
            return self._handle(req)
        except Exception as exc:  # noqa: BLE001 - one odd request must not kill the connection unanswered
            log.exception("control request failed")
            return {"ok": False, "error": f"request failed: {str(exc)[:200]}"}

    def close(self) -> None:
        self._closed = True
        self._sock.close()
        try:
            self.path.unlink()
        except FileNotFoundError:
            pass


def _answer(conn: socket.socket, reply: dict) -> None:
    try:
        conn.sendall(json.dumps(reply).encode() + b"\n")
    except OSError:
        pass  # the client gave up waiting; the result is in the journal regardless
