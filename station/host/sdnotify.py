# Dependency-free sd_notify(3): tell systemd READY, WATCHDOG pings, STATUS text and STOPPING.
from __future__ import annotations

import os
import socket


def _address() -> str | None:
    addr = os.environ.get("NOTIFY_SOCKET")
    if not addr:
        return None
    # '@' marks a Linux abstract-namespace socket; the kernel wants a leading NUL instead.
    return "\0" + addr[1:] if addr.startswith("@") else addr


def notify(*assignments: str) -> bool:
    """Send 'KEY=value' lines in one datagram. False (and nothing sent) when not run by systemd.

    A failed send is reported as False, not raised: a daemon that cannot reach systemd will be
    restarted by the watchdog anyway, and the caller's own work must not stop over it.
    """
    addr = _address()
    if addr is None or not assignments:
        return False
    message = "\n".join(assignments).encode("utf-8")
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.sendto(message, addr)
    except OSError:
        return False
    return True


def ready(status: str | None = None) -> bool:
    return notify("READY=1", *([f"STATUS={status}"] if status else []))


def watchdog() -> bool:
    return notify("WATCHDOG=1")


def status(text: str) -> bool:
    # STATUS is one line in `systemctl status`; a newline would start a new assignment.
    return notify("STATUS=" + " ".join(text.splitlines()))


def stopping(status: str | None = None) -> bool:
    return notify("STOPPING=1", *([f"STATUS={status}"] if status else []))


def watchdog_interval() -> float | None:
    """Seconds between required WATCHDOG=1 pings (half of WatchdogSec), or None if no watchdog is set.

    Like sd_watchdog_enabled(3): WATCHDOG_PID, when present, must be this process, so a child started
    with the inherited environment does not think it is being watched.
    """
    usec = os.environ.get("WATCHDOG_USEC")
    pid = os.environ.get("WATCHDOG_PID")
    if not usec:
        return None
    if pid and pid != str(os.getpid()):
        return None
    try:
        value = int(usec)
    except ValueError:
        return None
    return value / 2_000_000 if value > 0 else None
