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
from __future__ import annotations

import collections
import json
import logging
import os
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

import paho.mqtt.client as mqtt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from station import __version__, topics
from station.commands import (
    Refused,
    ack_time_unix,
    build_checkpoint,
    build_withheld,
    sha256_hex,
    utc_now_iso,
    verify_ack,
    verify_command,
)
from station.errors import StationError
from station.mqtt_client import make_client, parse_broker_url, tls_context
from station.signing import load_jwk_file, load_private_key

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


@dataclass
class _Session:
    """Per-connection drain state; a new connection resends everything unacked from the start."""

    gen: int
    client: mqtt.Client
    thread: threading.Thread | None = None
    connected: bool = False
    subscribed_at: float | None = None
    drain_after: float = float("inf")
    cursor: int = 0
    page: collections.deque = field(default_factory=collections.deque)
    sent: set[int] = field(default_factory=set)
    inflight: dict[int, tuple[int, float]] = field(default_factory=dict)   # mid -> (seq | -1, sent at)
    resend: collections.deque = field(default_factory=collections.deque)    # [first, last] ranges
    cap: int = 0
    sub_mids: set[int] = field(default_factory=set)


class Publisher:
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
        self._clock_synced = clock_synced
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
        self._extra: dict[str, Any] = {}
        self._status_dirty = True
        self._notified = True
        self._rebuild_reason: str | None = None
        self._gen = 0
        self._session: _Session | None = None
        self._state = PublisherState()
        self._last_puback_t: float | None = None
        self._oldest_inflight_t: float | None = None
        self._worker_beat = time.monotonic()
        self._connecting_since: float | None = None
        self._stall: tuple[int, float] | None = None
        self._town_time: tuple[float, float] | None = None   # (town unix time from ack, monotonic then)
        self._worker = threading.Thread(target=self._run, name="publisher", daemon=True)
        self._supervisor = threading.Thread(target=self._supervise, name="publisher-supervisor", daemon=True)

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
        with self._lock:
            for k, v in fields.items():
                self._extra["activity" if k == "state" else k] = v
            self._status_dirty = True
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

    # ------------------------------------------------------------------ paho callbacks (paho thread)

    def _callbacks(self, client: mqtt.Client, gen: int) -> None:
        def post(*item: Any) -> None:
            self._inbox.append((gen, *item))
            self._wake.set()

        def on_connect(c, userdata, flags, reason_code, properties):
            post("connect", reason_code, properties)

        def on_disconnect(c, userdata, flags, reason_code, properties):
            post("disconnect", reason_code)

        def on_publish(c, userdata, mid, reason_code, properties):
            self._last_puback_t = time.monotonic()
            post("puback", mid, reason_code)

        def on_subscribe(c, userdata, mid, reason_codes, properties):
            post("suback", mid, reason_codes)

        def on_message(c, userdata, msg):
            post("message", msg.topic, bytes(msg.payload))

        client.on_connect, client.on_disconnect, client.on_publish = on_connect, on_disconnect, on_publish
        client.on_subscribe, client.on_message = on_subscribe, on_message

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
        self._last_checkpoint_t = time.monotonic()
        self._next_status = 0.0
        self._last_status_pub = 0.0
        self._pending_published: list[int] = []
        self._next_client_at = 0.0
        try:
            while not self._stop.is_set():
                try:
                    self._step()
                except Exception as exc:   # never die: report, drop the connection, retry from the journal
                    log.exception("publisher worker error")
                    self._set_state(last_error=f"worker error: {exc}")
                    self._emit("wedged", detail=f"publisher worker error (retrying in 1 s): {exc}")
                    self._pending_published.clear()
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
            self._drain(s)
            self._maybe_checkpoint(s)
            self._maybe_status(s)
        self._flush_published()
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

    def _new_session(self) -> None:
        self._gen += 1
        will = json.dumps(self._status_payload("offline", reason="connection lost (last will)"),
                          separators=(",", ":")).encode()
        try:
            client, _ = make_client(self.broker, self.client_id, will=(self.t_status, will),
                                    max_inflight=self.window + 50)
        except StationError as exc:
            self._set_state(last_error=str(exc))
            self._emit("refused", detail=str(exc))
            self._next_client_at = time.monotonic() + 30
            return
        client.reconnect_delay_set(1, self.reconnect_max_delay_s)
        s = _Session(self._gen, client)
        self._callbacks(client, s.gen)
        client.connect_async(self.addr.host, self.addr.port, keepalive=self.keepalive, clean_start=True)
        client.loop_start()
        s.thread = client._thread   # paho sets this to None when the thread ends; keep our own handle
        self._session = s
        self._connecting_since = time.monotonic()

    def _abandon(self, s: _Session) -> None:
        """Stop a client without trusting its network thread: never block on a wedged one."""
        c = s.client
        c._thread_terminate = True   # makes loop_forever exit without draining paho's in-RAM queue
        try:
            c.disconnect()
        except Exception:
            pass
        if s.thread is not None and s.thread is not threading.current_thread():
            s.thread.join(1.0)
            if s.thread.is_alive():
                sock = c.socket()
                try:
                    if sock is not None:
                        sock.close()
                except OSError:
                    pass
                s.thread.join(1.0)
                if s.thread.is_alive():
                    log.warning("abandoning a paho network thread that does not stop")

    def _teardown(self, reason: str) -> None:
        s = self._session
        if s is None:
            return
        was = s.connected
        self._session = None
        self._connecting_since = None
        self._abandon(s)
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
                self._on_puback(s, *args)
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
                    self._handle_ack(payload)
                    s.drain_after = min(s.drain_after, time.monotonic())
                elif topic == self.t_cmd:
                    self._handle_cmd(s, payload)

    def _on_connected(self, s: _Session, reason_code: Any, properties: Any) -> None:
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
                self._send_withheld(s, e, e.quarantined or "quarantined")
        cp = self.journal.latest_checkpoint()
        if cp is not None and cp.town_jws is None:
            s.client.publish(self.t_checkpoint, cp.station_jws, qos=1, retain=True)
        self._set_state(connected=True, connects=self._state.connects + 1, last_error="")
        self._emit("connected", detail=self.broker.url)

    def _on_puback(self, s: _Session, mid: int, reason_code: Any) -> None:
        item = s.inflight.pop(mid, None)
        if item is None:
            return
        seq, _ = item
        if seq < 0:
            return
        if reason_code.is_failure:
            if reason_code.value == 0x95:   # packet too large
                self._quarantine(s, seq, f"broker refused as too large: {reason_code}")
            else:
                self._emit("refused", seq, f"broker refused result #{seq}: {reason_code} (will retry on reconnect)")
            return
        self._pending_published.append(seq)

    def _flush_published(self) -> None:
        if self._pending_published:
            seqs, self._pending_published = self._pending_published, []
            self.journal.mark_published(seqs)

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

    # ------------------------------------------------------------------ drain

    def _publish(self, s: _Session, topic: str, payload: bytes, seq: int, retain: bool = False) -> bool:
        info = s.client.publish(topic, payload, qos=1, retain=retain)
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            log.debug("publish %s returned %s", topic, info.rc)
            return False
        s.inflight[info.mid] = (seq, time.monotonic())
        return True

    def _send_entry(self, s: _Session, e: Any) -> bool:
        if len(e.message) > s.cap:
            self._quarantine(s, e.seq, f"message of {len(e.message)} bytes exceeds the {s.cap}-byte cap", e)
            return True
        if not self._publish(s, self.t_result, e.message, e.seq):
            return False
        s.sent.add(e.seq)
        return True

    def _quarantine(self, s: _Session, seq: int, reason: str, entry: Any = None) -> None:
        self.journal.quarantine(seq, reason)
        s.sent.add(seq)
        self._emit("quarantined", seq, reason)
        e = entry or self.journal.get(seq)
        if e is not None:
            self._send_withheld(s, e, reason)

    def _send_withheld(self, s: _Session, e: Any, reason: str) -> None:
        notice = build_withheld(self.key, self.identity.kid, self.path, e.seq, e.msg_hash, len(e.message),
                                reason[:200])
        self._publish(s, self.t_result, notice, -1)

    def _drain(self, s: _Session) -> None:
        if time.monotonic() < s.drain_after:
            return
        acked = self._state.acked_seq
        # 1. positives first: a new positive never waits behind a backlog (may exceed the window)
        if self._notified:
            self._notified = False
            self._refresh_stats()
            for e in self.journal.unacked_positives(limit=self.window):
                if e.seq not in s.sent and e.seq > acked:
                    if not self._send_entry(s, e):
                        return
        # 2. town resend commands (even for results already acked)
        while s.resend and len(s.inflight) < self.window:
            first, last = s.resend[0]
            e = self.journal.get(first)
            if first >= last:
                s.resend.popleft()
            else:
                s.resend[0] = (first + 1, last)
            if e is None:
                continue
            if e.quarantined:
                self._send_withheld(s, e, e.quarantined)
            elif not self._send_entry(s, e):
                return
        # 3. everything unacked, in seq order, a bounded window at a time, at most max_ahead beyond the ack
        limit = acked + self.max_ahead if self.max_ahead else None
        while len(s.inflight) < self.window:
            if not s.page:
                s.page.extend(self.journal.unacked(after_seq=s.cursor, limit=500))
                if not s.page:
                    # all sent; if the town's ack stays short of our last seq, it lost the tail: resend it
                    if self.max_ahead and self._state.last_seq > acked and not s.inflight:
                        self._ack_stall(s, acked)
                    else:
                        self._stall = None
                    return
            e = s.page[0]
            if limit is not None and e.seq > limit:
                self._ack_stall(s, acked)
                return
            if e.seq not in s.sent and e.seq > self._state.acked_seq:
                if not self._send_entry(s, e):
                    return
            s.page.popleft()
            s.cursor = e.seq

    def _ack_stall(self, s: _Session, acked: int) -> None:
        """Waiting for the town's ack to open the window. If it does not move for ack_stall_s, the town lost
        something (broker queue overflow, town restart): rewind and resend from the first unacked seq."""
        now = time.monotonic()
        if self._stall is None or self._stall[0] != acked:
            self._stall = (acked, now)
            return
        if now - self._stall[1] >= self.ack_stall_s:
            log.warning("no town ack beyond seq %d for %.0f s: resending from seq %d", acked, now - self._stall[1],
                        acked + 1)
            s.sent.clear()
            s.page.clear()
            s.cursor = acked
            self._stall = (acked, now)

    def _refresh_stats(self) -> None:
        st = self.journal.stats()
        if st.last_seq != self._state.last_seq or st.acked_seq != self._state.acked_seq:
            self._status_dirty = True
        self._set_state(last_seq=st.last_seq, acked_seq=st.acked_seq)
        return None

    # ------------------------------------------------------------------ status

    def _disk(self) -> dict | None:
        try:
            u = shutil.disk_usage(self.journal_path.parent)
        except OSError:
            return None
        return {"free_mb": u.free // 2**20, "used_pct": round(100.0 * u.used / u.total, 1) if u.total else None}

    def _synced(self) -> bool | None:
        if self._clock_synced is not None:
            try:
                return bool(self._clock_synced())
            except Exception:
                return None
        return self._extra.get("clock_synced")

    def _status_payload(self, state: str, **more: Any) -> dict:
        st = self._state
        with self._lock:
            extra = dict(self._extra)
        p = {
            "v": 1, "state": state, "station": self.path, "outbox": max(0, st.last_seq - st.acked_seq),
            "last_seq": st.last_seq, "acked_seq": st.acked_seq, "disk": self._disk(),
            "clock_synced": self._synced(), "boot": self.boot, "time": utc_now_iso(), "version": __version__,
        }
        p.update(extra)
        p["state"] = state
        p.update(more)
        return p

    def _publish_status(self, s: _Session, state: str) -> None:
        self._refresh_stats()
        try:
            st = self.journal.stats()
            extra = {"outbox": st.unacked, "quarantined": st.quarantined, "positives_unacked": st.positives_unacked}
        except StationError:
            extra = {}
        body = json.dumps(self._status_payload(state, **extra), separators=(",", ":"), default=str).encode()
        self._publish(s, self.t_status, body, -1, retain=True)
        self._status_dirty = False
        self._last_status_pub = time.monotonic()
        self._next_status = self._last_status_pub + self.status_interval_s

    def _maybe_status(self, s: _Session) -> None:
        now = time.monotonic()
        if now >= self._next_status or (self._status_dirty and now - self._last_status_pub >= 1.0):
            self._publish_status(s, "online")

    # ------------------------------------------------------------------ acks and commands

    def _handle_ack(self, payload: bytes) -> None:
        try:
            ack = verify_ack(payload, self.town_key, self.path)
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
        t = ack_time_unix(ack)
        if t is not None and (self._town_time is None or t > self._town_time[0]):
            self._town_time = (t, time.monotonic())
        try:
            advanced = self.journal.mark_acked(ack.acked_seq, payload)
        except StationError as exc:
            self._emit("refused", ack.acked_seq, f"ack refused: {exc}")
            return
        if advanced:
            self._refresh_stats()
            self._emit("acked", ack.acked_seq)
        if ack.checkpoint is not None:
            self._countersigned(ack)

    def _countersigned(self, ack: Any) -> None:
        cp = ack.checkpoint
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

    def trusted_now(self) -> float | None:
        """Unix time we can trust: the synced station clock, else town ack time + monotonic, else None."""
        if self._synced():
            return time.time()
        if self._town_time is not None:
            return self._town_time[0] + (time.monotonic() - self._town_time[1])
        return None

    def _handle_cmd(self, s: _Session, payload: bytes) -> None:
        now = self.trusted_now()

        def remember(nonce: str, expires: int) -> bool:
            at = now if now is not None else min(time.time(), expires - 1)
            return self.journal.remember_nonce(nonce, expires, now=at)

        try:
            cmd = verify_command(payload, self.town_key, self.path, now=now, remember_nonce=remember)
        except Refused as r:
            self._emit("refused", detail=str(r))
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

    # ------------------------------------------------------------------ checkpoints

    def _maybe_checkpoint(self, s: _Session) -> None:
        last = self._state.last_seq
        if last <= 0:
            return
        cached = getattr(self, "_cp_seq", None)
        if cached is None:
            cp = self.journal.latest_checkpoint()
            cached = self._cp_seq = cp.seq if cp else 0
        if last <= cached:
            return
        due = last - cached >= self.checkpoint_every or \
            time.monotonic() - self._last_checkpoint_t >= self.checkpoint_interval_s
        if not due:
            return
        e = self.journal.get(last)
        if e is None:
            return
        with self._lock:
            boot = self._extra.get("boot", self.boot)
        boot = boot.get("counter") if isinstance(boot, dict) else boot
        msg = build_checkpoint(self.key, self.identity.kid, self.path, last, e.msg_hash, boot)
        self.journal.add_checkpoint(last, e.msg_hash, msg)
        self._cp_seq = last
        self._last_checkpoint_t = time.monotonic()
        self._publish(s, self.t_checkpoint, msg, -1, retain=True)

    # ------------------------------------------------------------------ shutdown

    def _shutdown(self) -> None:
        s = self._session
        timeout = getattr(self, "_stop_timeout", 5.0)
        if s is not None and s.connected:
            self._flush_published()
            self._publish_status(s, "offline")
            deadline = time.monotonic() + timeout / 2
            while time.monotonic() < deadline:
                self._process_inbox()
                if self._session is None or not any(q < 0 for q, _ in s.inflight.values()):
                    break
                self._wake.wait(0.05)
                self._wake.clear()
            self._flush_published()
            try:
                s.client.disconnect()   # normal DISCONNECT: the broker discards the last will
            except Exception:
                pass
            if s.thread is not None:
                s.thread.join(max(0.1, timeout / 4))
        if self._session is not None:
            self._abandon(self._session)
            self._session = None
        self._set_state(connected=False, inflight=0)

    # ------------------------------------------------------------------ supervisor

    def _supervise(self) -> None:
        suspect: int | None = None
        while not self._stop.wait(0.5):
            now = time.monotonic()
            s = self._session
            if s is None or self._rebuild_reason is not None:
                continue
            reason = None
            thread_alive = s.thread is not None and s.thread.is_alive()
            if s.connected and not thread_alive:
                reason = "paho network thread died while connected"
            elif s.connected and self._oldest_inflight_t is not None:
                age = now - self._oldest_inflight_t
                since = now - (self._last_puback_t or self._oldest_inflight_t)
                if age > self.puback_timeout_s and since > self.puback_timeout_s:
                    reason = f"no PUBACK for {since:.0f} s with {self._state.inflight} in flight"
            elif not s.connected and self._connecting_since is not None:
                if not thread_alive and now - self._connecting_since > 2.0:
                    reason = "paho network thread ended before connecting"
                elif now - self._connecting_since > self.connect_stuck_s:
                    reason = f"no connection for {now - self._connecting_since:.0f} s"
            # act only when the same session looks wedged on two consecutive checks: a normal disconnect
            # ends the paho thread a moment before the worker has processed on_disconnect
            if reason is None:
                suspect = None
            elif suspect != s.gen:
                suspect = s.gen
            else:
                suspect = None
                log.warning("supervisor: rebuilding the MQTT client: %s", reason)
                self._rebuild_reason = reason
                self._wake.set()
            if now - self._worker_beat > max(30.0, 3 * self.puback_timeout_s) and not self._stopped.is_set():
                self._emit("wedged", detail=f"publisher worker has not run for {now - self._worker_beat:.0f} s")
                self._worker_beat = now
