# The publisher's watchdog thread: rebuild a wedged or dead paho client, report a worker that stopped running.
from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

from station.publisher.session import Session

if TYPE_CHECKING:
    from station.publisher import Publisher

log = logging.getLogger("station.publisher")


def wedge_reason(s: Session, now: float, *, oldest_inflight_t: float | None, last_puback_t: float | None,
                 inflight: int, connecting_since: float | None, puback_timeout_s: float,
                 connect_stuck_s: float) -> str | None:
    """Why session `s` looks wedged at monotonic time `now`, or None if it looks healthy."""
    thread_alive = s.thread is not None and s.thread.is_alive()
    if s.connected and not thread_alive:
        return "paho network thread died while connected"
    elif s.connected and oldest_inflight_t is not None:
        age = now - oldest_inflight_t
        since = now - (last_puback_t or oldest_inflight_t)
        if age > puback_timeout_s and since > puback_timeout_s:
            return f"no PUBACK for {since:.0f} s with {inflight} in flight"
    elif not s.connected and connecting_since is not None:
        if not thread_alive and now - connecting_since > 2.0:
            return "paho network thread ended before connecting"
        elif now - connecting_since > connect_stuck_s:
            return f"no connection for {now - connecting_since:.0f} s"
    return None


class Supervisor:
    """Watches the publisher's connection state and PUBACK ages from its own thread; asks the worker to tear
    down and rebuild a wedged client (it never touches the client itself)."""

    def __init__(self, pub: Publisher) -> None:
        self.pub = pub

    def run(self) -> None:
        p = self.pub
        suspect: int | None = None
        while not p._stop.wait(0.5):
            now = time.monotonic()
            s = p._session
            if s is None or p._rebuild_reason is not None:
                continue
            reason = wedge_reason(s, now, oldest_inflight_t=p._oldest_inflight_t, last_puback_t=p._last_puback_t,
                                  inflight=p._state.inflight, connecting_since=p._connecting_since,
                                  puback_timeout_s=p.puback_timeout_s, connect_stuck_s=p.connect_stuck_s)
            # act only when the same session looks wedged on two consecutive checks: a normal disconnect
            # ends the paho thread a moment before the worker has processed on_disconnect
            if reason is None:
                suspect = None
            elif suspect != s.gen:
                suspect = s.gen
            else:
                suspect = None
                log.warning("supervisor: rebuilding the MQTT client: %s", reason)
                p._rebuild_reason = reason
                p._wake.set()
            if now - p._worker_beat > max(30.0, 3 * p.puback_timeout_s) and not p._stopped.is_set():
                p._emit("wedged", detail=f"publisher worker has not run for {now - p._worker_beat:.0f} s")
                p._worker_beat = now
