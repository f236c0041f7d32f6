# The drain: send the journal to the broker in seq order over one session, and record what the broker PUBACKed.
#
# Threads
#   worker  everything here: the drain uses the worker's journal connection.
from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from station.protocol.messages import build_withheld
from station.publisher.session import Emit, Session

if TYPE_CHECKING:
    from station.journal import Entry, Journal
    from station.publisher.reports import PublisherState

log = logging.getLogger("station.publisher")


class Drain:
    """Runs on the publisher's worker (it owns the journal connection). Order of sending: new positives,
    town resend commands, then everything unacked in seq order within the window and max_ahead."""

    def __init__(self, journal: Journal, key: Ed25519PrivateKey, kid: str, station_path: str, t_result: str, *,
                 window: int, max_ahead: int | None, ack_stall_s: float, state: Callable[[], PublisherState],
                 refresh_stats: Callable[[], None], take_notified: Callable[[], bool], emit: Emit) -> None:
        self.journal = journal
        self.key, self.kid, self.station_path = key, kid, station_path
        self.t_result = t_result
        self.window = window
        self.max_ahead = max_ahead
        self.ack_stall_s = ack_stall_s
        self._state = state
        self._refresh_stats = refresh_stats
        self._take_notified = take_notified
        self._emit = emit
        self._stall: tuple[int, float] | None = None
        self._pending_published: list[int] = []

    # ------------------------------------------------------------------ sending

    def send_entry(self, s: Session, e: Entry) -> bool:
        if len(e.message) > s.cap:
            self.quarantine(s, e.seq, f"message of {len(e.message)} bytes exceeds the {s.cap}-byte cap", e)
            return True
        if not s.publish(self.t_result, e.message, e.seq):
            return False
        s.sent.add(e.seq)
        return True

    def quarantine(self, s: Session, seq: int, reason: str, entry: Entry | None = None) -> None:
        self.journal.quarantine(seq, reason)
        s.sent.add(seq)
        self._emit("quarantined", seq, reason)
        e = entry or self.journal.get(seq)
        if e is not None:
            self.send_withheld(s, e, reason)

    def send_withheld(self, s: Session, e: Entry, reason: str) -> None:
        notice = build_withheld(self.key, self.kid, self.station_path, e.seq, e.msg_hash, len(e.message),
                                reason[:200])
        s.publish(self.t_result, notice, -1)

    def resend_withheld(self, s: Session) -> None:
        """On connect: a withheld notice again for each quarantined result the town has not acknowledged."""
        acked = self.journal.acked_seq()
        for e in self.journal.quarantined():
            if e.seq > acked:
                self.send_withheld(s, e, e.quarantined or "quarantined")

    def run(self, s: Session) -> None:
        if time.monotonic() < s.drain_after:
            return
        acked = self._state().acked_seq
        # 1. positives first: a new positive never waits behind a backlog (may exceed the window)
        if self._take_notified():
            self._refresh_stats()
            for e in self.journal.unacked_positives(limit=self.window):
                if e.seq not in s.sent and e.seq > acked:
                    if not self.send_entry(s, e):
                        return
        # 2. town resend commands (even for results already acked)
        while s.resend and len(s.inflight) < self.window:
            first, last = s.resend[0]
            e = self.journal.get(first)
            if first >= last:
                s.resend.popleft()
            else:
                s.resend[0] = (first + 1, last)
            if e is None:
                continue
            if e.quarantined:
                self.send_withheld(s, e, e.quarantined)
            elif not self.send_entry(s, e):
                return
        # 3. everything unacked, in seq order, a bounded window at a time, at most max_ahead beyond the ack
        limit = acked + self.max_ahead if self.max_ahead else None
        while len(s.inflight) < self.window:
            if not s.page:
                s.page.extend(self.journal.unacked(after_seq=s.cursor, limit=500))
                if not s.page:
                    # all sent; if the town's ack stays short of our last seq, it lost the tail: resend it
                    if self.max_ahead and self._state().last_seq > acked and not s.inflight:
                        self._ack_stall(s, acked)
                    else:
                        self._stall = None
                    return
            e = s.page[0]
            if limit is not None and e.seq > limit:
                self._ack_stall(s, acked)
                return
            if e.seq not in s.sent and e.seq > self._state().acked_seq:
                if not self.send_entry(s, e):
                    return
            s.page.popleft()
            s.cursor = e.seq

    def _ack_stall(self, s: Session, acked: int) -> None:
        """Waiting for the town's ack to open the window. If it does not move for ack_stall_s, the town lost
        something (broker queue overflow, town restart): rewind and resend from the first unacked seq."""
        now = time.monotonic()
        if self._stall is None or self._stall[0] != acked:
            self._stall = (acked, now)
            return
        if now - self._stall[1] >= self.ack_stall_s:
            log.warning("no town ack beyond seq %d for %.0f s: resending from seq %d", acked, now - self._stall[1],
                        acked + 1)
            s.sent.clear()
            s.page.clear()
            s.cursor = acked
            self._stall = (acked, now)

    # ------------------------------------------------------------------ PUBACKs

    def on_puback(self, s: Session, mid: int, reason_code: Any) -> None:
        item = s.inflight.pop(mid, None)
        if item is None:
            return
        seq, _ = item
        if seq < 0:
            return
        if reason_code.is_failure:
            if reason_code.value == 0x95:   # packet too large
                self.quarantine(s, seq, f"broker refused as too large: {reason_code}")
            else:
                self._emit("refused", seq, f"broker refused result #{seq}: {reason_code} (will retry on reconnect)")
            return
        self._pending_published.append(seq)

    def flush_published(self) -> None:
        if self._pending_published:
            seqs, self._pending_published = self._pending_published, []
            self.journal.mark_published(seqs)

    def forget_published(self) -> None:
        """Drop the PUBACKs not yet written to the journal (after a worker error, before the teardown)."""
        self._pending_published.clear()
