# pyserial behind one function: open a port by path or URL, exclusively, with device-prefixed errors.
from __future__ import annotations

import errno
import os
import time
from pathlib import Path

from drivers.errors import DeviceBusy, DeviceError, DeviceNotFound

BY_ID = "/dev/serial/by-id"
READ_TIMEOUT_S = 0.02  # short: the reader thread also polls, checks the path and stops between reads


def open_port(path: str, baud: int, *, tries: int = 1, wait_s: float = 0.2):
    """A pyserial port; exclusive=True so a second station, ModemManager or a terminal cannot share it.

    tries > 1 retries a missing or busy port (a USB adapter takes a moment to enumerate); the reader
    thread reconnects on its own and passes tries=1.
    """
    import serial  # lazily: the station imports drivers.reader without a serial port in sight

    last: DeviceError | None = None
    for i in range(max(1, tries)):
        if i:
            time.sleep(wait_s)
        try:
            return serial.serial_for_url(path, baudrate=baud, timeout=READ_TIMEOUT_S, write_timeout=1.0,
                                         exclusive=True)
        except (serial.SerialException, OSError, ValueError) as exc:
            last = _error(path, exc)
    raise last  # type: ignore[misc]


def _error(path: str, exc: Exception) -> DeviceError:
    code = getattr(exc, "errno", None)
    text = str(exc)
    if code == errno.ENOENT or "No such file" in text or not (path.startswith(("/", ".")) or "://" in path) \
            and not os.path.exists(path):
        return DeviceNotFound(path, "no such serial port (unplugged? see `station readers`)")
    if code in (errno.EBUSY, errno.EAGAIN) or "exclusive" in text.lower() or "lock" in text.lower():
        return DeviceBusy(path, "in use by another process (a terminal, ModemManager, another station?)")
    if code == errno.EACCES or "Permission denied" in text:
        return DeviceError(path, "permission denied: add the station user to the 'dialout' group")
    return DeviceError(path, f"cannot open: {text}")


def list_ports(by_id: str = BY_ID) -> list[tuple[str, str]]:
    """(stable by-id path, the tty it points at now) for every attached serial adapter."""
    d = Path(by_id)
    if not d.is_dir():
        return []
    return sorted((str(p), os.path.realpath(p)) for p in d.iterdir())
