# Publisher and town listener over mqtts with client certificates and the shipped town ACL; URL/TLS errors.
from __future__ import annotations

import queue
import time

import pytest

from station.config import BrokerConfig
from station.errors import BrokerURLError, TLSFileError
from station.journal import Journal
from station.protocol.mqtt import parse_broker_url, tls_context
from station.publisher import Publisher, PublisherSettings
from station.town.listener import TownBroker, TownListener


def test_tls_end_to_end_with_client_certs_and_shipped_acl(station_kit, tls_broker, tmp_path):
    kit = station_kit
    st_cert = tls_broker.issue_client(kit.ident.id)
    town_cert = tls_broker.issue_client("town-server")
    j = Journal(kit.tmp / "journal.sqlite")
    kit.fill(j, 25)
    town = TownListener(TownBroker(tls_broker.url, str(tls_broker.ca_file), str(town_cert.cert_file),
                                   str(town_cert.key_file), keepalive_s=5), kit.trust_dir, tmp_path / "town.db",
                        kit.town_key)
    town.start()
    assert town.wait_connected(10)
    events: queue.Queue = queue.Queue()
    broker = BrokerConfig(url=tls_broker.url, ca_file=str(tls_broker.ca_file), cert_file=str(st_cert.cert_file),
                          key_file=str(st_cert.key_file), keepalive_s=5)
    pub = Publisher(PublisherSettings.from_config(broker, kit.ident, kit.tmp / "journal.sqlite", str(kit.town_jwk)),
                    kit.key, on_event=events.put)
    pub.start()
    try:
        deadline = time.monotonic() + 15
        while j.acked_seq() < 25:
            assert time.monotonic() < deadline, f"not acked over TLS; events: {list(events.queue)}"
            time.sleep(0.05)
        assert pub.state.connected
    finally:
        pub.stop(3)
        town.stop()


@pytest.mark.parametrize("url, why", [
    ("", "empty"),
    ("http://h:1", "scheme"),
    ("mqtt://:1883", "no host"),
    ("mqtt://h:99999", "port"),
    ("mqtt://h:1883/x", "path"),
    ("mqtt://u:p@h:1883", "credentials"),
])
def test_bad_urls_name_the_url(url, why):
    with pytest.raises(BrokerURLError) as exc:
        parse_broker_url(url)
    assert why in str(exc.value).lower() and url in str(exc.value) and "\n" not in str(exc.value)


def test_urls():
    assert parse_broker_url("mqtt://town.local").port == 1883
    a = parse_broker_url("mqtts://10.0.0.1:8884")
    assert (a.host, a.port, a.tls) == ("10.0.0.1", 8884, True)


def test_tls_files_are_named(tmp_path):
    a = parse_broker_url("mqtts://h:8883")
    with pytest.raises(TLSFileError, match="needs a CA"):
        tls_context(a, None, None, None)
    with pytest.raises(TLSFileError, match=str(tmp_path / "ca.crt")):
        tls_context(a, str(tmp_path / "ca.crt"), None, None)
    (tmp_path / "ca.crt").write_text("x")
    with pytest.raises(TLSFileError, match="client key"):
        tls_context(a, str(tmp_path / "ca.crt"), str(tmp_path / "c.crt"), None)
    with pytest.raises(TLSFileError, match=str(tmp_path / "c.crt")):
        tls_context(a, str(tmp_path / "ca.crt"), str(tmp_path / "c.crt"), str(tmp_path / "c.key"))


def test_publisher_names_missing_tls_file_at_construction(station_kit, tmp_path):
    kit = station_kit
    with pytest.raises(TLSFileError, match="missing.crt"):
        broker = BrokerConfig(url="mqtts://h:8883", ca_file=str(tmp_path / "missing.crt"))
        Publisher(PublisherSettings.from_config(broker, kit.ident, tmp_path / "j.sqlite"), kit.key)
