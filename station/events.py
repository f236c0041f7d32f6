# Typed events that edge threads post to the loop, and the states the station loop moves through.
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

Reply = Callable[[dict], None]


class StationState(StrEnum):
    """What the loop is doing; the string is what `station status` and the town's status topic show."""

    STARTING = "starting"
    IDLE = "idle"
    WORKING = "working"


@dataclass(frozen=True)
class Press:
    """The button, or `station press` through the control socket: lay a sample and read it."""

    origin: str  # "button" or "socket"
    sample: str | None = None
    strip_type: str | None = None
    task: str | None = None  # the plan task the operator named (`station press --task`)
    product: str | None = None  # the product sampled, as the plan names it
    reply: Reply | None = None  # the outcome: results, or why the press was not taken
    started: Reply | None = None  # told once the loop has taken the press (`station press --no-wait`)
    qc: str | None = None  # "negative" | "positive": a daily control card, not a sample (`station qc`)
    retest_of: str | None = None  # the result id this press re-tests (`station press --retest-of`)
    slot: int | None = None  # the tray slot laid (`--slot`); None: the one slot, or find the one just laid


@dataclass(frozen=True)
class Scored:
    """A worker finished photographing and reading the tray (or failed to, with `error`)."""

    job: Any  # workflow.job.Job
    frame: Any = None  # drivers.camera.Frame
    score: Any = None  # assay.scores.ImageScore, decided
    error: Exception | None = None
    taken_at: float | None = None  # monotonic time of the photograph, for the strip type's read window


@dataclass(frozen=True)
class PublisherNote:
    """Something the publisher thread wants the loop to know (connected, acked, quarantined …)."""

    event: Any


@dataclass(frozen=True)
class StatusRequest:
    """A control-socket thread asks for the status; the loop answers through `reply`."""

    reply: Reply


@dataclass(frozen=True)
class Instrument:
    """A serial reader thread heard something from instrument `name` (a Reading, Fault, Identity, Link …)."""

    name: str
    heard: Any  # drivers.reader.base.Heard | Link


@dataclass(frozen=True)
class Scanned:
    """A barcode/QR scanner thread read one code (a sample sheet or a producer's information card)."""

    code: str
    device: str = ""  # the scanner it came from, for logs and errors


@dataclass(frozen=True)
class Order:
    """A town-signed order the publisher verified (signature, expiry, nonce); the loop applies it."""

    kind: str  # "plan" | "roster"
    body: dict
    message: bytes = b""  # the signed command as received, kept with what it set


@dataclass(frozen=True)
class Stop:
    """SIGTERM/SIGINT: stop between events, never inside one."""


Event = Press | Scored | PublisherNote | StatusRequest | Instrument | Scanned | Order | Stop
