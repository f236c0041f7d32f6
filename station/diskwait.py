# Start-up on a disk too full to open the journal: stay up, say why, blink red, and open it once space returns.
from __future__ import annotations

import logging
import queue
import time
from typing import TYPE_CHECKING

from station.events import Press, StatusRequest, Stop
from station.host import sdnotify

if TYPE_CHECKING:
    from station.app import Daemon

log = logging.getLogger("station.app")

RETRY_S = 2.0


def wait_for_journal(d: Daemon) -> bool:
    """Serve status and refuse presses until the journal opens; False if told to stop first.

    Exiting instead would make systemd's Restart=always a crash loop with dark LEDs and no status.
    """
    log.error("%s", d.refusal())
    d.panel.show("refused")
    sdnotify.notify("READY=1", "STATUS=disk full: waiting for space to open the journal")
    next_try = time.monotonic() + RETRY_S
    while d.journal is None:
        try:
            ev = d.events.get(timeout=1.0)
        except queue.Empty:
            ev = None
        match ev:
            case Stop():
                log.info("stopping")
                return False
            case StatusRequest():
                ev.reply(d.status())
            case Press():
                d.panel.show("refused")
                if ev.reply:
                    ev.reply({"ok": False, "error": d.refusal()})
        sdnotify.notify("WATCHDOG=1")
        if time.monotonic() >= next_try:
            next_try = time.monotonic() + RETRY_S
            d.disk = d._disk()
            d.journal, d.journal_problem = d._try_open_journal()
    log.warning("disk %.1f%% used: the journal is open again", d.disk.used_pct)
    return True
