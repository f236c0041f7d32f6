# What the publisher reports: events to the loop, its state to any caller, its health to the supervisor.
#
# Threads: none of its own; frozen values the worker builds and hands to the loop, callers and supervisor.
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class PublisherEvent:
    """kind: connected | disconnected | unreachable | acked | refused | quarantined | rebuilt | command | order
    | wedged. An order event carries the verified events.Order for the loop to apply."""

    kind: str
    seq: int | None = None
    detail: str = ""
    order: Any = field(default=None, repr=False, compare=False)

    def __str__(self) -> str:
        return f"{self.kind}{'' if self.seq is None else f' #{self.seq}'}{f': {self.detail}' if self.detail else ''}"


@dataclass(frozen=True)
class PublisherState:
    connected: bool = False
    inflight: int = 0
    last_puback_age: float | None = None
    oldest_inflight_age: float | None = None
    sent_this_connection: int = 0
    acked_seq: int = 0
    last_seq: int = 0
    rebuilds: int = 0
    connects: int = 0
    last_error: str = ""


@dataclass(frozen=True)
class Health:
    """What the supervisor judges the worker by, taken at one moment (ages in monotonic seconds)."""

    gen: int | None = None                        # the current session's generation; None = no session
    connected: bool = False
    thread_alive: bool = False                    # the session's paho network thread
    inflight: int = 0
    oldest_inflight_age_s: float | None = None
    last_puback_age_s: float | None = None        # any session's: PUBACKs are stamped on the paho thread
    connecting_for_s: float | None = None         # since connect_async, until CONNACK
    worker_idle_s: float = 0.0                    # since the worker last began a step
    rebuild_pending: bool = False
    stopped: bool = False                         # the worker thread has ended
