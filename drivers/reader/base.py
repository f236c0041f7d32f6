# The serial-instrument contract: what a dialect hears (Identity, Reading, Fault) and the Session that hears it.
"""A dialect is pure bytes-in, events-out: no port, no thread, no clock of its own (the caller passes
`now`), so every fault is unit-testable by feeding bytes. drivers/reader/reader.py owns the port."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

VERDICTS = ("negative", "positive", "invalid", "suspect")


@dataclass(frozen=True)
class Identity:
    """Who answered: from a gold-csv $GI sentence or a frame-crc8 IDENT reply."""

    model: str
    serial: str
    firmware: str
    raw: bytes = b""


@dataclass(frozen=True)
class Reading:
    """One complete instrument record, exactly as the instrument reported it, with its raw bytes."""

    record: int  # the instrument's record number (编号)
    raw: bytes  # exact bytes of the sentence, frame or report: the evidence
    verdict: str  # one of VERDICTS; a record without a readable verdict is a Fault, never a Reading
    item: str | None = None  # item code (gold-csv, frame-crc8); enzyme-print has none
    sample_id: str | None = None
    sample_name: str | None = None  # 样品
    channel: int | None = None
    tc_ratio: float | None = None
    t_signal: float | None = None
    c_signal: float | None = None
    inhibition_pct: float | None = None
    reported_at: str | None = None  # the instrument's clock as sent; never trusted
    stamp: str = ""  # extra part of the duplicate key: enzyme-print's 检测时间 ("print again" repeats both)
    extra: dict = field(default_factory=dict)  # unknown fields, kept as sent


@dataclass(frozen=True)
class Fault:
    """Not a result: corrupt framing, an incomplete report, an unreadable verdict, a device error report.

    kind is one of: corrupt (checksum/CRC/framing), incomplete (report cut or missing a required
    field), unreadable (complete but its verdict or numbers cannot be read), device (the instrument
    says it is faulty), garbage (bytes outside any sentence, counted not kept whole).
    """

    kind: str
    message: str
    raw: bytes = b""
    size: int = 0  # garbage: how many bytes were dropped (they are counted, not kept)
    count: int = 1  # corrupt: how many units this one stands for (a noisy read is summed, not posted each)


@dataclass(frozen=True)
class Link:
    """The reader thread's port state changed: connected (port opened) or not, and why."""

    connected: bool
    detail: str


@dataclass(frozen=True)
class Status:
    """The instrument's own state line (READY, BUSY, END of replay …): logged, not kept."""

    text: str


Heard = Identity | Reading | Fault | Status


class Session(Protocol):
    """One connection's conversation. Created afresh on every (re)connect with the last stored record."""

    def start(self, now: float) -> bytes:
        """Bytes to send right after the port opens (identity and replay requests), b"" for one-way links."""

    def feed(self, data: bytes, now: float) -> list[Heard]:
        """Bytes just read; returns what they completed. Never raises on garbage; memory stays bounded."""

    def tick(self, now: float) -> bytes:
        """Called often; bytes to send now (polls, retries after a silent reader)."""

    def identified(self, ident: Identity, last_record: int | None) -> bytes:
        """The reader knows who answered and the last record stored from it: bytes that resume from there."""


class Reader(Protocol):
    """One instrument's connection (drivers/reader/reader.py): a thread that only posts what it hears."""

    name: str

    def start(self) -> None: ...

    def close(self, timeout: float = 2.0) -> None: ...


class Dialect(Protocol):
    name: str
    baud: int  # the sheet's default
    two_way: bool  # False: the instrument never reads (a one-way printer stream)

    def session(self, last_record: int | None) -> Session: ...
