# Test helpers around real paho clients talking to a LocalBroker: connect, collect messages, wait.
from __future__ import annotations

import queue
import threading
import time
from dataclasses import dataclass, field

import paho.mqtt.client as mqtt

from station.lab.broker import LocalBroker
from station.town.ca import ClientCert


@dataclass
class Client:
    """A connected paho client with its network thread running and everything it received."""

    paho: mqtt.Client
    messages: queue.Queue = field(default_factory=queue.Queue)
    subacks: dict[int, list] = field(default_factory=dict)
    pubacks: dict[int, object] = field(default_factory=dict)
    _acked: threading.Condition = field(default_factory=threading.Condition)

    def subscribe(self, topic: str, qos: int = 1, timeout: float = 5) -> list:
        """Subscribe and wait for SUBACK; returns its reason codes."""
        rc, mid = self.paho.subscribe(topic, qos)
        assert rc == mqtt.MQTT_ERR_SUCCESS, f"subscribe {topic}: {rc}"
        with self._acked:
            assert self._acked.wait_for(lambda: mid in self.subacks, timeout), f"no SUBACK for {topic}"
            return self.subacks[mid]

    def publish(self, topic: str, payload: bytes, qos: int = 1, timeout: float = 5, retain: bool = False) -> object:
        """Publish and wait for PUBACK; returns its reason code (always 'Success' under MQTT 3.1.1)."""
        info = self.paho.publish(topic, payload, qos, retain=retain)
        assert info.rc == mqtt.MQTT_ERR_SUCCESS, f"publish {topic}: {info.rc}"
        with self._acked:
            assert self._acked.wait_for(lambda: info.mid in self.pubacks, timeout), f"no PUBACK for {topic}"
            return self.pubacks[info.mid]

    def received(self, timeout: float) -> list[mqtt.MQTTMessage]:
        """Everything that arrives within timeout seconds (waits the full time: proves absence)."""
        out, deadline = [], time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                out.append(self.messages.get(timeout=left))
            except queue.Empty:
                break
        return out

    def next_message(self, timeout: float = 5) -> mqtt.MQTTMessage:
        try:
            return self.messages.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"no message within {timeout} s") from None

    def close(self) -> None:
        self.paho.disconnect()
        self.paho.loop_stop()


def connect(broker: LocalBroker, client_id: str, cert: ClientCert | None = None, *,
            protocol: mqtt.MQTTProtocolVersion = mqtt.MQTTv311, username: str | None = None,
            timeout: float = 5) -> Client:
    """A real paho client connected to broker (TLS with cert when the broker is TLS); raises on refusal."""
    paho = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=protocol)
    c = Client(paho)
    connected: queue.Queue = queue.Queue()

    def on_suback(_c, _u, mid, codes, _p):
        with c._acked:
            c.subacks[mid] = codes
            c._acked.notify_all()

    def on_puback(_c, _u, mid, code, _p):
        with c._acked:
            c.pubacks[mid] = code
            c._acked.notify_all()

    paho.on_connect = lambda _c, _u, _f, code, _p: connected.put(code)
    paho.on_message = lambda _c, _u, msg: c.messages.put(msg)
    paho.on_subscribe = on_suback
    paho.on_publish = on_puback
    if username is not None:
        paho.username_pw_set(username)
    if broker.tls:
        paho.tls_set_context(broker.ssl_context(cert))
    paho.connect(broker.host, broker.port, keepalive=30)
    paho.loop_start()
    try:
        code = connected.get(timeout=timeout)
    except queue.Empty:
        paho.loop_stop()
        raise ConnectionError(f"{client_id}: no CONNACK from {broker.url} within {timeout} s") from None
    if code.is_failure:
        paho.loop_stop()
        raise ConnectionError(f"{client_id}: refused by {broker.url}: {code}")
    return c
