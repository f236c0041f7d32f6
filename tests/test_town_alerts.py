# Town alerts with real parts: raised in the ingest transaction, delivered over real HTTP to a receiver in the
# test (http.server on 127.0.0.1), through a real Mosquitto and listener for the end-to-end case.
from __future__ import annotations

import json
import re
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import paho.mqtt.client as mqtt
import pytest
import townpg
from paho.mqtt.enums import CallbackAPIVersion
from proclines import wait_line

from station.errors import TownOptionError
from station.protocol import topics
from station.protocol.messages import sha256_hex
from station.protocol.result import GENESIS_PREV, RESULT_TYP, build_result_payload
from station.protocol.signing import sign_jws
from station.town import alerts
from station.town.delivery import AlertDelivery
from station.town.listener import TownBroker, TownListener
from station.town.store import TownStore
from station.town.trust import TrustStore
from station.town.webhooks import Webhook, body

pg_server, pg_url = townpg.pg_server, townpg.pg_url   # the private PostgreSQL's fixtures


class Receiver:
    """A webhook target on 127.0.0.1: records every POST (arrival time, parsed JSON); answers `reply`."""

    def __init__(self, port: int = 0, reply: bytes = b'{"errcode":0,"errmsg":"ok"}'):
        self.got: list[tuple[float, dict]] = []
        self.reply = reply
        outer = self

        class H(BaseHTTPRequestHandler):
            def do_POST(self):
                data = self.rfile.read(int(self.headers["Content-Length"]))
                outer.got.append((time.monotonic(), json.loads(data)))
                r = outer.reply if isinstance(outer.reply, bytes) else outer.reply.pop(0)
                self.send_response(200)
                self.send_header("Content-Length", str(len(r)))
                self.end_headers()
                self.wfile.write(r)

            def log_message(self, *a):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), H)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def until(cond, timeout=10.0, what="condition"):
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, f"timed out after {timeout} s waiting for {what}"
        time.sleep(0.02)


@pytest.fixture(params=["sqlite", "postgresql"])
def town(request, station_kit, tmp_path):
    """Alerts and their delivery on the embedded SQLite file and on a district's PostgreSQL."""
    db = tmp_path / "town.db" if request.param == "sqlite" else request.getfixturevalue("pg_url")
    st = TownStore(db, TrustStore.load(station_kit.trust_dir), station_kit.town_key, "town/1")
    yield st
    st.close()


def rtopic(kit, kind="result"):
    return topics.topic(kit.ident.grid, kit.ident.id, kind)


def chain(kit, verdicts, sample=None):
    """Signed, chained result messages, one per verdict."""
    out, prev = [], GENESIS_PREV
    for i, v in enumerate(verdicts, 1):
        m = kit.maker(v, sample or f"S-{i}")(i, prev)
        out.append(m)
        prev = sha256_hex(m)
    return out


def kinds(store):
    return [a.kind for a in reversed(alerts.recent(store.db))]


def test_alerts_are_raised_in_the_ingest_transaction(station_kit, town):
    kit = station_kit
    msgs = chain(kit, ["negative", "positive", "negative"])
    with pytest.raises(RuntimeError):
        with town.batch():
            assert town.ingest(rtopic(kit), msgs[0]).alerts == ()
            assert town.ingest(rtopic(kit), msgs[1]).alerts == ("positive",)
            raise RuntimeError("crash before COMMIT")
    assert kinds(town) == [] and town.results(kit.ident.path) == []     # neither result nor alert survived
    for m in msgs:
        town.ingest(rtopic(kit), m)
    assert kinds(town) == ["positive"]
    a = alerts.recent(town.db)[0]
    assert (a.station, a.seq, a.detail["sample"], a.detail["analyte"]) == (kit.ident.path, 2, "S-2", "carbofuran")
    assert town.ingest(rtopic(kit), msgs[1]).action == "duplicate" and kinds(town) == ["positive"]


def test_confirmed_positive_gap_equivocation_qc_and_silence(station_kit, town):
    kit = station_kit
    path = kit.ident.path
    m1 = kit.maker("positive", "S-7")(1, GENESIS_PREV)
    m2 = kit.maker("positive", "S-7")(2, sha256_hex(m1))            # the re-test of S-7 is positive again
    town.ingest(rtopic(kit), m1)
    assert town.ingest(rtopic(kit), m2).alerts == ("confirmed-positive",)
    assert alerts.recent(town.db)[0].detail["first"] == f"{path}#1"
    m5 = kit.maker("negative", "S-9")(5, "ab" * 32)                  # seq 3..4 never arrived
    assert town.ingest(rtopic(kit), m5).alerts == ("gap",)
    assert alerts.recent(town.db)[0].detail["missing"] == "3..4"
    m4 = kit.maker("negative", "S-8")(4, "cd" * 32)
    out = town.ingest(rtopic(kit), m4)
    assert out.code == "broken-chain" and out.alerts == ("broken-chain",)   # seq 5's prev is not seq 4's hash
    other = kit.maker("negative", "S-other")(2, sha256_hex(m1))
    assert town.ingest(rtopic(kit), other).alerts == ("equivocation",)
    # A QC run on reference material (a record shape the firmware does not produce yet) that misses
    payload = build_result_payload(
        seq=6, prev=sha256_hex(m5), station_path=path, station_id=kit.ident.id,
        boot={"counter": 1, "monotonic_s": 1.0}, read_at="2026-11-24T00:00:00Z", clock_synced=True,
        sample={"id": "QC-1", "producer": None, "qc": "expect-positive"},
        strip={"type": "pesticide-generic", "analyte": "carbofuran", "lot": None, "slot": 0},
        reading={"tc_ratio": 0.9, "c_area": 1, "t_area": 1, "c_peak": 1, "t_peak": 1, "snr": 9},
        verdict="negative", quality=[], calibration={"id": None, "cutoff": 0.6}, image_sha256=None, source="camera")
    assert town.ingest(rtopic(kit), sign_jws(payload, kit.key, kit.ident.kid, RESULT_TYP)).alerts == ("qc-failed",)
    # junk from nobody raises no alert; a retained status replayed on subscribe is not a sign of life
    assert town.ingest(rtopic(kit), b"{junk").alerts == ()
    t0 = time.time()
    town.ingest(rtopic(kit, "status"), b'{"state":"online"}', now=t0)
    town.ingest(rtopic(kit, "status"), b'{"state":"online"}', now=t0 + 500, retained=True)
    assert town.check_silent(600, t0 + 300) == []
    assert town.check_silent(600, t0 + 700) == [path]
    assert town.check_silent(600, t0 + 900) == []                  # once per silence
    town.ingest(rtopic(kit, "status"), b'{"state":"online"}', now=t0 + 1000)
    assert town.check_silent(600, t0 + 1700) == [path]             # a new silence after a sign of life
    assert kinds(town) == ["positive", "confirmed-positive", "gap", "broken-chain", "equivocation", "qc-failed",
                           "silent", "silent"]


def test_positive_reaches_the_webhook_through_broker_and_listener(station_kit, local_broker, tmp_path):
    """The delivery threads poll only once a minute here, so arrival within seconds proves the commit wakes them."""
    kit = station_kit
    rx = Receiver()
    listener = TownListener(TownBroker(local_broker.url), kit.trust_dir, tmp_path / "town.db", kit.town_key,
                            webhooks=[Webhook(rx.url)])
    listener.delivery = AlertDelivery(tmp_path / "town.db", [Webhook(rx.url)], poll_s=60.0)
    listener.start()
    pub = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    try:
        assert listener.wait_connected(10)
        pub.connect(local_broker.host, local_broker.port)
        pub.loop_start()
        time.sleep(0.5)                         # the delivery thread has set its cursor and sleeps on a minute poll
        m1, m2 = chain(kit, ["negative", "positive"])
        pub.publish(rtopic(kit), m1, qos=1).wait_for_publish(5)
        t0 = time.monotonic()
        pub.publish(rtopic(kit), m2, qos=1).wait_for_publish(5)
        until(lambda: rx.got, 10, "the positive at the webhook")
        latency = rx.got[0][0] - t0
        doc = rx.got[0][1]
        assert (doc["kind"], doc["seq"], doc["station"], doc["detail"]["sample"]) == \
            ("positive", 2, kit.ident.path, "S-2"), doc
        assert latency < 5.0, f"alert took {latency:.2f} s"   # woken by the commit, not the 60 s poll
    finally:
        pub.loop_stop()
        listener.stop()
        rx.close()


def test_receiver_that_is_down_gets_the_alert_later_even_across_a_restart(station_kit, town, tmp_path):
    kit = station_kit
    port = free_port()
    hook = Webhook(f"http://127.0.0.1:{port}/hook", "wecom")
    d = AlertDelivery(town.target, [hook], backoff_s=(0.2,))
    d.start()
    time.sleep(0.3)
    for m in chain(kit, ["positive", "negative", "positive"]):
        town.ingest(rtopic(kit), m)
    d.wake()
    time.sleep(1.0)                             # several refused connections, nothing delivered
    d.stop()
    assert d.sent[hook.url] == 0
    d = AlertDelivery(town.target, [hook], backoff_s=(0.2,))   # the town server restarted, receiver still down
    d.start()
    time.sleep(0.5)
    rx = Receiver(port)
    try:
        until(lambda: len(rx.got) == 2, 10, "both positives after the receiver came up")
        texts = [g[1]["markdown"]["content"] for g in rx.got]
        assert all(g[1]["msgtype"] == "markdown" for g in rx.got)
        assert "#1" in texts[0] and "#3" in texts[1] and "阳性检出" in texts[0] and "S-1" in texts[0]
    finally:
        d.stop()
        rx.close()


def test_rate_limit_aggregates_a_burst_and_robot_errors_are_retried(station_kit, town):
    kit = station_kit
    # the robot refuses the first message for going too fast (errcode 45009): it must come again
    rx = Receiver(reply=[b'{"errcode":45009,"errmsg":"api freq out of limit"}'] +
                  [b'{"errcode":0,"errmsg":"ok"}'] * 100)
    hook = Webhook(rx.url, "dingtalk", rate_per_min=20)
    d = AlertDelivery(town.target, [hook], backoff_s=(0.2,))
    d.start()
    try:
        time.sleep(0.3)
        with town.batch():
            for m in chain(kit, ["positive"] * 30):
                town.ingest(rtopic(kit), m)
        d.wake()
        until(lambda: len(rx.got) >= 20, 15, "20 robot messages")
        time.sleep(1.0)
        assert len(rx.got) == 20, "the rate limit of 20 messages a minute was exceeded"
        texts = [g[1]["markdown"]["text"] for g in rx.got]
        assert texts[0] == texts[1]                           # refused once, sent again
        assert "汇总（12 条）" in texts[-1]                  # 18 alone, then the 12 left in one aggregate
        singles = [re.findall(r"#(\d+) ", t) for t in texts[1:-1]]
        assert all(len(s) == 1 for s in singles)
        listed = re.findall(r"#(\d+) ", texts[-1])
        assert sorted(int(s) for s in [x[0] for x in singles] + listed) == list(range(1, 31))
    finally:
        d.stop()
        rx.close()


def test_webhook_parsing_and_formats():
    assert Webhook.parse("https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=x,wecom").fmt == "wecom"
    assert Webhook.parse("http://127.0.0.1:9/h").fmt == "json"
    with pytest.raises(TownOptionError, match="format 'slack' is not one of"):
        Webhook.parse("http://h/x,slack")
    with pytest.raises(TownOptionError, match="must start with http"):
        Webhook.parse("ftp://h/x")
    a = alerts.Alert(1, "silent", "d/t/v/st-1", None, "2026-11-24T00:00:00Z", {"last_seen": "x"})
    assert json.loads(body(Webhook("http://h", "wecom-text"), [a]))["text"]["content"].startswith("【检测站失联】")


def test_listen_command_sends_positive_and_silence_alerts(station_kit, local_broker, tmp_path):
    """`station town listen --webhook … --silent-after 2` as a user runs it (a subprocess)."""
    import subprocess
    import sys

    kit = station_kit
    rx = Receiver()
    listen = subprocess.Popen([sys.executable, "-m", "station", "town", "listen", "--broker", local_broker.url,
                               "--trust", str(kit.trust_dir), "--db", str(tmp_path / "town.db"),
                               "--webhook", f"{rx.url},json", "--silent-after", "2"],
                              stderr=subprocess.PIPE, text=True)
    pub = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    try:
        wait_line(listen, "connected", 15, "listener did not connect")
        pub.connect(local_broker.host, local_broker.port)
        pub.loop_start()
        time.sleep(0.5)
        (m1,) = chain(kit, ["positive"])
        pub.publish(rtopic(kit), m1, qos=1).wait_for_publish(5)
        until(lambda: [g for g in rx.got if g[1]["kind"] == "silent"], 20, "the silence alert")
        got = [g[1]["kind"] for g in rx.got]
        assert got[0] == "positive" and got.count("silent") == 1, got
    finally:
        pub.loop_stop()
        listen.terminate()
        listen.wait(10)
        rx.close()
