# The publisher's watchdog thread: rebuild a wedged or dead paho client, report a worker that stopped running.
#
# Threads
#   supervisor  ("publisher-supervisor")  Supervisor.run: every 0.5 s reads Worker.health(), a snapshot,
#                                         and at most asks the worker to rebuild (request_rebuild) or
#                                         reports (emit); it never touches the client or the journal.
from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

from station.publisher.reports import Health

if TYPE_CHECKING:
    from station.publisher.settings import PublisherSettings
    from station.publisher.worker import Worker

log = logging.getLogger("station.publisher")


def wedge_reason(h: Health, *, puback_timeout_s: float, connect_stuck_s: float) -> str | None:
    """Why the session in health snapshot `h` looks wedged, or None if it looks healthy."""
    if h.connected and not h.thread_alive:
        return "paho network thread died while connected"
    elif h.connected and h.oldest_inflight_age_s is not None:
        age = h.oldest_inflight_age_s
        since = h.last_puback_age_s if h.last_puback_age_s is not None else age
        if age > puback_timeout_s and since > puback_timeout_s:
            return f"no PUBACK for {since:.0f} s with {h.inflight} in flight"
    elif not h.connected and h.connecting_for_s is not None:
        if not h.thread_alive and h.connecting_for_s > 2.0:
            return "paho network thread ended before connecting"
        elif h.connecting_for_s > connect_stuck_s:
            return f"no connection for {h.connecting_for_s:.0f} s"
    return None


class Supervisor:
    """Watches the publisher's connection state and PUBACK ages from its own thread; asks the worker to tear
    down and rebuild a wedged client (it never touches the client itself)."""

    def __init__(self, worker: Worker, settings: PublisherSettings) -> None:
        self.worker = worker
        self.puback_timeout_s = float(settings.puback_timeout_s or 0.0)
        self.connect_stuck_s = settings.connect_stuck_s

    def run(self) -> None:
        w = self.worker
        suspect: int | None = None
        reported_at: float | None = None   # when we last said the worker is not running
        while not w.stopping.wait(0.5):
            now = time.monotonic()
            h = w.health()
            if h.gen is None or h.rebuild_pending:
                continue
            reason = wedge_reason(h, puback_timeout_s=self.puback_timeout_s, connect_stuck_s=self.connect_stuck_s)
            # act only when the same session looks wedged on two consecutive checks: a normal disconnect
            # ends the paho thread a moment before the worker has processed on_disconnect
            if reason is None:
                suspect = None
            elif suspect != h.gen:
                suspect = h.gen
            else:
                suspect = None
                log.warning("supervisor: rebuilding the MQTT client: %s", reason)
                w.request_rebuild(reason)
            idle = h.worker_idle_s if reported_at is None else min(h.worker_idle_s, now - reported_at)
            if idle > max(30.0, 3 * self.puback_timeout_s) and not h.stopped:
                w.emit("wedged", detail=f"publisher worker has not run for {idle:.0f} s")
                reported_at = now
