# The reference town listener: a thin MQTT layer over station.town.store.TownStore.
# Threads: paho's network thread only posts received messages to a queue; the "town-worker" thread owns the
# TownStore connection, ingests in batches, publishes acks and resend requests, raises `silent` alerts and wakes
# the alert delivery threads (station/town/delivery.py) after each commit.
from __future__ import annotations

import hashlib
import logging
import os
import queue
import secrets
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import paho.mqtt.client as mqtt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from station.protocol import topics
from station.protocol.messages import build_resend
from station.protocol.mqtt import parse_broker_url, tls_context
from station.town.db import is_url, retryable
from station.town.delivery import AlertDelivery
from station.town.store import Outcome, TownStore
from station.town.trust import TrustStore
from station.town.webhooks import Webhook

log = logging.getLogger("station.town")

SUBSCRIPTION = f"{topics.PREFIX}/#"
SESSION_EXPIRY_S = 7 * 24 * 3600  # a town server down for a week still finds its queued results


@dataclass
class TownBroker:
    """Broker settings for the listener (same attribute names as station.config.BrokerConfig)."""

    url: str
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    keepalive_s: int = 30
    client_id: str | None = None


class TownListener:
    """Subscribe to nongan/v1/#, ingest in batches (one transaction each), publish signed retained acks
    of the highest contiguous seq, and ask stations (signed resend cmd) to fill gaps that persist."""

    def __init__(self, broker: TownBroker, trust_dir: str | Path, db_path: str | Path,
                 town_key: Ed25519PrivateKey | None, town_kid: str = "town/1", *,
                 resend_after_s: float = 15.0, cmd_ttl_s: int = 300,
                 on_outcome: Callable[[Outcome], None] | None = None,
                 webhooks: list[Webhook] | None = None, silent_after_s: float | None = None,
                 share: str | None = None):
        self.broker = broker
        self.addr = parse_broker_url(broker.url)
        self.trust_dir = Path(trust_dir)
        self.db_path: str | Path = str(db_path) if is_url(db_path) else Path(db_path)
        self.town_key, self.town_kid = town_key, town_kid
        self.resend_after_s, self.cmd_ttl_s = resend_after_s, cmd_ttl_s
        self.on_outcome = on_outcome
        self.silent_after_s = silent_after_s
        # MQTT 5 shared subscription: the broker hands each message to one listener of the group.
        self.share = share
        self.subscription = f"$share/{share}/{SUBSCRIPTION}" if share else SUBSCRIPTION
        self._q: queue.Queue[tuple[str, bytes, bool, int, int] | None] = queue.Queue()
        self._stop = threading.Event()
        self.failed = threading.Event()  # the store worker died: the process must exit, not look healthy
        self._connected = threading.Event()
        self._resync = threading.Event()
        self._gap_seen: dict[tuple[str, int], float] = {}
        self._gap_asked: dict[str, float] = {}
        self._progress: dict[str, tuple[int, float]] = {}
        self.trust = TrustStore.load(self.trust_dir)   # fail early on a missing trust directory
        TownStore(self.db_path).close()                # ... and on an unusable database (and migrate it)
        self.delivery = AlertDelivery(self.db_path, webhooks) if webhooks else None
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2,
                                  client_id=broker.client_id or _stable_client_id(self.db_path, share),
                                  protocol=mqtt.MQTTv5, manual_ack=True)
        if self.addr.tls:
            self.client.tls_set_context(tls_context(self.addr, broker.ca_file, broker.cert_file, broker.key_file))
        self.client.reconnect_delay_set(1, 10)
        self.client.max_inflight_messages_set(200)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_subscribe = self._on_subscribe
        self.client.on_message = self._on_message
        self._worker = threading.Thread(target=self._run, name="town-worker", daemon=True)

    # paho thread: only post
    def _on_connect(self, client, userdata, flags, reason_code, properties):
        if reason_code.is_failure:
            log.error("town: broker %s refused connection: %s", self.broker.url, reason_code)
            return
        client.subscribe(self.subscription, qos=1)
        self._connected.set()
        self._resync.set()

    def _on_subscribe(self, client, userdata, mid, reason_codes, properties):
        # Said on the broker's SUBACK, not when the request is sent: whoever waits for this line (a technician,
        # a test) may publish at once, and a message the broker handles before the subscription is never seen.
        if any(rc.is_failure for rc in reason_codes):
            log.error("town: broker %s refused subscription %s: %s", self.broker.url, self.subscription, reason_codes)
            return
        log.info("town: connected to %s, subscribed %s", self.broker.url, self.subscription)

    def _on_disconnect(self, client, userdata, flags, reason_code, properties):
        self._connected.clear()
        log.warning("town: disconnected from %s: %s", self.broker.url, reason_code)

    def _on_message(self, client, userdata, msg):
        self._q.put((msg.topic, bytes(msg.payload), bool(msg.retain), msg.mid, msg.qos))

    def start(self) -> None:
        # A persistent session under a stable client id: while this listener is down or restarting, a broker
        # with persistence keeps queuing the stations' results for it instead of dropping them.
        # A member of a shared subscription with its own (per-process) id keeps no session: a dead member's session
        # would go on taking its share of the messages, queued where no listener reads them. While one member
        # lives the group receives; what a dead one held comes back through the stations' ack stall. A member
        # given a fixed --client-id is expected back under it and keeps its session.
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = 0 if self.share and not self.broker.client_id else SESSION_EXPIRY_S
        self.client.connect_async(self.addr.host, self.addr.port, keepalive=self.broker.keepalive_s,
                                  clean_start=False, properties=props)
        if self.delivery:
            self.delivery.start()       # first: its cursors must exist before the first alert is stored
        self.client.loop_start()
        self._worker.start()

    def wait_connected(self, timeout: float) -> bool:
        return self._connected.wait(timeout)

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self._q.put(None)
        self._worker.join(timeout)
        self.client.disconnect()
        self.client.loop_stop()
        if self.delivery:
            self.delivery.stop(timeout)

    # worker thread: owns the TownStore connection
    def _run(self) -> None:
        store = TownStore(self.db_path, self.trust, self.town_key, self.town_kid)
        next_gap_check = time.monotonic() + 1.0
        try:
            while not self._stop.is_set():
                try:
                    item = self._q.get(timeout=0.5)
                except queue.Empty:
                    item = None
                items = [] if item is None else [item]
                while len(items) < 250:
                    try:
                        nxt = self._q.get_nowait()
                    except queue.Empty:
                        break
                    if nxt is not None:
                        items.append(nxt)
                changed: set[str] = set()
                raised = False
                if items:
                    try:
                        raised = self._ingest(store, items, changed)
                    except Exception:
                        # nothing of the batch is stored nor acked: the stations resend it (ack stall, gap cmd)
                        log.exception("town: batch of %d messages NOT stored", len(items))
                        changed.clear()
                        raised = False
                        time.sleep(1.0)
                    # PUBACK only now: a listener killed before COMMIT leaves the messages with the broker
                    for *_, mid, qos in items:
                        if qos:
                            self.client.ack(mid, qos)
                if raised and self.delivery:
                    self.delivery.wake()          # after COMMIT: the delivery threads see the alert rows
                if self._resync.is_set():
                    self._resync.clear()
                    changed.update(store.stations())   # re-assert retained acks (broker may have lost them)
                if changed:
                    try:
                        with store.batch(stations=changed):
                            acks = [store.build_ack(path) for path in sorted(changed)]
                        for ack in acks:
                            if ack is not None:
                                self.client.publish(ack[0], ack[1], qos=1, retain=True)
                    except Exception as exc:
                        if not retryable(exc):
                            raise
                        self._resync.set()    # lost a lock conflict: assert every ack on the next round
                if time.monotonic() >= next_gap_check:
                    next_gap_check = time.monotonic() + 1.0
                    self._check_gaps(store)
                    if self.silent_after_s and store.check_silent(self.silent_after_s, time.time()) \
                            and self.delivery:
                        self.delivery.wake()
        except Exception:
            log.exception("town worker crashed")
            self.failed.set()
            raise
        finally:
            store.close()

    def _ingest(self, store: TownStore, items: list, changed: set[str]) -> bool:
        """One batch in one transaction (one fsync; acks only after COMMIT). A batch that lost a lock conflict
        to another listener on the same PostgreSQL database is retried: nothing of it was kept. True when
        an alert was raised."""
        for attempt in range(5):
            outcomes: list[Outcome] = []
            try:
                with store.batch(t for t, *_ in items):
                    for t, payload, retained, *_ in items:
                        outcomes.append(store.ingest(t, payload, retained=retained))
                break
            except Exception as exc:
                if attempt == 4 or not retryable(exc):
                    raise
                log.info("town: batch of %d messages retried after %s", len(items), type(exc).__name__)
        for out in outcomes:
            if out.ack_changed and out.station:
                changed.add(out.station)
            if self.on_outcome:
                try:
                    self.on_outcome(out)
                except Exception:   # a reporting hook never costs the batch
                    log.exception("town: on_outcome hook failed")
        return any(out.alerts for out in outcomes)

    def _check_gaps(self, store: TownStore) -> None:
        """Report gaps once (keyed by their upper end, which stays put while the bottom fills), and ask the
        station to resend only when its contiguous seq has made no progress for resend_after_s: a station
        still draining a backlog is not nagged."""
        now = time.monotonic()
        live: set[tuple[str, int]] = set()
        for path in store.stations():
            gaps = store.gaps(path)
            contiguous = store.contiguous(path)
            last_c, since = self._progress.get(path, (-1, now))
            if contiguous != last_c:
                self._progress[path] = (contiguous, now)
                since = now
            for a, b in gaps:
                k = (path, b)
                live.add(k)
                if k not in self._gap_seen:
                    self._gap_seen[k] = now
                    log.warning("GAP %s: missing seq %s", path, f"{a}..{b}" if a != b else a)
            if (gaps and self.town_key is not None and self._connected.is_set()
                    and now - since >= self.resend_after_s
                    and now - self._gap_asked.get(path, -1e9) >= self.resend_after_s):
                self._gap_asked[path] = now
                t_cmd = topics.station_topic(path, "cmd")
                for a, b in gaps[:10]:
                    cmd = build_resend(self.town_key, self.town_kid, path, a, b, secrets.token_hex(16),
                                       int(time.time()) + self.cmd_ttl_s)
                    self.client.publish(t_cmd, cmd, qos=1, retain=False)
                    log.warning("RESEND asked %s: seq %s..%s", path, a, b)
        for k in list(self._gap_seen):
            if k not in live:
                log.info("gap %s: up to seq %s filled", k[0], k[1])
                self._gap_seen.pop(k)


def _stable_client_id(db_path: str | Path, share: str | None = None) -> str:
    """One id per town database, so a restarted listener resumes its broker session. Listeners sharing a
    subscription share a database too: each needs its own id (host and process), or they would keep taking the
    session from each other."""
    where = db_path if isinstance(db_path, str) else str(db_path.resolve())
    if share:
        where += f"|{share}|{socket.gethostname()}|{os.getpid()}"
    return "nongan-town-" + hashlib.sha256(where.encode()).hexdigest()[:12]
