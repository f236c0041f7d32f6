# The station's retained status message and last will: fields, payload, and when the next one is due.
#
# Threads
#   any     StatusReport.update and get (Publisher.update_status): under the report's lock.
#   worker  the rest: payload, will, due, published.
from __future__ import annotations

import json
import shutil
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from station import __version__
from station.errors import StationError
from station.protocol.wire import now_rfc3339

if TYPE_CHECKING:
    from station.journal import Journal
    from station.publisher.reports import PublisherState


def disk_usage(directory: Path) -> dict | None:
    try:
        u = shutil.disk_usage(directory)
    except OSError:
        return None
    return {"free_mb": u.free // 2**20, "used_pct": round(100.0 * u.used / u.total, 1) if u.total else None}


def journal_fields(journal: Journal) -> dict[str, Any]:
    """The outbox as the journal counts it, or nothing if the journal cannot say (the status goes out anyway)."""
    try:
        st = journal.stats()
    except StationError:
        return {}
    return {"outbox": st.unacked, "quarantined": st.quarantined, "positives_unacked": st.positives_unacked}


class StatusReport:
    """What the town sees on the retained status topic. update() may be called from any thread; the rest
    runs on the publisher's worker."""

    def __init__(self, station_path: str, disk_dir: Path, boot: Any, clock_synced: Callable[[], bool] | None,
                 interval_s: float) -> None:
        self.station_path = station_path
        self.disk_dir = disk_dir
        self.boot = boot
        self.interval_s = interval_s
        self._clock_synced = clock_synced
        self._lock = threading.Lock()
        self._extra: dict[str, Any] = {}
        self.dirty = True
        self.next_due = 0.0
        self.last_published = 0.0

    def update(self, fields: dict[str, Any]) -> None:
        """`state` (the daemon's activity) is published as `activity`, because `state` in the status message
        is online/offline."""
        with self._lock:
            for k, v in fields.items():
                self._extra["activity" if k == "state" else k] = v
            self.dirty = True

    def get(self, name: str, default: Any = None) -> Any:
        with self._lock:
            return self._extra.get(name, default)

    def synced(self) -> bool | None:
        if self._clock_synced is not None:
            try:
                return bool(self._clock_synced())
            except StationError:
                return None  # e.g. a bad $STATION_CLOCK_SYNCED: the status says "unknown" rather than guess
        return self._extra.get("clock_synced")

    def payload(self, state: str, st: PublisherState, **more: Any) -> dict:
        with self._lock:
            extra = dict(self._extra)
        p = {
            "v": 1, "state": state, "station": self.station_path, "outbox": max(0, st.last_seq - st.acked_seq),
            "last_seq": st.last_seq, "acked_seq": st.acked_seq, "disk": disk_usage(self.disk_dir),
            "clock_synced": self.synced(), "boot": self.boot, "time": now_rfc3339(), "version": __version__,
        }
        p.update(extra)
        p["state"] = state
        p.update(more)
        return p

    def will(self, st: PublisherState) -> bytes:
        """The offline status the broker publishes for us if the connection is lost."""
        return json.dumps(self.payload("offline", st, reason="connection lost (last will)"),
                          separators=(",", ":")).encode()

    def message(self, state: str, st: PublisherState, **more: Any) -> bytes:
        return json.dumps(self.payload(state, st, **more), separators=(",", ":"), default=str).encode()

    def due(self, now: float) -> bool:
        return now >= self.next_due or (self.dirty and now - self.last_published >= 1.0)

    def published(self, now: float) -> None:
        self.dirty = False
        self.last_published = now
        self.next_due = now + self.interval_s
