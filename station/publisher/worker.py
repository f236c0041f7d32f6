# The publisher's worker thread: one session at a time, the inbox of paho events, drain, status, shutdown.
#
# Threads
#   worker      ("publisher")            runs Worker.run: owns the Journal connection and the paho client's
#                                         lifecycle (connect, subscribe, status, drain, acks, commands,
#                                         checkpoints). Everything below "worker thread" is its alone.
#   paho        (loop_start, per client)  network I/O only; the callbacks from session.attach_callbacks
#                                         post to the inbox and stamp the last PUBACK time.
#   supervisor  ("publisher-supervisor")  calls health(), request_rebuild() and emit(); never the client.
#   any thread  (the Publisher API)       calls notify(), update_status(), state(), trusted_now(), stop().
from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from station.errors import StationError
from station.protocol import topics
from station.protocol.mqtt import BrokerAddress, make_client
from station.publisher.checkpoints import Checkpoints
from station.publisher.diagnose import Backoff, explain
from station.publisher.drain import Drain
from station.publisher.from_town import TownReplies, TrustedTime
from station.publisher.reports import Health, PublisherEvent, PublisherState
from station.publisher.session import Session, abandon, attach_callbacks, start_network
from station.publisher.settings import PublisherSettings
from station.publisher.status import StatusReport, journal_fields

if TYPE_CHECKING:
    from station.journal import Journal

log = logging.getLogger("station.publisher")


class Worker:
    # opened by the worker thread in run() (the journal connection is the worker's)
    journal: Journal
    _drain: Drain
    _checkpoints: Checkpoints
    _replies: TownReplies

    def __init__(self, settings: PublisherSettings, addr: BrokerAddress, key: Ed25519PrivateKey,
                 town_key: Ed25519PublicKey | None, on_event: Callable[[PublisherEvent], None] | None,
                 clock_synced: Callable[[], bool] | None) -> None:
        self.settings = settings
        self.broker = settings.broker
        self.addr = addr
        self.identity = settings.identity
        self.path = settings.identity.path
        self.key = key
        self.town_key = town_key
        self.on_event = on_event
        self.window = settings.window
        grid, sid = self.identity.grid, self.identity.station_id
        self.t_result = topics.topic(grid, sid, "result")
        self.t_status = topics.topic(grid, sid, "status")
        self.t_ack = topics.topic(grid, sid, "ack")
        self.t_cmd = topics.topic(grid, sid, "cmd")
        self.t_checkpoint = topics.topic(grid, sid, "checkpoint")
        self.client_id = f"nongan-{self.path.replace('/', '-')}"[:64]

        self.stopping = threading.Event()
        self._inbox: collections.deque = collections.deque()
        self._wake = threading.Event()
        self._stopped = threading.Event()
        self._lock = threading.Lock()
        self._stop_timeout = 5.0
        self._status = StatusReport(self.path, settings.journal_path.parent, settings.boot, clock_synced,
                                    settings.status_interval_s)
        self._time = TrustedTime(self._status.synced)
        self._notified = True
        self._rebuild_reason: str | None = None
        self._gen = 0
        self.session: Session | None = None
        self._state = PublisherState()
        self._last_puback_t: float | None = None
        self._oldest_inflight_t: float | None = None
        self._worker_beat = time.monotonic()
        self._connecting_since: float | None = None
        self._backoff = Backoff(float(settings.reconnect_max_delay_s))

    # ------------------------------------------------------------------ any thread

    def notify(self) -> None:
        self._notified = True
        self._wake.set()

    def update_status(self, fields: dict[str, Any]) -> None:
        self._status.update(fields)
        self._wake.set()

    def state(self) -> PublisherState:
        with self._lock:
            st = self._state
        now = time.monotonic()
        return replace(
            st,
            last_puback_age=None if self._last_puback_t is None else now - self._last_puback_t,
            oldest_inflight_age=None if self._oldest_inflight_t is None else now - self._oldest_inflight_t,
        )

    def trusted_now(self) -> float | None:
        return self._time.now()

    def stop(self, timeout: float) -> None:
        """Ask the worker to publish the offline status and disconnect within `timeout`."""
        self._stop_timeout = timeout
        self.stopping.set()
        self._wake.set()

    def health(self) -> Health:
        """Read without the worker's cooperation (it may be the thing that is stuck): each field is one
        reference read of the worker's own bookkeeping."""
        now = time.monotonic()
        s = self.session
        oldest, puback, since = self._oldest_inflight_t, self._last_puback_t, self._connecting_since
        return Health(
            gen=None if s is None else s.gen,
            connected=s is not None and s.connected,
            thread_alive=s is not None and s.thread is not None and s.thread.is_alive(),
            inflight=self._state.inflight,
            oldest_inflight_age_s=None if oldest is None else now - oldest,
            last_puback_age_s=None if puback is None else now - puback,
            connecting_for_s=None if since is None else now - since,
            worker_idle_s=now - self._worker_beat,
            rebuild_pending=self._rebuild_reason is not None,
            stopped=self._stopped.is_set(),
        )

    def request_rebuild(self, reason: str) -> None:
        """The supervisor's verdict: the worker tears the session down and starts a fresh client."""
        self._rebuild_reason = reason
        self._wake.set()

    def emit(self, kind: str, seq: int | None = None, detail: str = "", order: Any = None) -> None:
        ev = PublisherEvent(kind, seq, detail, order)
        level = logging.DEBUG if kind == "acked" else logging.INFO if kind in ("connected", "command", "order") \
            else logging.WARNING
        log.log(level, "%s", ev)
        if self.on_event is not None:
            try:
                self.on_event(ev)
            except Exception:  # the daemon's callback must only post; never let it kill the worker
                log.exception("on_event callback failed")

    def _set_state(self, **kw: Any) -> None:
        with self._lock:
            self._state = replace(self._state, **kw)

    # ------------------------------------------------------------------ worker thread

    def run(self) -> None:
        from station.journal import Journal

        cfg = self.settings
        try:
            self.journal = Journal(cfg.journal_path)
        except StationError as exc:
            self._set_state(last_error=str(exc))
            self.emit("wedged", detail=f"publisher cannot open the journal: {exc}")
            self._stopped.set()
            return
        self._checkpoints = Checkpoints(
            self.journal, self.key, self.identity.kid, self.path, every=cfg.checkpoint_every,
            interval_s=cfg.checkpoint_interval_s, boot=lambda: self._status.get("boot", cfg.boot), emit=self.emit)
        self._replies = TownReplies(self.journal, self.town_key, self.path, clock=self._time,
                                    checkpoints=self._checkpoints, refresh_stats=self._refresh_stats, emit=self.emit)
        self._drain = Drain(
            self.journal, self.key, self.identity.kid, self.path, self.t_result, window=self.window,
            max_ahead=cfg.ahead_limit, ack_stall_s=cfg.ack_stall_s, state=lambda: self._state,
            refresh_stats=self._refresh_stats, take_notified=self._take_notified, emit=self.emit)
        self._next_client_at = 0.0
        try:
            while not self.stopping.is_set():
                try:
                    self._step()
                except Exception as exc:   # never die: report, drop the connection, retry from the journal
                    log.exception("publisher worker error")
                    self._set_state(last_error=f"worker error: {exc}")
                    self.emit("wedged", detail=f"publisher worker error (retrying in 1 s): {exc}")
                    self._drain.forget_published()
                    try:
                        self._teardown(f"worker error: {exc}")
                    except Exception:
                        self.session = None
                    self.stopping.wait(1.0)
            self._shutdown()
        finally:
            self._stopped.set()
            self.journal.close()

    def _step(self) -> None:
        self._worker_beat = time.monotonic()
        self._wake.clear()
        if self._state.last_seq == 0 and self._state.acked_seq == 0:
            self._refresh_stats()
        if self.session is None and time.monotonic() >= self._next_client_at:
            self._new_session()
        self._process_inbox()
        if self._rebuild_reason is not None:
            reason, self._rebuild_reason = self._rebuild_reason, None
            self._teardown(reason)
            self._set_state(rebuilds=self._state.rebuilds + 1)
            self.emit("rebuilt", detail=reason)
        s = self.session
        if s is not None and s.connected:
            self._drain.run(s)
            self._maybe_checkpoint(s)
            self._maybe_status(s)
        self._drain.flush_published()
        self._update_shared()
        if not self._inbox:
            self._wake.wait(self._idle_timeout())

    def _idle_timeout(self) -> float:
        s = self.session
        if s is not None and s.connected and s.drain_after != float("inf") and time.monotonic() < s.drain_after:
            return max(0.01, s.drain_after - time.monotonic())
        if self.session is None:
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

    # ------------------------------------------------------------------ connection lifecycle (worker thread)

    def _new_session(self) -> None:
        self._gen += 1
        will = self._status.will(self._state)
        try:
            client, _ = make_client(self.broker, self.client_id, will=(self.t_status, will),
                                    max_inflight=self.window + 50)
        except StationError as exc:
            self._set_state(last_error=str(exc))
            self.emit("refused", detail=str(exc))
            self._next_client_at = time.monotonic() + 30
            return
        client.reconnect_delay_set(1, self.settings.reconnect_max_delay_s)
        s = Session(self._gen, client)
        gen = s.gen

        def post(*item: Any) -> None:
            self._inbox.append((gen, *item))
            self._wake.set()

        def puback_seen() -> None:
            self._last_puback_t = time.monotonic()

        attach_callbacks(client, post, puback_seen)
        s.thread = start_network(client, self.addr.host, self.addr.port, self.settings.keepalive, post)
        self.session = s
        self._connecting_since = time.monotonic()

    def _teardown(self, reason: str) -> None:
        s = self.session
        if s is None:
            return
        was = s.connected
        self.session = None
        self._connecting_since = None
        abandon(s)
        self._oldest_inflight_t = None
        self._set_state(connected=False, inflight=0, last_error=reason)
        if was:
            self.emit("disconnected", detail=reason)
        self._next_client_at = time.monotonic() + 0.5

    def _process_inbox(self) -> None:
        while self._inbox:
            gen, kind, *args = self._inbox.popleft()
            s = self.session
            if s is None or gen != s.gen:
                continue   # from an abandoned client
            if kind == "connect":
                self._on_connected(s, *args)
            elif kind in ("disconnect", "connect_failed"):
                self._lost(s, kind, args[0])
            elif kind == "puback":
                self._drain.on_puback(s, *args)
            elif kind == "suback":
                refused = s.subscribed(*args, grace_s=self.settings.ack_grace_s)
                if refused is not None:
                    self.emit("refused", detail=f"broker refused subscription: {refused}")
            elif kind == "message":
                topic, payload = args
                if topic == self.t_ack:
                    self._replies.ack(payload)
                    s.drain_after = min(s.drain_after, time.monotonic())
                elif topic == self.t_cmd:
                    self._replies.command(s, payload)

    def _lost(self, s: Session, kind: str, why: Any) -> None:
        """A connection ended, or never got to CONNACK: then say why once per change of cause, and back off."""
        if kind == "disconnect" and s.connected:
            return self._teardown(f"disconnected: {why}")
        exc = why if kind == "connect_failed" else ConnectionResetError(f"closed before CONNACK: {why}")
        self._teardown(cause := explain(exc, self.addr, self.broker))
        self._next_client_at, new = self._backoff.failed(cause)
        new and self.emit("unreachable", detail=f"broker {self.broker.url}: {cause} (retrying with back-off)")

    def _on_connected(self, s: Session, reason_code: Any, properties: Any) -> None:
        if reason_code.is_failure:
            self.emit("refused", detail=f"broker {self.broker.url} refused the connection: {reason_code}")
            self._teardown(f"CONNACK {reason_code}")
            self._next_client_at = time.monotonic() + 5
            return
        s.connected = True
        self._connecting_since = None
        self._backoff.reset()
        cap = self.settings.max_payload
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
        self._drain.resend_withheld(s)
        cp = self._checkpoints.uncountersigned()
        if cp is not None:
            s.client.publish(self.t_checkpoint, cp, qos=1, retain=True)
        self._set_state(connected=True, connects=self._state.connects + 1, last_error="")
        self.emit("connected", detail=self.broker.url)

    def _update_shared(self) -> None:
        s = self.session
        if s is None or not s.inflight:
            self._oldest_inflight_t = None
            n = 0
        else:
            self._oldest_inflight_t = min(t for _, t in s.inflight.values())
            n = len(s.inflight)
        if self._state.inflight != n or (s is not None and len(s.sent) != self._state.sent_this_connection):
            self._set_state(inflight=n, sent_this_connection=len(s.sent) if s else 0)

    # ------------------------------------------------------------------ status and checkpoints (worker thread)

    def _publish_status(self, s: Session, state: str) -> None:
        self._refresh_stats()
        extra = journal_fields(self.journal)
        s.publish(self.t_status, self._status.message(state, self._state, **extra), -1, retain=True)
        self._status.published(time.monotonic())

    def _maybe_status(self, s: Session) -> None:
        if self._status.due(time.monotonic()):
            self._publish_status(s, "online")

    def _maybe_checkpoint(self, s: Session) -> None:
        msg = self._checkpoints.due(self._state.last_seq)
        if msg is not None:
            s.publish(self.t_checkpoint, msg, -1, retain=True)

    # ------------------------------------------------------------------ shutdown (worker thread)

    def _shutdown(self) -> None:
        s = self.session
        timeout = self._stop_timeout
        if s is not None and s.connected:
            self._drain.flush_published()
            self._publish_status(s, "offline")
            deadline = time.monotonic() + timeout / 2
            while time.monotonic() < deadline:
                self._process_inbox()
                if self.session is None or not any(q < 0 for q, _ in s.inflight.values()):
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
        if self.session is not None:
            abandon(self.session)
            self.session = None
        self._set_state(connected=False, inflight=0)
