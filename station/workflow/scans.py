# Scanned codes waiting for the next slot laid: a sample sheet's code becomes sample.id, a producer's
# information card (主体信息卡, matched by the configured patterns) becomes sample.producer.
from __future__ import annotations

import logging
from dataclasses import dataclass

from station.scans import accept_scan

log = logging.getLogger("station.app")


@dataclass
class Attached:
    sample: str | None
    producer: str | None


class Scans:
    """Holds at most one waiting sample code and one waiting producer code; a second scan of the same kind
    replaces the first (the operator scanned the wrong sheet and scanned again)."""

    def __init__(self, producer_patterns: tuple[str, ...] | list[str] = ()):
        self.patterns = tuple(producer_patterns)
        self.sample: str | None = None
        self.producer: str | None = None

    def add(self, code: str, device: str = "") -> str | None:
        """Keep a scanned code for the next slot; returns why it was refused, or None."""
        taken = accept_scan(code.strip(), self.patterns)
        if isinstance(taken, str):
            return f"scanned code from {device or 'the scanner'} refused: {taken}"
        kind, value = taken
        was = getattr(self, kind)
        setattr(self, kind, value)
        if was and was != value:
            log.warning("scanned %s %r replaces %r, which was not yet laid", kind, value, was)
        log.info("scanned %s %r: waiting for the next slot laid", kind, value)
        return None

    def take(self, sample: str | None) -> Attached:
        """What the next laid slot gets: the operator's own --sample wins over a scanned one, which then keeps
        waiting; a scanned producer goes with it either way."""
        got = Attached(sample or self.sample, self.producer)
        if not sample:
            self.sample = None
        self.producer = None
        return got

    def give_back(self, scanned: dict[str, str]) -> None:
        """A press that recorded nothing returns its scans, unless the operator has scanned another since."""
        for kind, value in scanned.items():
            if getattr(self, kind) is None:
                setattr(self, kind, value)

    def waiting(self) -> dict:
        return {"sample": self.sample, "producer": self.producer}
