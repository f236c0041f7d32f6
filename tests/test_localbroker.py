# LocalBroker runs a real mosquitto: start, restart on the same port, SIGKILL, failures, the shipped TLS config.
from __future__ import annotations

import socket
import struct
import threading
import tomllib
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from brokers import connect

import station
from station.errors import BrokerError, BrokerNotInstalled
from station.lab.broker import MESSAGE_SIZE_LIMIT, SHIPPED_ACL, SHIPPED_CONF, LocalBroker, render_shipped


def _refused(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return False
    except ConnectionRefusedError:
        return True


def test_plain_broker_round_trip(local_broker):
    assert local_broker.url == f"mqtt://127.0.0.1:{local_broker.port}"
    assert local_broker.host == "127.0.0.1" and local_broker.running
    sub = connect(local_broker, "sub")
    pub = connect(local_broker, "pub")
    try:
        sub.subscribe("nongan/v1/d/t/v/st-0001/result")
        pub.publish("nongan/v1/d/t/v/st-0001/result", b"hello")
        msg = sub.next_message()
        assert (msg.topic, msg.payload) == ("nongan/v1/d/t/v/st-0001/result", b"hello")
    finally:
        sub.close()
        pub.close()


def test_restart_keeps_port_and_clients_reconnect(local_broker):
    port, pid = local_broker.port, local_broker.pid
    connects = threading.Semaphore(0)
    paho = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="survivor")
    paho.reconnect_delay_set(min_delay=1, max_delay=1)
    paho.on_connect = lambda *_: connects.release()
    paho.connect(local_broker.host, port)
    paho.loop_start()
    try:
        assert connects.acquire(timeout=5)
        local_broker.restart()
        assert local_broker.port == port and local_broker.pid != pid
        # paho's own automatic reconnect finds the broker again because the address did not change.
        assert connects.acquire(timeout=10), "client did not reconnect after restart"
    finally:
        paho.disconnect()
        paho.loop_stop()


def test_kill_is_abrupt_and_start_reuses_port(local_broker):
    port, pid = local_broker.port, local_broker.pid
    local_broker.kill()
    assert not local_broker.running and local_broker.pid is None
    assert _refused(port)
    local_broker.start()
    assert local_broker.port == port and local_broker.pid != pid
    connect(local_broker, "after-kill").close()


def test_stop_closes_the_port(tmp_path):
    broker = LocalBroker(tmp_path).start()
    port = broker.port
    broker.stop()
    assert not broker.running and _refused(port)
    broker.stop()  # idempotent


def test_port_in_use_is_a_clear_error_with_mosquitto_log(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        broker = LocalBroker(tmp_path, port=taken.getsockname()[1])
        with pytest.raises(BrokerError, match="Address already in use") as err:
            broker.start(timeout=5)
    assert str(tmp_path / "mosquitto.conf") in str(err.value)
    assert not broker.running


def test_missing_mosquitto_is_reported_as_not_installed(tmp_path, monkeypatch):
    monkeypatch.setenv("NONGAN_MOSQUITTO", str(tmp_path / "no-such-mosquitto"))
    with pytest.raises(BrokerNotInstalled, match="no-such-mosquitto"):
        LocalBroker(tmp_path).start()


def test_oversized_payload_is_dropped_and_the_limit_matches_the_shipped_config(local_broker):
    assert f"message_size_limit {MESSAGE_SIZE_LIMIT}" in SHIPPED_CONF.read_text().splitlines()
    sub = connect(local_broker, "sub")
    pub = connect(local_broker, "pub")
    try:
        sub.subscribe("t")
        pub.publish("t", b"x" * (MESSAGE_SIZE_LIMIT + 1))  # PUBACK arrives anyway under MQTT 3.1.1
        pub.publish("t", b"y" * MESSAGE_SIZE_LIMIT)
        # In-order delivery from one publisher: had the oversized one got through, it would come first.
        assert sub.next_message().payload == b"y" * MESSAGE_SIZE_LIMIT
        assert sub.received(0.5) == []
    finally:
        sub.close()
        pub.close()


def _packet(kind: int, body: bytes) -> bytes:
    size, length = len(body), b""
    while True:
        size, digit = size >> 7, size & 0x7F
        length += bytes([digit | (0x80 if size else 0)])
        if not size:
            return bytes([kind]) + length + body


def test_oversized_payload_under_mqtt5_gets_puback_0x95(local_broker):
    # Raw MQTT 5 bytes, because paho 2.2 rejects this PUBACK as malformed (0x95 "packet too large" is not
    # a PUBACK reason code in MQTT 5) and drops the connection; a publisher must cap payloads itself.
    with socket.create_connection(("127.0.0.1", local_broker.port), timeout=5) as s:
        s.sendall(_packet(0x10, b"\x00\x04MQTT\x05\x02\x00\x3c\x00" + b"\x00\x03raw"))
        assert s.recv(1) == b"\x20"  # CONNACK
        s.recv(100)
        publish = b"\x00\x01t" + struct.pack("!H", 7) + b"\x00" + b"x" * (MESSAGE_SIZE_LIMIT + 1)
        s.sendall(_packet(0x32, publish))  # QoS 1, packet id 7, no properties
        assert s.recv(100) == bytes([0x40, 3, 0, 7, 0x95])


def test_tls_broker_runs_the_shipped_config_with_only_listed_lines_changed(tls_broker):
    assert tls_broker.url == f"mqtts://localhost:{tls_broker.port}"
    shipped = SHIPPED_CONF.read_text().splitlines()
    running = tls_broker.conf_file.read_text().splitlines()
    assert len(shipped) == len(running)
    changed = [(a.strip(), b) for a, b in zip(shipped, running, strict=True) if a != b]
    assert {a for a, _ in changed} == {
        "user mosquitto", "listener 8883", "cafile /etc/mosquitto/town/ca.crt",
        "certfile /etc/mosquitto/town/server.crt", "keyfile /etc/mosquitto/town/server.key",
        "acl_file /etc/mosquitto/town/town-broker.acl", "persistence true",
        "persistence_location /var/lib/mosquitto/",
    }
    assert f"listener {tls_broker.port} 127.0.0.1" in running
    assert "persistence false" in running
    assert f"Config loaded from {tls_broker.conf_file}." in tls_broker.log_file.read_text()


def test_drift_in_the_shipped_config_is_caught(tmp_path):
    conf = tmp_path / "town-broker.conf"
    conf.write_text(SHIPPED_CONF.read_text().replace("listener 8883", "listener 8884"))
    with pytest.raises(BrokerError, match="'listener 8883' exactly once, found 0"):
        render_shipped({"listener 8883": "listener 1"}, conf)


def test_the_shipped_config_is_package_data_of_the_town():
    # Found inside the package, not the checkout, and declared as package data, so an installed package has it.
    town = Path(station.__file__).parent / "town" / "mosquitto"
    assert (SHIPPED_CONF, SHIPPED_ACL) == (town / "town-broker.conf", town / "town-broker.acl")
    assert SHIPPED_CONF.is_file() and SHIPPED_ACL.is_file()
    pyproject = tomllib.loads((Path(station.__file__).parents[1] / "pyproject.toml").read_text())
    assert "mosquitto/*" in pyproject["tool"]["setuptools"]["package-data"]["station.town"]


def test_client_certificates_need_tls_mode(local_broker):
    with pytest.raises(BrokerError, match="tls=True"):
        local_broker.issue_client("st-0001")


def test_tls_restart_keeps_ca_and_client_certificates(tmp_path):
    with LocalBroker(tmp_path, tls=True) as broker:
        cert = broker.issue_client("st-0001")
        ca = broker.ca_file.read_bytes()
        connect(broker, "before", cert).close()
        broker.restart()
        assert broker.ca_file.read_bytes() == ca and broker.issue_client("st-0001") == cert
        connect(broker, "after", cert).close()
    assert not broker.running


def _outward_address() -> str | None:
    """This machine's address on its default route (a UDP connect sends nothing), if it has one."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("10.255.255.255", 1))
        except OSError:
            return None
        addr = s.getsockname()[0]
    return None if addr.startswith("127.") else addr


def test_plain_broker_is_reachable_on_loopback_only(local_broker):
    # Anonymous access is acceptable only because nobody off this machine can reach the port.
    addr = _outward_address()
    if addr is None:
        pytest.skip("no non-loopback IPv4 address to try")
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection((addr, local_broker.port), timeout=2).close()
