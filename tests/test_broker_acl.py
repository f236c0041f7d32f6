# The shipped town broker config and ACL, run by a real mosquitto: who may connect, publish and read what.
from __future__ import annotations

import socket
import ssl
import time

import paho.mqtt.client as mqtt
import pytest
from brokers import connect

from station.lab.broker import MESSAGE_SIZE_LIMIT, TOWN_SERVER
from station.town import ca as certs

GRID = "d01/t01/v01"
OWN = f"nongan/v1/{GRID}/st-0001"
OTHER = f"nongan/v1/{GRID}/st-0002"
NOT_AUTHORIZED = 135  # MQTT 5 reason code


@pytest.fixture
def town(tls_broker):
    client = connect(tls_broker, "town-listener", tls_broker.issue_client(TOWN_SERVER))
    client.subscribe("nongan/v1/#")
    yield client
    client.close()


@pytest.fixture
def station(tls_broker):
    client = connect(tls_broker, "st-0001-test", tls_broker.issue_client("st-0001"))
    yield client
    client.close()


def _only(client, timeout: float = 0.5) -> list[tuple[str, bytes]]:
    """The next message plus anything else arriving shortly after it."""
    first = client.next_message()
    return [(m.topic, m.payload) for m in [first, *client.received(timeout)]]


def test_station_publishes_under_its_own_path_and_town_receives_it(town, station):
    for kind in ("result", "status", "image", "checkpoint"):
        assert station.publish(f"{OWN}/{kind}", kind.encode()) == 0
        assert _only(town, 0) == [(f"{OWN}/{kind}", kind.encode())]


def test_publish_under_another_station_is_dropped_silently_under_mqtt311(town, station):
    # MQTT 3.1.1 has no negative PUBACK: the station is told "success" for a message nobody gets.
    assert station.publish(f"{OTHER}/result", b"forged") == 0
    station.publish(f"{OWN}/result", b"sentinel")
    # Same publisher, same subscriber, QoS 1: delivery is in order, so a forged message would come first.
    assert _only(town) == [(f"{OWN}/result", b"sentinel")]


def test_publish_under_another_station_is_refused_visibly_under_mqtt5(tls_broker, town):
    st = connect(tls_broker, "st-0001-v5", tls_broker.issue_client("st-0001"), protocol=mqtt.MQTTv5)
    try:
        assert st.publish(f"{OTHER}/result", b"forged") == NOT_AUTHORIZED
        assert st.publish(f"nongan/v1/{GRID}/st-0001x/result", b"prefix") == NOT_AUTHORIZED
        assert st.publish(f"{OWN}/result", b"sentinel") == 0
        assert _only(town) == [(f"{OWN}/result", b"sentinel")]
    finally:
        st.close()


def test_mqtt_username_is_ignored_in_favour_of_the_certificate(tls_broker, town):
    # A station claiming the town server's username in CONNECT still has only its certificate's rights.
    st = connect(tls_broker, "impostor", tls_broker.issue_client("st-0001"), protocol=mqtt.MQTTv5,
                 username=TOWN_SERVER)
    try:
        assert st.publish(f"{OTHER}/ack", b"forged ack") == NOT_AUTHORIZED
        assert st.publish(f"{OWN}/status", b"sentinel") == 0
        assert _only(town) == [(f"{OWN}/status", b"sentinel")]
    finally:
        st.close()
    assert _logged(tls_broker, "as impostor (p5, c1, k30, u'st-0001')")


def test_station_reads_only_its_own_ack_and_cmd(tls_broker, town, station):
    station.subscribe(f"{OTHER}/cmd")
    station.subscribe(f"{OTHER}/ack")
    station.subscribe(f"{OTHER}/result")
    station.subscribe(f"{OWN}/cmd")
    station.subscribe(f"{OWN}/ack")
    town.publish(f"{OTHER}/cmd", b"for st-0002")
    town.publish(f"{OTHER}/ack", b"for st-0002")
    town.publish(f"{OWN}/cmd", b"for st-0001")
    town.publish(f"{OWN}/ack", b"ack st-0001")
    assert _only(station) == [(f"{OWN}/cmd", b"for st-0001"), (f"{OWN}/ack", b"ack st-0001")]
    # A second station's result is invisible too, even through a wildcard subscription.
    other = connect(tls_broker, "st-0002-test", tls_broker.issue_client("st-0002"))
    try:
        station.subscribe("nongan/v1/#")
        other.publish(f"{OTHER}/result", b"st-0002 result")
        town.next_message()  # the town got it, so the broker has routed it
        assert station.received(0.5) == []
    finally:
        other.close()


def test_town_server_writes_only_ack_and_cmd(tls_broker, town):
    v5 = connect(tls_broker, "town-v5", tls_broker.issue_client(TOWN_SERVER), protocol=mqtt.MQTTv5)
    try:
        assert v5.publish(f"{OWN}/result", b"forged by town") == NOT_AUTHORIZED
        assert v5.publish(f"{OWN}/ack", b"ack") == 0
        assert _only(town) == [(f"{OWN}/ack", b"ack")]
    finally:
        v5.close()


def test_oversized_message_is_dropped_by_the_shipped_limit(tls_broker, town, station):
    # MQTT 3.1.1: PUBACK "success" and silence, hence the station's client-side cap. (MQTT 5: see
    # test_localbroker.py, paho cannot even parse the broker's answer.)
    assert station.publish(f"{OWN}/image", b"x" * (MESSAGE_SIZE_LIMIT + 1)) == 0
    assert station.publish(f"{OWN}/image", b"y" * MESSAGE_SIZE_LIMIT) == 0
    assert _only(town) == [(f"{OWN}/image", b"y" * MESSAGE_SIZE_LIMIT)]


def _logged(broker, text: str, timeout: float = 3) -> bool:
    """mosquitto writes its log line after answering the client, so give it a moment."""
    deadline = time.monotonic() + timeout
    while text not in broker.log_file.read_text():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def _handshake_and_read(broker, client) -> None:
    """A real TLS handshake to the broker; under TLS 1.3 a client-cert rejection arrives on first read."""
    ctx = broker.ssl_context(client)
    with socket.create_connection(("127.0.0.1", broker.port), timeout=5) as raw:
        with ctx.wrap_socket(raw, server_hostname=broker.host) as tls:
            tls.recv(1)


def test_client_without_certificate_is_refused(tls_broker):
    with pytest.raises(ssl.SSLError, match="CERTIFICATE_REQUIRED"):
        _handshake_and_read(tls_broker, None)
    assert _logged(tls_broker, "peer did not return a certificate")


def test_certificate_from_another_ca_is_refused(tls_broker, tmp_path):
    certs.init_ca(tmp_path / "rogue-ca", name="Rogue CA")
    rogue = certs.issue(tmp_path / "rogue-ca", "st-0001", tmp_path / "rogue")
    with pytest.raises(ssl.SSLError, match="UNKNOWN_CA"):
        _handshake_and_read(tls_broker, rogue)
    assert _logged(tls_broker, "certificate verify failed")


def test_valid_certificate_passes_the_same_handshake(tls_broker):
    # The control for the two refusals above: the broker now waits for CONNECT instead of failing.
    with pytest.raises(TimeoutError):
        ctx = tls_broker.ssl_context(tls_broker.issue_client("st-0001"))
        with socket.create_connection(("127.0.0.1", tls_broker.port), timeout=1) as raw:
            with ctx.wrap_socket(raw, server_hostname=tls_broker.host) as tls:
                tls.recv(1)


def test_station_refuses_a_broker_with_a_certificate_from_another_ca(tls_broker, tmp_path):
    certs.init_ca(tmp_path / "other-ca")
    ctx = ssl.create_default_context(cafile=str(tmp_path / "other-ca" / "ca.crt"))
    paho = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="picky")
    paho.tls_set_context(ctx)
    with pytest.raises(ssl.SSLCertVerificationError):
        paho.connect(tls_broker.host, tls_broker.port)


def test_station_cannot_write_retained_junk_on_its_ack_cmd_or_invented_topics(tls_broker, town):
    """Issue 8: the ACL granted '<station>/#', so a station could write retained junk on its own ack and cmd
    topics (read back by it at every connect) and invent paths below its id."""
    st = connect(tls_broker, "st-0001-junk", tls_broker.issue_client("st-0001"), protocol=mqtt.MQTTv5)
    try:
        for topic in (f"{OWN}/ack", f"{OWN}/cmd", f"{OWN}/x", f"{OWN}/result/deeper", f"{OWN}/image/a/b"):
            assert st.publish(topic, b"junk", retain=True) == NOT_AUTHORIZED, topic
        assert st.publish(f"{OWN}/status", b"sentinel", retain=True) == 0
        assert _only(town) == [(f"{OWN}/status", b"sentinel")]
    finally:
        st.close()
    # Nothing retained on the ack/cmd topics: a fresh subscriber to them gets nothing.
    reader = connect(tls_broker, "st-0001-reader", tls_broker.issue_client("st-0001"))
    try:
        reader.subscribe(f"{OWN}/ack")
        reader.subscribe(f"{OWN}/cmd")
        assert reader.received(0.5) == []
    finally:
        reader.close()


def test_shipped_config_sets_per_client_limits():
    from station.lab.broker import SHIPPED_CONF

    lines = {line.split()[0]: line.split()[1] for line in SHIPPED_CONF.read_text().splitlines()
             if line.strip() and not line.startswith("#")}
    assert lines["max_inflight_messages"] == "20" and lines["max_keepalive"] == "300"
    assert int(lines["max_queued_bytes"]) > 0 and int(lines["max_connections"]) > 0
