# `station town listen|show|pubkey` as a user runs them: a real subprocess listener, a real broker, a publisher.
from __future__ import annotations

import json
import os
import queue
import signal
import stat
import subprocess
import sys
import time

from proclines import wait_line

from station.config import BrokerConfig
from station.journal import Journal
from station.protocol.wire import b64url_decode
from station.publisher import Publisher, PublisherSettings

STATION = [sys.executable, "-c", "import sys; from station.town.cli import add_town_parser; import argparse;"
           "p = argparse.ArgumentParser(); s = p.add_subparsers(required=True); add_town_parser(s);"
           "a = p.parse_args(sys.argv[1:]); sys.exit(a.func(a))"]


def station_town(*args, **kw):
    return subprocess.run([*STATION, "town", *args], capture_output=True, text=True, timeout=30, **kw)


def test_pubkey_creates_private_key_0600(tmp_path):
    key = tmp_path / "town" / "town.key"
    r = station_town("pubkey", "--key", str(key))
    assert r.returncode == 0, r.stderr
    jwk = json.loads(r.stdout)
    assert jwk["kty"] == "OKP" and jwk["kid"] == "town/1"
    assert stat.S_IMODE(os.stat(key).st_mode) == 0o600
    assert json.loads(station_town("pubkey", "--key", str(key)).stdout) == jwk    # stable


def test_listen_subprocess_end_to_end_and_show_json(station_kit, local_broker, tmp_path):
    kit = station_kit
    key = tmp_path / "town.key"
    town_jwk = json.loads(station_town("pubkey", "--key", str(key)).stdout)
    (kit.tmp / "town-trusted.jwk").write_text(json.dumps(town_jwk))
    j = Journal(kit.tmp / "journal.sqlite")
    kit.fill(j, 20)
    db = tmp_path / "town.db"
    listen = subprocess.Popen([*STATION, "town", "listen", "--broker", local_broker.url, "--trust",
                               str(kit.trust_dir), "--db", str(db), "--key", str(key), "--resend-after", "1"],
                              stderr=subprocess.PIPE, text=True)
    events: queue.Queue = queue.Queue()
    pub = None
    try:
        wait_line(listen, "connected", 10, "listener did not connect")
        settings = PublisherSettings.from_config(BrokerConfig(url=local_broker.url, keepalive_s=5), kit.ident,
                                                 kit.tmp / "journal.sqlite", str(kit.tmp / "town-trusted.jwk"))
        pub = Publisher(settings, kit.key, on_event=events.put, clock_synced=lambda: True)
        pub.start()
        deadline = time.monotonic() + 15
        while j.acked_seq() < 20:
            assert time.monotonic() < deadline, "no ack for 20"
            time.sleep(0.05)
        # new results while connected, a positive among them
        j.append(kit.maker("negative", "S-21"), verdict="negative", sample_id="S-21", image_path=None)
        e22 = j.append(kit.maker("positive", "S-22"), verdict="positive", sample_id="S-22", image_path=None)
        pub.notify()
        deadline = time.monotonic() + 15
        while j.acked_seq() < 22:
            assert time.monotonic() < deadline, "no ack for 22"
            time.sleep(0.05)
    finally:
        if pub:
            pub.stop(3)
        listen.send_signal(signal.SIGTERM)
        listen.wait(10)
    r = station_town("show", "--db", str(db), "--json", "--trust", str(kit.trust_dir))
    assert r.returncode == 0, r.stderr
    data = json.loads(r.stdout)
    st = data["stations"][0]
    assert st["station"] == kit.ident.path and st["contiguous"] == 22 and st["gaps"] == []
    last = st["results"][-1]
    assert last["signature_ok"] and last["verdict"] == "positive"
    assert last["message"].encode() == e22.message                       # exactly as received
    body = json.loads(b64url_decode(json.loads(last["message"])["payload"]))
    assert body["seq"] == 22
    text = station_town("show", "--db", str(db)).stdout
    assert "gaps: none" in text and "OK" in text and "refusals: none" in text


def test_listen_refuses_and_show_reports(station_kit, local_broker, tmp_path):
    import paho.mqtt.client as mqtt

    from station.protocol import topics
    kit = station_kit
    db = tmp_path / "town.db"
    listen = subprocess.Popen([*STATION, "town", "listen", "--broker", local_broker.url, "--trust",
                               str(kit.trust_dir), "--db", str(db), "--key", str(tmp_path / "k")],
                              stderr=subprocess.PIPE, text=True)
    try:
        wait_line(listen, "connected", 10)
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        c.connect(local_broker.host, local_broker.port)
        c.loop_start()
        t = topics.topic(kit.ident.grid, kit.ident.id, "result")
        c.publish(t, b'{"protected":"x"}', qos=1).wait_for_publish(5)
        line = wait_line(listen, "REFUSED", 10)
        assert "[malformed]" in line
        c.disconnect()
        c.loop_stop()
    finally:
        listen.send_signal(signal.SIGTERM)
        listen.wait(10)
    text = station_town("show", "--db", str(db)).stdout
    assert "malformed" in text


def test_listener_reports_gap_asks_resend_with_signed_cmd_and_clears_it(station_kit, local_broker, tmp_path):
    import paho.mqtt.client as mqtt

    from station.protocol import topics
    from station.protocol.messages import CMD_TYP
    from station.protocol.signing import jwk_public_key, verify_jws
    kit = station_kit
    key = tmp_path / "town.key"
    town_pub = jwk_public_key(json.loads(station_town("pubkey", "--key", str(key)).stdout))
    j = Journal(kit.tmp / "journal.sqlite")
    kit.fill(j, 5)
    db = tmp_path / "town.db"
    listen = subprocess.Popen([*STATION, "town", "listen", "--broker", local_broker.url, "--trust",
                               str(kit.trust_dir), "--db", str(db), "--key", str(key), "--resend-after", "1"],
                              stderr=subprocess.PIPE, text=True)
    cmds: queue.Queue = queue.Queue()
    try:
        wait_line(listen, "connected", 10)
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        c.on_message = lambda _c, _u, m: cmds.put(bytes(m.payload))
        c.connect(local_broker.host, local_broker.port)
        c.loop_start()
        c.subscribe(topics.topic(kit.ident.grid, kit.ident.id, "cmd"), qos=1)
        t = topics.topic(kit.ident.grid, kit.ident.id, "result")
        for seq in (1, 2, 3, 5):
            c.publish(t, j.get(seq).message, qos=1).wait_for_publish(5)
        line = wait_line(listen, "GAP", 10)
        assert "missing seq 4" in line
        body = verify_jws(cmds.get(timeout=10), town_pub, typ=CMD_TYP)
        assert (body["cmd"], body["from_seq"], body["to_seq"], body["station"]) == ("resend", 4, 4, kit.ident.path)
        assert body["expires"] > time.time() and len(body["nonce"]) >= 16
        c.publish(t, j.get(4).message, qos=1).wait_for_publish(5)
        line = wait_line(listen, "filled", 10)
        c.disconnect()
        c.loop_stop()
    finally:
        listen.send_signal(signal.SIGTERM)
        listen.wait(10)


def test_town_wing_is_registered_lazily_and_listed_in_help():
    # The firmware never imports station.town: `import station.cli` must not load it, and building the parser
    # (what `station --help` does) loads only the wing's CLI and CA modules, never the listener's paho.
    code = ("import sys, station.cli; assert not [m for m in sys.modules if m.startswith('station.town')];"
            "station.cli.build_parser();"
            "assert not [m for m in sys.modules if m.startswith(('paho', 'station.town.listener'))]")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=30)
    r = subprocess.run([sys.executable, "-m", "station", "--help"], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0 and "town" in r.stdout and "certs" in r.stdout
