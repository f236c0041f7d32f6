# What the pty twins (serial instruments, scanners) share: writing to the master side the way a real line does.
from __future__ import annotations

import os
import select


def write_master(master: int, data: bytes, deadline_s: float) -> int:
    """Write data to a pty master and return the bytes sent. A host that stops reading for deadline_s, or a
    link that is closed, simply loses the rest: a real serial line drops bytes nobody reads, it never blocks."""
    sent, view = 0, memoryview(data)
    while view:
        _, ready, _ = select.select([], [master], [], deadline_s)
        if not ready:
            break
        try:
            n = os.write(master, view[:4096])
        except BlockingIOError:
            continue
        except OSError:
            break
        sent += n
        view = view[n:]
    return sent
