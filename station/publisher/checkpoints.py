# Station checkpoints: sign the journal head every so often, keep the town's countersignature when it comes.
#
# Threads
#   worker  everything here: checkpoints use the worker's journal connection.
from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from station.errors import StationError
from station.protocol.messages import Ack, build_checkpoint, sha256_hex
from station.publisher.session import Emit

if TYPE_CHECKING:
    from station.journal import Journal


class Checkpoints:
    """Runs on the publisher's worker (it owns the journal connection)."""

    def __init__(self, journal: Journal, key: Ed25519PrivateKey, kid: str, station_path: str, *, every: int,
                 interval_s: float, boot: Callable[[], Any], emit: Emit) -> None:
        self.journal = journal
        self.key, self.kid, self.station_path = key, kid, station_path
        self.every, self.interval_s = every, interval_s
        self._boot = boot
        self._emit = emit
        self._cp_seq: int | None = None
        self._last_t = time.monotonic()

    def due(self, last: int) -> bytes | None:
        """Sign and store a checkpoint of seq `last` if one is due; returns the message to publish."""
        if last <= 0:
            return None
        cached = self._cp_seq
        if cached is None:
            cp = self.journal.latest_checkpoint()
            cached = self._cp_seq = cp.seq if cp else 0
        if last <= cached:
            return None
        due = last - cached >= self.every or time.monotonic() - self._last_t >= self.interval_s
        if not due:
            return None
        e = self.journal.get(last)
        if e is None:
            return None
        boot = self._boot()
        boot = boot.get("counter") if isinstance(boot, dict) else boot
        msg = build_checkpoint(self.key, self.kid, self.station_path, last, e.msg_hash, boot)
        self.journal.add_checkpoint(last, e.msg_hash, msg)
        self._cp_seq = last
        self._last_t = time.monotonic()
        return msg

    def uncountersigned(self) -> bytes | None:
        """The latest checkpoint if the town has not countersigned it yet (published again on connect)."""
        cp = self.journal.latest_checkpoint()
        return cp.station_jws if cp is not None and cp.town_jws is None else None

    def countersigned(self, ack: Ack) -> None:
        """Keep the countersignature an ack carries for our latest checkpoint; refuse one that does not match."""
        cp: dict = ack.checkpoint  # type: ignore[assignment]
        mine = self.journal.latest_checkpoint()
        if mine is None or mine.seq != cp["seq"]:
            return   # an older checkpoint (already countersigned) or not ours yet: nothing to store
        if mine.head != cp["head"] or sha256_hex(mine.station_jws) != cp["jws_sha256"]:
            self._emit("refused", cp["seq"], "checkpoint countersignature does not match the station checkpoint")
            return
        if mine.town_jws is None:
            try:
                self.journal.countersign_checkpoint(cp["seq"], ack.message)
            except StationError as exc:
                self._emit("refused", cp["seq"], f"checkpoint countersignature: {exc}")
