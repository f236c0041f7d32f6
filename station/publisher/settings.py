# What the publisher is told: the [broker] table, the station identity, its files and tuning, in one frozen value.
#
# Threads: none of its own; a frozen value, built by the caller and read by every publisher thread.
from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from station.protocol.mqtt import BrokerSettings  # a Protocol, needed for type checking only


class Identity(Protocol):
    station_id: str
    grid: str

    @property
    def path(self) -> str: ...

    @property
    def kid(self) -> str: ...


@dataclass(frozen=True)
class PublisherSettings:
    """Everything the publisher needs that is data; the signing key and the callables (on_event,
    clock_synced) stay separate arguments of Publisher, so a settings value can be logged or compared.

    checkpoint_every and puback_timeout_s of None are derived in __post_init__ (from the broker table
    and its keepalive), so the fields always hold the values in force."""

    broker: BrokerSettings              # [broker], its TLS files already resolved against the station home
    identity: Identity
    journal_path: Path
    town_key_path: Path | None = None   # the town's JWK; None = no acks can be verified (and no flow control)
    boot: Any = None                    # the boot counter the status and checkpoints carry
    max_inflight: int = 100
    checkpoint_every: int | None = None
    checkpoint_interval_s: float = 600.0
    status_interval_s: float = 60.0
    puback_timeout_s: float | None = None
    connect_stuck_s: float = 600.0
    reconnect_max_delay_s: int = 30
    ack_grace_s: float = 0.2
    max_ahead: int | None = 200
    ack_stall_s: float = 20.0

    def __post_init__(self) -> None:
        set_ = object.__setattr__   # frozen: derived values are filled in once, here
        set_(self, "journal_path", Path(self.journal_path))
        if self.town_key_path:
            set_(self, "town_key_path", Path(self.town_key_path))
        else:
            set_(self, "town_key_path", None)
        set_(self, "checkpoint_every",
             self.checkpoint_every or getattr(self.broker, "checkpoint_every", None) or 50)
        if not self.puback_timeout_s:
            set_(self, "puback_timeout_s", max(2.0 * self.keepalive, 10.0))

    @classmethod
    def from_config(cls, broker: BrokerSettings, station: Identity, journal_path: str | Path,
                    town_key_path: str | Path | None = None, *, base_dir: str | Path | None = None,
                    boot: Any = None, **tuning: Any) -> PublisherSettings:
        """From the config's [broker] and [station] tables; relative TLS files are taken from base_dir
        (the station home). `tuning` names the other fields (max_inflight, ack_stall_s, ...)."""
        return cls(broker=resolve_files(broker, base_dir), identity=station, journal_path=Path(journal_path),
                   town_key_path=Path(town_key_path) if town_key_path else None, boot=boot, **tuning)

    @property
    def keepalive(self) -> int:
        return int(getattr(self.broker, "keepalive_s", 30) or 30)

    @property
    def window(self) -> int:
        """PUBACKs outstanding at most (positives may exceed it)."""
        return max(1, self.max_inflight)

    @property
    def ahead_limit(self) -> int | None:
        # Flow control on the town's ack: never run more than max_ahead results beyond what the town has
        # acknowledged. Pushing a backlog into the broker faster than the town stores it only builds a queue
        # at the broker that a new positive would have to wait behind (and that the broker may drop).
        # Without the town's key no ack is ever accepted, so there is nothing to pace on.
        return self.max_ahead if self.town_key_path else None

    @property
    def max_payload(self) -> int:
        return int(getattr(self.broker, "max_payload_bytes", 131072) or 131072)


def resolve_files(broker: Any, base_dir: str | Path | None) -> Any:
    """The broker table with relative ca_file/cert_file/key_file taken from base_dir."""
    if base_dir is None:
        return broker
    changes = {}
    for name in ("ca_file", "cert_file", "key_file"):
        v = getattr(broker, name, None)
        if v and not os.path.isabs(v):
            changes[name] = str(Path(base_dir) / v)
    if not changes:
        return broker
    try:
        return replace(broker, **changes)
    except TypeError:
        for k, v in changes.items():
            setattr(broker, k, v)
        return broker
