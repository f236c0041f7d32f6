# What the town sends the publisher: signed acks (checked against the journal), resend and update orders; trusted
# time. A verified plan or roster goes to the loop as an events.Order (the loop owns what the station works to).
#
# Threads
#   worker  TownReplies and TrustedTime.saw_ack: acks and commands arrive through the worker's inbox.
#   any     TrustedTime.now (Publisher.trusted_now): reads one tuple the worker replaces whole.
from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from station.errors import Refused, StationError
from station.events import Order
from station.protocol.messages import Ack, OrderCommand, ack_time_unix, verify_ack, verify_command, verify_update
from station.protocol.signing import unverified_payload
from station.publisher.checkpoints import Checkpoints
from station.publisher.session import Emit, Session

if TYPE_CHECKING:
    from station.journal import Journal

log = logging.getLogger("station.publisher")


class TrustedTime:
    """Unix time we can trust: the synced station clock, else town ack time + monotonic, else None."""

    def __init__(self, synced: Callable[[], bool | None]) -> None:
        self._synced = synced
        self._town_time: tuple[float, float] | None = None   # (town unix time from ack, monotonic then)

    def saw_ack(self, ack: Ack) -> None:
        t = ack_time_unix(ack)
        if t is not None and (self._town_time is None or t > self._town_time[0]):
            self._town_time = (t, time.monotonic())

    def now(self) -> float | None:
        if self._synced():
            return time.time()
        if self._town_time is not None:
            return self._town_time[0] + (time.monotonic() - self._town_time[1])
        return None


class TownReplies:
    """Runs on the publisher's worker (it owns the journal connection)."""

    def __init__(self, journal: Journal, town_key: Ed25519PublicKey | None, station_path: str, *,
                 clock: TrustedTime, checkpoints: Checkpoints, refresh_stats: Callable[[], None],
                 emit: Emit) -> None:
        self.journal = journal
        self.town_key = town_key
        self.station_path = station_path
        self._clock = clock
        self._checkpoints = checkpoints
        self._refresh_stats = refresh_stats
        self._emit = emit

    def ack(self, payload: bytes) -> None:
        try:
            ack = verify_ack(payload, self.town_key, self.station_path)
        except Refused as r:
            self._emit("refused", detail=str(r))
            return
        entry = self.journal.get(ack.acked_seq)
        if entry is None:
            last = self.journal.stats().last_seq
            log.error("TOWN ACK BEYOND JOURNAL: town acked seq %d but this journal ends at %d", ack.acked_seq, last)
            self._emit("refused", ack.acked_seq, f"ack refused: town acked seq {ack.acked_seq} but the journal "
                       f"ends at {last} (journal replaced or town confused)")
            return
        if entry.msg_hash != ack.head:
            log.error("TOWN ACK HEAD MISMATCH at seq %d: town stored %s, journal has %s", ack.acked_seq,
                      ack.head, entry.msg_hash)
            self._emit("refused", ack.acked_seq, f"ack refused: head mismatch at seq {ack.acked_seq}: town has "
                       f"{ack.head[:16]}…, journal has {entry.msg_hash[:16]}…")
            return
        self._clock.saw_ack(ack)
        try:
            advanced = self.journal.mark_acked(ack.acked_seq, payload)
        except StationError as exc:
            self._emit("refused", ack.acked_seq, f"ack refused: {exc}")
            return
        if advanced:
            self._refresh_stats()
            self._emit("acked", ack.acked_seq)
        if ack.checkpoint is not None:
            self._checkpoints.countersigned(ack)

    def command(self, s: Session, payload: bytes) -> None:
        """A verified resend command queues its range on the session (even for results already acked)."""
        now = self._clock.now()

        def remember(nonce: str, expires: int) -> bool:
            at = now if now is not None else min(time.time(), expires - 1)
            return self.journal.remember_nonce(nonce, expires, now=at)

        if _cmd_name(payload) == "update":
            # The loop carries it out (station/host/update_order.py): the verified fields travel as JSON in the note.
            try:
                up = verify_update(payload, self.town_key, self.station_path, now=now, remember_nonce=remember)
            except Refused as r:
                self._emit("refused", detail=str(r))
                return
            self._emit("update", detail=json.dumps(up.__dict__, sort_keys=True))
            return
        try:
            cmd = verify_command(payload, self.town_key, self.station_path, now=now, remember_nonce=remember)
        except Refused as r:
            self._emit("refused", detail=str(r))
            return
        if isinstance(cmd, OrderCommand):
            what = f"{cmd.cmd} {cmd.body.get('plan_id') or cmd.body.get('roster_id')} v{cmd.body['version']}"
            self._emit("order", detail=f"{what} verified; handed to the station loop",
                       order=Order(cmd.cmd, cmd.body, cmd.message))
            return
        last = self.journal.stats().last_seq
        to = min(cmd.to_seq, last)
        if cmd.from_seq > to:
            self._emit("refused", detail=f"command refused: resend {cmd.from_seq}..{cmd.to_seq} "
                       f"but the journal ends at {last}")
            return
        s.resend.append((cmd.from_seq, to))
        note = "" if cmd.expiry_checked else " (expiry unchecked: clock not synchronised, no town time yet)"
        self._emit("command", detail=f"resend {cmd.from_seq}..{to}{note}")


def _cmd_name(payload: bytes) -> object:
    """Only to pick the validator; each validator checks the signature before trusting anything."""
    try:
        return unverified_payload(payload).get("cmd")
    except (StationError, AttributeError):
        return None
