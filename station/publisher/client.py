# Station-side MQTT publisher: the journal is the outbox; the town's signed ack is the only "done".
#
# Threads
#   worker      ("publisher")            owns the Journal connection and the paho client's lifecycle:
#                                         connect, subscribe, status, drain, acks, commands, checkpoints.
#   paho        (loop_start, per client)  network I/O only; its callbacks post to the worker's inbox.
#   supervisor  ("publisher-supervisor")  watches connection state and PUBACK ages; asks the worker to
#                                         tear down and rebuild a wedged client.
#
# Why loop_start() with a fresh client per connection (reconnect_on_failure=False): paho's threaded
# mode makes publish() from the worker thread safe (it wakes the network thread through its socket
# pair), while giving each connection its own client means paho's in-RAM retry queue is never
# replayed (the journal is replayed instead, in seq order), message ids start fresh, and a network
# thread that dies or wedges after a long outage is simply abandoned and replaced.
#
# Modules: this one (API, worker loop, connection lifecycle); session (one connection's client
# and state); drain (results to the broker in seq order, PUBACKs); acks (town acks and
# commands, trusted time); checkpoints; status (retained status, last will);
# supervisor (the watchdog thread).
from __future__ import annotations

import collections
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from station.errors import StationError
from station.protocol import topics
from station.protocol.mqtt import make_client, parse_broker_url, tls_context
from station.protocol.signing import load_jwk_file, load_private_key
from station.publisher.acks import TownReplies, TrustedTime
from station.publisher.checkpoints import Checkpoints
from station.publisher.drain import Drain
from station.publisher.session import Session, abandon, attach_callbacks
from station.publisher.status import StatusReport
from station.publisher.supervisor import Supervisor

if TYPE_CHECKING:
    import paho.mqtt.client as mqtt

    from station.journal import Journal

log = logging.getLogger("station.publisher")


class Identity(Protocol):
    station_id: str
    grid: str

    @property
    def path(self) -> str: ...

    @property
    def kid(self) -> str: ...


@dataclass(frozen=True)
class PublisherEvent:
    """kind: connected | disconnected | acked | refused | quarantined | rebuilt | command | wedged."""

    kind: str
    seq: int | None = None
    detail: str = ""

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


class Publisher:
    # opened by the worker thread in _run (the journal connection is the worker's)
    journal: Journal
    _drain: Drain
    _checkpoints: Checkpoints
    _replies: TownReplies

    def __init__(self, broker: Any, identity: Identity, signing_key: Ed25519PrivateKey | str | Path,
                 journal_path: str | Path, town_key_path: str | Path | None = None,
                 on_event: Callable[[PublisherEvent], None] | None = None, *,
                 base_dir: str | Path | None = None,
                 max_inflight: int = 100,
                 checkpoint_every: int | None = None,
                 checkpoint_interval_s: float = 600.0,
                 status_interval_s: float = 60.0,
                 puback_timeout_s: float | None = None,
                 connect_stuck_s: float = 600.0,
                 reconnect_max_delay_s: int = 30,
                 ack_grace_s: float = 0.2,
                 max_ahead: int | None = 200,
                 ack_stall_s: float = 20.0,
                 clock_synced: Callable[[], bool] | None = None,
                 boot: Any = None):
        self.broker = self._resolve_files(broker, base_dir)
        self.addr = parse_broker_url(self.broker.url)
        if self.addr.tls:   # name a missing CA/cert/key now, not in a background thread
            tls_context(self.addr, self.broker.ca_file or None, self.broker.cert_file or None,
                        self.broker.key_file or None)
        self.identity = identity
        self.path = identity.path
        self.key = signing_key if isinstance(signing_key, Ed25519PrivateKey) else load_private_key(signing_key)
        self.journal_path = Path(journal_path)
        self.town_key: Ed25519PublicKey | None = None
        if town_key_path:
            _, self.town_key = load_jwk_file(town_key_path)
        self.on_event = on_event
        self.window = max(1, max_inflight)
        self.checkpoint_every = checkpoint_every or getattr(broker, "checkpoint_every", None) or 50
        self.checkpoint_interval_s = checkpoint_interval_s
        self.status_interval_s = status_interval_s
        keepalive = int(getattr(broker, "keepalive_s", 30) or 30)
        self.keepalive = keepalive
        self.puback_timeout_s = puback_timeout_s or max(2.0 * keepalive, 10.0)
        self.connect_stuck_s = connect_stuck_s
        self.reconnect_max_delay_s = reconnect_max_delay_s
        self.ack_grace_s = ack_grace_s
        # Flow control on the town's ack: never run more than max_ahead results beyond what the town has
        # acknowledged. Pushing a backlog into the broker faster than the town stores it only builds a queue
        # at the broker that a new positive would have to wait behind (and that the broker may drop).
        self.max_ahead = max_ahead if town_key_path else None
        self.ack_stall_s = ack_stall_s
        self.max_payload = int(getattr(broker, "max_payload_bytes", 131072) or 131072)
        self.boot = boot
        grid, sid = identity.grid, identity.station_id
        self.t_result = topics.topic(grid, sid, "result")
        self.t_status = topics.topic(grid, sid, "status")
        self.t_ack = topics.topic(grid, sid, "ack")
        self.t_cmd = topics.topic(grid, sid, "cmd")
        self.t_checkpoint = topics.topic(grid, sid, "checkpoint")
        self.client_id = f"nongan-{self.path.replace('/', '-')}"[:64]

        self._inbox: collections.deque = collections.deque()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._stopped = threading.Event()
        self._lock = threading.Lock()
        self._status = StatusReport(self.path, self.journal_path.parent, boot, clock_synced, status_interval_s)
        self._time = TrustedTime(self._status.synced)
        self._notified = True
        self._rebuild_reason: str | None = None
        self._gen = 0
        self._session: Session | None = None
        self._state = PublisherState()
        self._last_puback_t: float | None = None
        self._oldest_inflight_t: float | None = None
        self._worker_beat = time.monotonic()
        self._connecting_since: float | None = None
        self._worker = threading.Thread(target=self._run, name="publisher", daemon=True)
        self._supervisor = threading.Thread(target=Supervisor(self).run, name="publisher-supervisor", daemon=True)

    @staticmethod
    def _resolve_files(broker: Any, base_dir: str | Path | None) -> Any:
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

    # ------------------------------------------------------------------ API (any thread)

    def start(self) -> None:
        self._worker.start()
        self._supervisor.start()

    def notify(self) -> None:
        """A new entry was committed to the journal: wake the drain (positives go first)."""
        self._notified = True
        self._wake.set()

    def update_status(self, **fields: Any) -> None:
        """Extra fields for the retained status message. `state` (the daemon's activity) is published as
        `activity`, because `state` in the status message is online/offline."""
        self._status.update(fields)
        self._wake.set()

    @property
    def state(self) -> PublisherState:
        with self._lock:
            st = self._state
        now = time.monotonic()
        return replace(
            st,
            last_puback_age=None if self._last_puback_t is None else now - self._last_puback_t,
            oldest_inflight_age=None if self._oldest_inflight_t is None else now - self._oldest_inflight_t,
        )

    def stop(self, timeout: float = 5.0) -> None:
        """Publish the retained offline status, disconnect cleanly (no last will), stop the threads."""
        self._stop_timeout = timeout
        self._stop.set()
        self._wake.set()
        self._worker.join(timeout)
        self._supervisor.join(1.0)

    def trusted_now(self) -> float | None:
        """Unix time we can trust: the synced station clock, else town ack time + monotonic, else None."""
        return self._time.now()

    # ------------------------------------------------------------------ events

    def _emit(self, kind: str, seq: int | None = None, detail: str = "") -> None:
        ev = PublisherEvent(kind, seq, detail)
        level = logging.WARNING if kind in ("refused", "quarantined", "rebuilt", "wedged", "disconnected") \
            else logging.DEBUG if kind == "acked" else logging.INFO
        log.log(level, "%s", ev)
        if self.on_event is not None:
            try:
                self.on_event(ev)
            except Exception:  # the daemon's callback must only post; never let it kill the worker
                log.exception("on_event callback failed")

    def _set_state(self, **kw: Any) -> None:
        with self._lock:
            self._state = replace(self._state, **kw)

    # ------------------------------------------------------------------ worker

    def _run(self) -> None:
        from station.journal import Journal

        try:
            self.journal = Journal(self.journal_path)
        except StationError as exc:
            self._set_state(last_error=str(exc))
            self._emit("wedged", detail=f"publisher cannot open the journal: {exc}")
            self._stopped.set()
            return
        self._checkpoints = Checkpoints(
            self.journal, self.key, self.identity.kid, self.path, every=self.checkpoint_every,
            interval_s=self.checkpoint_interval_s, boot=lambda: self._status.get("boot", self.boot), emit=self._emit)
        self._replies = TownReplies(self.journal, self.town_key, self.path, clock=self._time,
                                    checkpoints=self._checkpoints, refresh_stats=self._refresh_stats, emit=self._emit)
        self._drain = Drain(
            self.journal, self.key, self.identity.kid, self.path, self.t_result, window=self.window,
            max_ahead=self.max_ahead, ack_stall_s=self.ack_stall_s, state=lambda: self._state,
            refresh_stats=self._refresh_stats, take_notified=self._take_notified, emit=self._emit)
        self._next_client_at = 0.0
        try:
            while not self._stop.is_set():
                try:
                    self._step()
                except Exception as exc:   # never die: report, drop the connection, retry from the journal
                    log.exception("publisher worker error")
                    self._set_state(last_error=f"worker error: {exc}")
                    self._emit("wedged", detail=f"publisher worker error (retrying in 1 s): {exc}")
                    self._drain.forget_published()
                    try:
                        self._teardown(f"worker error: {exc}")
                    except Exception:
                        self._session = None
                    self._stop.wait(1.0)
            self._shutdown()
        finally:
            self._stopped.set()
            self.journal.close()

    def _step(self) -> None:
        self._worker_beat = time.monotonic()
        self._wake.clear()
        if self._state.last_seq == 0 and self._state.acked_seq == 0:
            self._refresh_stats()
        if self._session is None and time.monotonic() >= self._next_client_at:
            self._new_session()
        self._process_inbox()
        if self._rebuild_reason is not None:
            reason, self._rebuild_reason = self._rebuild_reason, None
            self._teardown(reason)
            self._set_state(rebuilds=self._state.rebuilds + 1)
            self._emit("rebuilt", detail=reason)
        s = self._session
        if s is not None and s.connected:
            self._drain.run(s)
            self._maybe_checkpoint(s)
            self._maybe_status(s)
        self._drain.flush_published()
        self._update_shared()
        if not self._inbox:
            self._wake.wait(self._idle_timeout())

    def _idle_timeout(self) -> float:
        s = self._session
        if s is not None and s.connected and s.drain_after != float("inf") and time.monotonic() < s.drain_after:
            return max(0.01, s.drain_after - time.monotonic())
        if self._session is None:
            return max(0.01, min(1.0, self._next_client_at - time.monotonic()))
        return 0.5

    def _take_notified(self) -> bool:
        """Consume the notify() flag: True if entries were committed since (the drain sends new positives first)."""
        if self._notified:
            self._notified = False
            return True
        return False

    def _refresh_stats(self) -> None:
        st = self.journal.stats()
        if st.last_seq != self._state.last_seq or st.acked_seq != self._state.acked_seq:
            self._status.dirty = True
        self._set_state(last_seq=st.last_seq, acked_seq=st.acked_seq)

    # ------------------------------------------------------------------ connection lifecycle

    def _new_session(self) -> None:
        self._gen += 1
        will = self._status.will(self._state)
        try:
            client, _ = make_client(self.broker, self.client_id, will=(self.t_status, will),
                                    max_inflight=self.window + 50)
        except StationError as exc:
            self._set_state(last_error=str(exc))
            self._emit("refused", detail=str(exc))
            self._next_client_at = time.monotonic() + 30
            return
        client.reconnect_delay_set(1, self.reconnect_max_delay_s)
        s = Session(self._gen, client)
        self._callbacks(client, s.gen)
        client.connect_async(self.addr.host, self.addr.port, keepalive=self.keepalive, clean_start=True)
        client.loop_start()
        s.thread = client._thread   # paho sets this to None when the thread ends; keep our own handle
        self._session = s
        self._connecting_since = time.monotonic()

    def _callbacks(self, client: mqtt.Client, gen: int) -> None:
        def post(*item: Any) -> None:
            self._inbox.append((gen, *item))
            self._wake.set()

        def puback_seen() -> None:
            self._last_puback_t = time.monotonic()

        attach_callbacks(client, post, puback_seen)

    def _teardown(self, reason: str) -> None:
        s = self._session
        if s is None:
            return
        was = s.connected
        self._session = None
        self._connecting_since = None
        abandon(s)
        self._oldest_inflight_t = None
        self._set_state(connected=False, inflight=0, last_error=reason)
        if was:
            self._emit("disconnected", detail=reason)
        self._next_client_at = time.monotonic() + 0.5

    def _process_inbox(self) -> None:
        while self._inbox:
            gen, kind, *args = self._inbox.popleft()
            s = self._session
            if s is None or gen != s.gen:
                continue   # from an abandoned client
            if kind == "connect":
                self._on_connected(s, *args)
            elif kind == "disconnect":
                self._teardown(f"disconnected: {args[0]}")
            elif kind == "puback":
                self._drain.on_puback(s, *args)
            elif kind == "suback":
                if args[0] in s.sub_mids:
                    s.sub_mids.discard(args[0])
                    bad = [rc for rc in args[1] if rc.is_failure]
                    if bad:
                        self._emit("refused", detail=f"broker refused subscription: {bad[0]}")
                    if not s.sub_mids:
                        s.subscribed_at = time.monotonic()
                        s.drain_after = min(s.drain_after, s.subscribed_at + self.ack_grace_s)
            elif kind == "message":
                topic, payload = args
                if topic == self.t_ack:
                    self._replies.ack(payload)
                    s.drain_after = min(s.drain_after, time.monotonic())
                elif topic == self.t_cmd:
                    self._replies.command(s, payload)

    def _on_connected(self, s: Session, reason_code: Any, properties: Any) -> None:
        if reason_code.is_failure:
            self._emit("refused", detail=f"broker {self.broker.url} refused the connection: {reason_code}")
            self._teardown(f"CONNACK {reason_code}")
            self._next_client_at = time.monotonic() + 5
            return
        s.connected = True
        self._connecting_since = None
        cap = self.max_payload
        mps = getattr(properties, "MaximumPacketSize", None) if properties is not None else None
        if isinstance(mps, int) and mps > 0:
            cap = min(cap, mps - len(self.t_result) - 16)
        s.cap = cap
        s.cursor = self.journal.acked_seq()
        self._notified = True
        for t in (self.t_ack, self.t_cmd):
            rc, mid = s.client.subscribe(t, qos=1)
            s.sub_mids.add(mid)
        s.drain_after = time.monotonic() + 2.0   # drain at SUBACK + grace (retained ack first), at worst 2 s
        self._publish_status(s, "online")
        # withheld notices for quarantined results the town has not acknowledged, and the latest checkpoint
        acked = self.journal.acked_seq()
        for e in self.journal.quarantined():
            if e.seq > acked:
                self._drain.send_withheld(s, e, e.quarantined or "quarantined")
        cp = self.journal.latest_checkpoint()
        if cp is not None and cp.town_jws is None:
            s.client.publish(self.t_checkpoint, cp.station_jws, qos=1, retain=True)
        self._set_state(connected=True, connects=self._state.connects + 1, last_error="")
        self._emit("connected", detail=self.broker.url)

    def _update_shared(self) -> None:
        s = self._session
        if s is None or not s.inflight:
            self._oldest_inflight_t = None
            n = 0
        else:
            self._oldest_inflight_t = min(t for _, t in s.inflight.values())
            n = len(s.inflight)
        if self._state.inflight != n or (s is not None and len(s.sent) != self._state.sent_this_connection):
            self._set_state(inflight=n, sent_this_connection=len(s.sent) if s else 0)

    # ------------------------------------------------------------------ status and checkpoints

    def _publish_status(self, s: Session, state: str) -> None:
        self._refresh_stats()
        try:
            st = self.journal.stats()
            extra = {"outbox": st.unacked, "quarantined": st.quarantined, "positives_unacked": st.positives_unacked}
        except StationError:
            extra = {}
        s.publish(self.t_status, self._status.message(state, self._state, **extra), -1, retain=True)
        self._status.published(time.monotonic())

    def _maybe_status(self, s: Session) -> None:
        if self._status.due(time.monotonic()):
            self._publish_status(s, "online")

    def _maybe_checkpoint(self, s: Session) -> None:
        msg = self._checkpoints.due(self._state.last_seq)
        if msg is not None:
            s.publish(self.t_checkpoint, msg, -1, retain=True)

    # ------------------------------------------------------------------ shutdown

    def _shutdown(self) -> None:
        s = self._session
        timeout = getattr(self, "_stop_timeout", 5.0)
        if s is not None and s.connected:
            self._drain.flush_published()
            self._publish_status(s, "offline")
            deadline = time.monotonic() + timeout / 2
            while time.monotonic() < deadline:
                self._process_inbox()
                if self._session is None or not any(q < 0 for q, _ in s.inflight.values()):
                    break
                self._wake.wait(0.05)
                self._wake.clear()
            self._drain.flush_published()
            try:
                s.client.disconnect()   # normal DISCONNECT: the broker discards the last will
            except (OSError, ValueError, RuntimeError):
                pass  # the socket is already gone: the broker publishes the last will instead
            if s.thread is not None:
                s.thread.join(max(0.1, timeout / 4))
        if self._session is not None:
            abandon(self._session)
            self._session = None
        self._set_state(connected=False, inflight=0)
