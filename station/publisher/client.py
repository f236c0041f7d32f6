# Station-side MQTT publisher: the journal is the outbox; the town's signed ack is the only "done".
#
# Threads
#   caller      (the daemon loop, tests)   Publisher(...), start, notify, update_status, state, trusted_now,
#                                          stop: each only sets a flag or reads a snapshot, never the client.
#   worker      ("publisher")              worker.Worker.run: owns the Journal connection and the paho
#                                          client's lifecycle: connect, subscribe, status, drain, acks,
#                                          commands, checkpoints.
#   paho        (loop_start, per client)   network I/O only; its callbacks post to the worker's inbox.
#   supervisor  ("publisher-supervisor")   reads the worker's health snapshot; asks the worker to tear
#                                          down and rebuild a wedged client.
#
# Why loop_start() with a fresh client per connection (reconnect_on_failure=False): paho's threaded
# mode makes publish() from the worker thread safe (it wakes the network thread through its socket
# pair), while giving each connection its own client means paho's in-RAM retry queue is never
# replayed (the journal is replayed instead, in seq order), message ids start fresh, and a network
# thread that dies or wedges after a long outage is simply abandoned and replaced.
#
# Modules: this one (the API); settings (what the publisher is told); worker (the worker thread:
# sessions, inbox, connection lifecycle, shutdown); session (one connection's client and state);
# drain (results to the broker in seq order, PUBACKs); from_town (town acks and commands, trusted
# time); checkpoints; status (retained status, last will); reports (events, state, health);
# supervisor (the watchdog thread).
from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from station.protocol.mqtt import parse_broker_url, tls_context
from station.protocol.signing import load_jwk_file, load_private_key
from station.publisher.reports import PublisherEvent, PublisherState
from station.publisher.settings import PublisherSettings
from station.publisher.supervisor import Supervisor
from station.publisher.worker import Worker


class Publisher:
    """The thread-safe face of the publisher. Configuration errors (a bad URL, a missing TLS file or town
    key) are raised here, in the caller's thread, not later in a background thread."""

    def __init__(self, settings: PublisherSettings, signing_key: Ed25519PrivateKey | str | Path,
                 on_event: Callable[[PublisherEvent], None] | None = None, *,
                 clock_synced: Callable[[], bool] | None = None) -> None:
        self.settings = settings
        broker = settings.broker
        addr = parse_broker_url(broker.url)
        if addr.tls:   # name a missing CA/cert/key now, not in a background thread
            tls_context(addr, broker.ca_file or None, broker.cert_file or None, broker.key_file or None)
        key = signing_key if isinstance(signing_key, Ed25519PrivateKey) else load_private_key(signing_key)
        town_key: Ed25519PublicKey | None = None
        if settings.town_key_path:
            _, town_key = load_jwk_file(settings.town_key_path)
        self._worker = Worker(settings, addr, key, town_key, on_event, clock_synced)
        self._worker_thread = threading.Thread(target=self._worker.run, name="publisher", daemon=True)
        self._supervisor = threading.Thread(target=Supervisor(self._worker, settings).run,
                                            name="publisher-supervisor", daemon=True)

    def start(self) -> None:
        self._worker_thread.start()
        self._supervisor.start()

    def notify(self) -> None:
        """A new entry was committed to the journal: wake the drain (positives go first)."""
        self._worker.notify()

    def update_status(self, **fields: Any) -> None:
        """Extra fields for the retained status message. `state` (the daemon's activity) is published as
        `activity`, because `state` in the status message is online/offline."""
        self._worker.update_status(fields)

    @property
    def state(self) -> PublisherState:
        return self._worker.state()

    def stop(self, timeout: float = 5.0) -> None:
        """Publish the retained offline status, disconnect cleanly (no last will), stop the threads."""
        self._worker.stop(timeout)
        self._worker_thread.join(timeout)
        self._supervisor.join(1.0)

    def trusted_now(self) -> float | None:
        """Unix time we can trust: the synced station clock, else town ack time + monotonic, else None."""
        return self._worker.trusted_now()
