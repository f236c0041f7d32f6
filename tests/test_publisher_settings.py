# PublisherSettings: one value from the [broker] table, the station identity and the tuning, derived defaults.
from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from station.config import BrokerConfig, StationIdentity
from station.publisher import PublisherSettings

IDENT = StationIdentity(id="st-0001", grid="changchun/nongan/halahai", key_serial=1)


def test_from_config_resolves_relative_tls_files_against_the_home(tmp_path):
    broker = BrokerConfig(url="mqtts://h:8883", ca_file="tls/ca.crt", cert_file="/etc/st.crt", key_file="tls/st.key")
    s = PublisherSettings.from_config(broker, IDENT, tmp_path / "j.sqlite", base_dir=tmp_path)
    assert s.broker.ca_file == str(tmp_path / "tls/ca.crt") and s.broker.key_file == str(tmp_path / "tls/st.key")
    assert s.broker.cert_file == "/etc/st.crt"
    assert broker.ca_file == "tls/ca.crt"          # the config itself is left alone
    assert PublisherSettings.from_config(broker, IDENT, "j.sqlite").broker is broker


def test_derived_defaults_follow_the_broker_table():
    s = PublisherSettings.from_config(BrokerConfig(url="mqtt://h", keepalive_s=7, checkpoint_every=9), IDENT, "j")
    assert s.checkpoint_every == 9 and s.puback_timeout_s == 14.0 and s.keepalive == 7
    assert s.journal_path == Path("j") and s.town_key_path is None and s.max_payload == 131072
    assert PublisherSettings.from_config(BrokerConfig(url="mqtt://h"), IDENT, "j").puback_timeout_s == 60.0
    assert PublisherSettings.from_config(BrokerConfig(url="mqtt://h", keepalive_s=5), IDENT, "j").puback_timeout_s \
        == 10.0
    t = PublisherSettings.from_config(BrokerConfig(url="mqtt://h"), IDENT, "j", checkpoint_every=3,
                                      puback_timeout_s=1.5, max_inflight=0)
    assert t.checkpoint_every == 3 and t.puback_timeout_s == 1.5 and t.window == 1


def test_flow_control_needs_the_town_key():
    b = BrokerConfig(url="mqtt://h")
    assert PublisherSettings.from_config(b, IDENT, "j").ahead_limit is None
    assert PublisherSettings.from_config(b, IDENT, "j", "town.jwk", max_ahead=5).ahead_limit == 5
    assert PublisherSettings.from_config(b, IDENT, "j", "town.jwk").town_key_path == Path("town.jwk")


def test_settings_are_frozen_and_unknown_tuning_is_refused():
    s = PublisherSettings.from_config(BrokerConfig(url="mqtt://h"), IDENT, "j")
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.max_inflight = 5   # type: ignore[misc]
    with pytest.raises(TypeError):
        PublisherSettings.from_config(BrokerConfig(url="mqtt://h"), IDENT, "j", max_inflite=5)
