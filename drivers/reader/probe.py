# Which dialect answers on a port: ask each two-way dialect for its identity, at its own baud rate.
from __future__ import annotations

import time

from drivers.errors import DeviceError
from drivers.reader import dialects
from drivers.reader.base import Identity
from drivers.reader.port import open_port

ANSWER_S = 1.0  # both sheets promise an answer within 500 ms


def probe(path: str) -> tuple[str | None, Identity | None, str]:
    """(dialect, identity, note). One-way dialects cannot be probed: they never answer."""
    for name in dialects.names():
        d = dialects.get(name)
        if not d.two_way:
            continue
        try:
            ser = open_port(path, d.baud)
        except DeviceError as exc:
            return None, None, str(exc)
        try:
            session = d.session(None)
            ser.write(session.start(time.monotonic()))
            deadline = time.monotonic() + ANSWER_S
            while time.monotonic() < deadline:
                for heard in session.feed(ser.read(max(1, ser.in_waiting)), time.monotonic()):
                    if isinstance(heard, Identity):
                        return name, heard, f"{heard.model} serial {heard.serial} firmware {heard.firmware}"
        except Exception as exc:  # noqa: BLE001 - a probe reports what it found; it never crashes the listing
            return None, None, f"{path}: {exc}"
        finally:
            ser.close()
    one_way = [n for n in dialects.names() if not dialects.get(n).two_way]
    return None, None, f"no dialect answered (a one-way {', '.join(one_way)} never answers: configure it by hand)"
