# One broker connection of the publisher: its paho client, per-connection drain state, callbacks, teardown.
#
# Threads
#   worker  Session, publish, abandon: the worker thread only.
#   paho    the callbacks attach_callbacks installs: they only post to the worker's inbox (and stamp
#           the last PUBACK time), so no journal or session state is touched off the worker.
from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import paho.mqtt.client as mqtt

log = logging.getLogger("station.publisher")   # the publisher's log name, whichever of its modules writes


class Emit(Protocol):
    """The publisher's event reporter (Publisher._emit), as its helpers call it."""

    def __call__(self, kind: str, seq: int | None = None, detail: str = "", order: Any = None) -> None: ...


@dataclass
class Session:
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

    def publish(self, topic: str, payload: bytes, seq: int, retain: bool = False) -> bool:
        """QoS 1 publish tracked in `inflight` until its PUBACK; seq -1 for anything that is not a result."""
        info = self.client.publish(topic, payload, qos=1, retain=retain)
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            log.debug("publish %s returned %s", topic, info.rc)
            return False
        self.inflight[info.mid] = (seq, time.monotonic())
        return True

    def subscribed(self, mid: int, reason_codes: list[Any], *, grace_s: float) -> Any:
        """A SUBACK for one of ours; returns the first refusal among its reason codes, if any. Once the last
        one is in, the drain may start after grace_s: the broker sends the retained ack first, and with it
        the drain starts at the town's position instead of resending what the town already holds."""
        if mid not in self.sub_mids:
            return None
        self.sub_mids.discard(mid)
        bad = [rc for rc in reason_codes if rc.is_failure]
        if not self.sub_mids:
            self.subscribed_at = time.monotonic()
            self.drain_after = min(self.drain_after, self.subscribed_at + grace_s)
        return bad[0] if bad else None


def attach_callbacks(client: mqtt.Client, post: Callable[..., None], puback_seen: Callable[[], None]) -> None:
    """paho thread: network I/O only; every callback posts an item to the worker's inbox."""

    def on_connect(c, userdata, flags, reason_code, properties):
        post("connect", reason_code, properties)

    def on_disconnect(c, userdata, flags, reason_code, properties):
        post("disconnect", reason_code)

    def on_publish(c, userdata, mid, reason_code, properties):
        puback_seen()
        post("puback", mid, reason_code)

    def on_subscribe(c, userdata, mid, reason_codes, properties):
        post("suback", mid, reason_codes)

    def on_message(c, userdata, msg):
        post("message", msg.topic, bytes(msg.payload))

    client.on_connect, client.on_disconnect, client.on_publish = on_connect, on_disconnect, on_publish
    client.on_subscribe, client.on_message = on_subscribe, on_message


def start_network(client: mqtt.Client, host: str, port: int, keepalive: int,
                  post: Callable[..., None]) -> threading.Thread:
    """Connect and run paho's network loop in a thread of our own. paho's loop_start thread, when the first
    connection fails, only ends (its exception a traceback in the log); here the exception is posted to the
    worker as ("connect_failed", exc), so the worker can say why and back off."""

    def run() -> None:
        try:
            try:
                client.connect(host, port, keepalive=keepalive, clean_start=True)
            except Exception as exc:   # OSError, ssl.SSLError, ValueError: the worker explains each
                post("connect_failed", exc)
                return
            try:
                client.loop_forever()
            except Exception as exc:
                post("connect_failed", exc)
        finally:
            client._thread = None   # as paho's own thread does when it ends

    # loop_start() sets up what a threaded client needs (the wake-up socket pair, _thread, so publish() from
    # the worker wakes the network thread) and runs _thread_main: ours, instead of paho's connect-or-die.
    client._thread_main = run   # type: ignore[method-assign]
    client.loop_start()
    return client._thread   # paho sets this to None when the thread ends; the caller keeps its own handle


def abandon(s: Session) -> None:
    """Stop a client without trusting its network thread: never block on a wedged one."""
    c = s.client
    c._thread_terminate = True   # makes loop_forever exit without draining paho's in-RAM queue
    try:
        c.disconnect()
    except (OSError, ValueError, RuntimeError):
        pass  # tearing down a client that is already broken: its journal entries are resent on the next one
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

