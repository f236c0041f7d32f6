# Publisher against a real mosquitto: seq-order drain, resend after broker restart, acks, commands,
# oversize quarantine, retained status and last will, end-to-end with the reference town listener.
from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import textwrap
import time

import paho.mqtt.client as mqtt
import pytest

from station.config import BrokerConfig
from station.journal import Journal
from station.lab.rig import wait_for as demo_wait_for
from station.protocol import topics
from station.protocol.messages import build_ack, build_resend, sha256_hex
from station.publisher import Publisher, PublisherSettings
from station.town.listener import TownBroker, TownListener


def wait_for(pred, timeout=10.0, what="condition"):
    return demo_wait_for(pred, timeout, what, interval=0.02)


class Sniffer:
    """A plain MQTT v5 client recording everything under a topic filter."""

    def __init__(self, broker, filt="nongan/v1/#"):
        self.q: queue.Queue = queue.Queue()
        self.c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        ready = queue.Queue()
        self.c.on_connect = lambda c, u, f, rc, p: (c.subscribe(filt, qos=1), None)
        self.c.on_subscribe = lambda c, u, mid, rcs, p: ready.put(1)
        self.c.on_message = lambda c, u, m: self.q.put((m.topic, bytes(m.payload), m.retain))
        self.c.connect(broker.host, broker.port, keepalive=10)
        self.c.loop_start()
        ready.get(timeout=5)

    def publish(self, topic, payload, retain=False):
        self.c.publish(topic, payload, qos=1, retain=retain).wait_for_publish(5)

    def drain(self, timeout=0.3):
        out = []
        while True:
            try:
                out.append(self.q.get(timeout=timeout))
            except queue.Empty:
                return out

    def until(self, pred, timeout=10.0):
        deadline = time.monotonic() + timeout
        seen = []
        while time.monotonic() < deadline:
            try:
                m = self.q.get(timeout=0.05)
            except queue.Empty:
                continue
            seen.append(m)
            if pred(m):
                return m, seen
        raise AssertionError(f"no matching message in {timeout} s; saw {[(t, r) for t, _, r in seen][-5:]}")

    def close(self):
        self.c.disconnect()
        self.c.loop_stop()


def seq_of(payload: bytes) -> int:
    from station.protocol.wire import b64url_decode
    return json.loads(b64url_decode(json.loads(payload)["payload"]))["seq"]


@pytest.fixture
def events():
    return queue.Queue()


def make_pub(kit, broker, events, town=True, **kw):
    cfg = BrokerConfig(url=broker.url, keepalive_s=5, max_payload_bytes=kw.pop("max_payload_bytes", 131072))
    kw.setdefault("reconnect_max_delay_s", 1)
    kw.setdefault("status_interval_s", 5)
    clock_synced = kw.pop("clock_synced", None)
    settings = PublisherSettings.from_config(cfg, kit.ident, kit.tmp / "journal.sqlite",
                                             str(kit.town_jwk) if town else None, **kw)
    p = Publisher(settings, kit.key, on_event=events.put, clock_synced=clock_synced)
    return p


def journal(kit) -> Journal:
    return Journal(kit.tmp / "journal.sqlite")


def topic(kit, kind):
    return topics.topic(kit.ident.grid, kit.ident.id, kind)


def next_event(events, kind, timeout=10.0, seq=None):
    deadline = time.monotonic() + timeout
    seen = []
    while time.monotonic() < deadline:
        try:
            ev = events.get(timeout=0.05)
        except queue.Empty:
            continue
        seen.append(str(ev))
        if ev.kind == kind and (seq is None or ev.seq == seq):
            return ev
    raise AssertionError(f"no {kind} event in {timeout} s; saw {seen}")


def wait_subscribed(pub) -> None:
    """Until the broker has acknowledged the publisher's subscriptions: "connected" is posted when they are
    sent, and an ack published before the broker holds them is, rightly, never delivered."""
    wait_for(lambda: pub._worker.session is not None and pub._worker.session.subscribed_at is not None,
             what="SUBACK of the publisher's subscriptions")


def ack_for(kit, j: Journal, n: int, key=None, station=None, head=None, checkpoint=None) -> bytes:
    e = j.get(n)
    return build_ack(key or kit.town_key, "town/1", station or kit.ident.path, n, head or e.msg_hash, checkpoint)


# ----------------------------------------------------------------------------------------------


def test_delivers_in_seq_order_and_resends_unacked_after_broker_restart(station_kit, local_broker, events):
    kit = station_kit
    j = journal(kit)
    kit.fill(j, 30)
    sniff = Sniffer(local_broker, topic(kit, "result"))
    pub = make_pub(kit, local_broker, events)
    pub.start()
    try:
        next_event(events, "connected")
        _, seen = sniff.until(lambda m: seq_of(m[1]) == 30)
        first = [seq_of(p) for _, p, _ in seen]
        assert first == list(range(1, 31)), "first drain is in seq order"
        wait_for(lambda: pub.state.inflight == 0, what="all PUBACKs")
        # the town acknowledges 1..10 only
        sniff.publish(topic(kit, "ack"), ack_for(kit, j, 10), retain=True)
        next_event(events, "acked", seq=10)
        assert j.acked_seq() == 10
        sniff.close()
        local_broker.stop()
        next_event(events, "disconnected")
        kit.fill(j, 5)   # committed while the broker is down
        pub.notify()
        local_broker.start()
        # the retained ack was lost with the non-persistent broker: re-assert it as the town would
        sniff = Sniffer(local_broker, topic(kit, "result"))
        sniff.publish(topic(kit, "ack"), ack_for(kit, j, 10), retain=True)
        next_event(events, "connected", timeout=15)
        _, seen = sniff.until(lambda m: seq_of(m[1]) == 35, timeout=10)
        seqs = [seq_of(p) for _, p, _ in seen]
        assert seqs == sorted(seqs) and set(range(11, 36)) <= set(seqs), seqs
    finally:
        pub.stop(3)
        sniff.close()


def test_end_to_end_town_listener_acks_and_journal_marks_acked(station_kit, local_broker, events, tmp_path):
    kit = station_kit
    j = journal(kit)
    kit.fill(j, 120)
    town = TownListener(TownBroker(local_broker.url, keepalive_s=5), kit.trust_dir, tmp_path / "town.db",
                        kit.town_key)
    town.start()
    assert town.wait_connected(5)
    pub = make_pub(kit, local_broker, events, checkpoint_every=50)
    pub.start()
    try:
        wait_for(lambda: j.acked_seq() == 120, timeout=15, what="town ack of 120")
        j.append(kit.maker("positive", "P-1"), verdict="positive", sample_id="P-1", image_path=None)
        pub.notify()
        wait_for(lambda: j.acked_seq() == 121, timeout=10, what="ack of the positive")
        # checkpoint at 100 (every 50 → 50, 100) was countersigned by the town inside an ack
        cp = wait_for(lambda: j.latest_checkpoint(countersigned=True), timeout=10, what="countersigned checkpoint")
        assert cp.seq >= 50 and cp.town_jws is not None
        from station.town.store import TownStore
        st = TownStore(tmp_path / "town.db")
        assert st.contiguous(kit.ident.path) == 121
        assert st.gaps(kit.ident.path) == []
        row = st.results(kit.ident.path)[-1]
        assert bytes(row["message"]) == j.get(121).message and row["verdict"] == "positive"
    finally:
        pub.stop(3)
        town.stop()


def test_ack_verification_refuses_bad_signature_wrong_station_and_head_mismatch(station_kit, local_broker, events):
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    kit = station_kit
    j = journal(kit)
    kit.fill(j, 5)
    sniff = Sniffer(local_broker, topic(kit, "result"))
    pub = make_pub(kit, local_broker, events)
    pub.start()
    try:
        next_event(events, "connected")
        wait_subscribed(pub)
        sniff.publish(topic(kit, "ack"), ack_for(kit, j, 3, key=Ed25519PrivateKey.generate()))
        assert "signature" in next_event(events, "refused").detail
        sniff.publish(topic(kit, "ack"), ack_for(kit, j, 3, head="ab" * 32))
        assert "head mismatch" in next_event(events, "refused").detail
        sniff.publish(topic(kit, "ack"), ack_for(kit, j, 3, station="d/t/v/st-9"))
        assert "addressed to station" in next_event(events, "refused").detail
        assert j.acked_seq() == 0
        sniff.publish(topic(kit, "ack"), ack_for(kit, j, 3))
        next_event(events, "acked", seq=3)
        assert j.acked_seq() == 3
    finally:
        pub.stop(3)
        sniff.close()


def test_resend_command_valid_then_refusals(station_kit, local_broker, events):
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    kit = station_kit
    j = journal(kit)
    kit.fill(j, 8)
    sniff = Sniffer(local_broker, topic(kit, "result"))
    pub = make_pub(kit, local_broker, events, clock_synced=lambda: True)
    pub.start()
    try:
        sniff.until(lambda m: seq_of(m[1]) == 8)
        sniff.publish(topic(kit, "ack"), ack_for(kit, j, 8))
        next_event(events, "acked", seq=8)
        sniff.drain(0.2)
        now = int(time.time())
        cmd = build_resend(kit.town_key, "town/1", kit.ident.path, 3, 5, "nonce-0001", now + 60)
        sniff.publish(topic(kit, "cmd"), cmd)
        assert "resend 3..5" in next_event(events, "command").detail
        got = sorted(seq_of(p) for _, p, _ in sniff.drain(0.5))
        assert got == [3, 4, 5]
        for bad, why in [
            (cmd, "already used"),
            (build_resend(kit.town_key, "town/1", kit.ident.path, 1, 2, "nonce-0002", now - 120), "expired"),
            (build_resend(kit.town_key, "town/1", "x/y/z/st-2", 1, 2, "nonce-0003", now + 60), "addressed"),
            (build_resend(Ed25519PrivateKey.generate(), "town/1", kit.ident.path, 1, 2, "nonce-0004", now + 60),
             "signature"),
        ]:
            sniff.publish(topic(kit, "cmd"), bad)
            assert why in next_event(events, "refused").detail
        from station.protocol.messages import CMD_TYP
        from station.protocol.signing import sign_jws
        unknown = sign_jws({"v": 1, "station": kit.ident.path, "cmd": "wipe", "nonce": "nonce-0005",
                            "expires": now + 60}, kit.town_key, "town/1", CMD_TYP)
        sniff.publish(topic(kit, "cmd"), unknown)
        assert "unknown command" in next_event(events, "refused").detail
        assert sniff.drain(0.3) == []
    finally:
        pub.stop(3)
        sniff.close()


def test_oversize_result_is_quarantined_with_a_signed_withheld_notice(station_kit, local_broker, events):
    kit = station_kit
    j = journal(kit)
    kit.fill(j, 2)
    j.append(kit.maker("negative", "BIG", pad=128), verdict="negative", sample_id="BIG", image_path=None)
    kit.fill(j, 2)
    cap = len(j.get(1).message) + 60
    assert len(j.get(3).message) > cap
    sniff = Sniffer(local_broker, topic(kit, "result"))
    pub = make_pub(kit, local_broker, events, max_payload_bytes=cap)
    pub.start()
    try:
        ev = next_event(events, "quarantined", seq=3)
        assert "exceeds" in ev.detail
        msgs = sniff.drain(0.7)
        from station.protocol.signing import jws_header
        kinds = [(jws_header(p)["typ"], seq_of(p)) for _, p, _ in msgs]
        assert ("nongan-withheld+json", 3) in kinds
        assert {s for t, s in kinds if t == "nongan-result+json"} == {1, 2, 4, 5}
        assert j.get(3).quarantined and "exceeds" in j.get(3).quarantined
    finally:
        pub.stop(3)
        sniff.close()


def test_status_online_then_offline_on_clean_stop(station_kit, local_broker, events):
    kit = station_kit
    j = journal(kit)
    kit.fill(j, 3)
    pub = make_pub(kit, local_broker, events)
    pub.start()
    next_event(events, "connected")
    pub.update_status(state="idle", disk_pct=12.5)
    sniff = Sniffer(local_broker, topic(kit, "status"))
    try:
        _, p, retained = sniff.until(lambda m: json.loads(m[1]).get("activity") == "idle")[0]
        st = json.loads(p)
        assert st["state"] == "online" and st["station"] == kit.ident.path and st["last_seq"] == 3
        assert st["disk_pct"] == 12.5 and "version" in st
        pub.stop(3)
        _, p, _ = sniff.until(lambda m: json.loads(m[1])["state"] == "offline")[0]
    finally:
        pub.stop(1)
        sniff.close()


CHILD = textwrap.dedent("""
    import sys, time, json
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from station.config import BrokerConfig, StationIdentity
    from station.publisher import Publisher, PublisherSettings
    ident = StationIdentity(id="st-0001", grid="changchun/nongan/halahai", key_serial=1)
    p = Publisher(PublisherSettings.from_config(BrokerConfig(url=sys.argv[1], keepalive_s=5), ident, sys.argv[2]),
                  Ed25519PrivateKey.generate(), on_event=lambda ev: print(ev, flush=True))
    p.start()
    time.sleep(600)
""")


def test_last_will_offline_when_publisher_process_is_sigkilled(station_kit, local_broker, tmp_path):
    kit = station_kit
    sniff = Sniffer(local_broker, topic(kit, "status"))
    child = subprocess.Popen([sys.executable, "-c", CHILD, local_broker.url, str(tmp_path / "child.sqlite")],
                             stdout=subprocess.PIPE, text=True)
    try:
        assert "connected" in child.stdout.readline()
        sniff.until(lambda m: json.loads(m[1])["state"] == "online")
        os.kill(child.pid, signal.SIGKILL)
        child.wait(5)
        # keepalive 5 s: the broker sends the will after 1.5 x keepalive at most
        _, p, _ = sniff.until(lambda m: json.loads(m[1])["state"] == "offline", timeout=12)[0]
        assert "last will" in json.loads(p)["reason"]
        sniff.close()
        late = Sniffer(local_broker, topic(kit, "status"))    # a late subscriber sees the retained offline
        _, p, retained = late.until(lambda m: True)[0]
        assert retained and json.loads(p)["state"] == "offline"
        late.close()
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()


def test_positive_is_not_delayed_behind_a_backlog(station_kit, local_broker, events):
    kit = station_kit
    j = journal(kit)
    kit.fill(j, 2000)
    sniff = Sniffer(local_broker, topic(kit, "result"))
    pub = make_pub(kit, local_broker, events, max_inflight=50, max_ahead=None)   # no town acks here
    pub.start()
    try:
        next_event(events, "connected")
        sniff.until(lambda m: seq_of(m[1]) == 200)     # drain is under way
        e = j.append(kit.maker("positive", "P-9"), verdict="positive", sample_id="P-9", image_path=None)
        t0 = time.monotonic()
        pub.notify()
        _, seen = sniff.until(lambda m: seq_of(m[1]) == e.seq, timeout=5)
        dt = time.monotonic() - t0
        assert 2000 not in {seq_of(p) for _, p, _ in seen}, "the positive overtook the backlog"
        assert dt < 2.0
        assert pub.state.inflight <= 50 + 50
    finally:
        pub.stop(3)
        sniff.close()


def test_supervisor_rebuilds_a_client_whose_network_thread_died(station_kit, local_broker, events):
    kit = station_kit
    j = journal(kit)
    kit.fill(j, 3)
    pub = make_pub(kit, local_broker, events)
    pub.start()
    try:
        next_event(events, "connected")
        s = pub._worker.session
        s.client._thread_terminate = True      # simulate the paho thread dying silently
        ev = next_event(events, "rebuilt", timeout=10)
        assert "thread" in ev.detail
        next_event(events, "connected", timeout=10)
        assert pub.state.rebuilds == 1 and pub.state.connected
    finally:
        pub.stop(3)


def test_checkpoint_is_signed_and_published(station_kit, local_broker, events):
    from station.protocol.messages import CHECKPOINT_TYP
    from station.protocol.signing import verify_jws

    kit = station_kit
    j = journal(kit)
    kit.fill(j, 7)
    sniff = Sniffer(local_broker, topic(kit, "checkpoint"))
    pub = make_pub(kit, local_broker, events, checkpoint_every=5)
    pub.start()
    try:
        _, p, _ = sniff.until(lambda m: True)[0]
        body = verify_jws(p, kit.key.public_key(), typ=CHECKPOINT_TYP)
        assert body["seq"] == 7 and body["head"] == j.get(7).msg_hash and body["station"] == kit.ident.path
        cp = j.latest_checkpoint()
        assert cp.seq == 7 and sha256_hex(cp.station_jws) == sha256_hex(p)
    finally:
        pub.stop(3)
        sniff.close()


def test_supervisor_rebuilds_when_pubacks_stop_and_resends_after(station_kit, local_broker, events):
    """A frozen broker (SIGSTOP) keeps the TCP connection open but answers nothing: a wedge."""
    kit = station_kit
    j = journal(kit)
    kit.fill(j, 3)
    sniff = Sniffer(local_broker, topic(kit, "result"))
    pub = make_pub(kit, local_broker, events, puback_timeout_s=1.5)
    pub.start()
    try:
        next_event(events, "connected")
        sniff.until(lambda m: seq_of(m[1]) == 3)
        os.kill(local_broker.pid, signal.SIGSTOP)
        kit.fill(j, 2)
        pub.notify()
        ev = next_event(events, "rebuilt", timeout=10)
        assert "PUBACK" in ev.detail
        os.kill(local_broker.pid, signal.SIGCONT)
        next_event(events, "connected", timeout=15)
        sniff.until(lambda m: seq_of(m[1]) == 5, timeout=10)
    finally:
        os.kill(local_broker.pid, signal.SIGCONT)
        pub.stop(3)
        sniff.close()


def test_flow_control_on_town_ack_and_rewind_when_the_ack_stalls(station_kit, local_broker, events):
    kit = station_kit
    j = journal(kit)
    kit.fill(j, 20)
    sniff = Sniffer(local_broker, topic(kit, "result"))
    pub = make_pub(kit, local_broker, events, max_ahead=5, ack_stall_s=1.0)
    pub.start()
    try:
        _, seen = sniff.until(lambda m: seq_of(m[1]) == 5)
        assert sniff.drain(0.5) == []                       # nothing beyond acked (0) + 5
        sniff.publish(topic(kit, "ack"), ack_for(kit, j, 5))
        _, seen = sniff.until(lambda m: seq_of(m[1]) == 10)
        assert [seq_of(p) for _, p, _ in seen] == [6, 7, 8, 9, 10]
        # the town "lost" 6..10 and acks nothing more: after ack_stall_s the station resends from 6
        _, seen = sniff.until(lambda m: seq_of(m[1]) == 6, timeout=5)
    finally:
        pub.stop(3)
        sniff.close()


def test_tail_lost_by_the_town_is_resent_when_the_ack_stays_short(station_kit, local_broker, events):
    kit = station_kit
    j = journal(kit)
    kit.fill(j, 4)
    sniff = Sniffer(local_broker, topic(kit, "result"))
    pub = make_pub(kit, local_broker, events, ack_stall_s=1.0)
    pub.start()
    try:
        sniff.until(lambda m: seq_of(m[1]) == 4)
        sniff.publish(topic(kit, "ack"), ack_for(kit, j, 2))      # the town stored only 1..2
        next_event(events, "acked", seq=2)
        _, seen = sniff.until(lambda m: seq_of(m[1]) == 4, timeout=5)
        assert [seq_of(p) for _, p, _ in seen] == [3, 4]
    finally:
        pub.stop(3)
        sniff.close()


def test_broker_killed_mid_drain_nothing_lost_town_contiguous(station_kit, local_broker, events, tmp_path):
    from station.town.store import TownStore

    kit = station_kit
    j = journal(kit)
    kit.fill(j, 1500)
    town = TownListener(TownBroker(local_broker.url, keepalive_s=5), kit.trust_dir, tmp_path / "town.db",
                        kit.town_key)
    town.start()
    assert town.wait_connected(5)
    pub = make_pub(kit, local_broker, events)
    pub.start()
    try:
        wait_for(lambda: j.acked_seq() >= 300, timeout=15, what="drain under way")
        local_broker.kill()                      # power cut at the broker, mid-drain
        time.sleep(1.0)
        j.append(kit.maker("positive", "P-1"), verdict="positive", sample_id="P-1", image_path=None)
        pub.notify()
        local_broker.start()
        wait_for(lambda: j.acked_seq() == 1501, timeout=40, what="everything acked after the broker restart")
    finally:
        pub.stop(3)
        town.stop()
    st = TownStore(tmp_path / "town.db")
    path = kit.ident.path
    assert st.contiguous(path) == 1501 and st.gaps(path) == [] and st.refusals() == []
    assert [bytes(r["message"]) for r in st.results(path)] == [j.get(i).message for i in range(1, 1502)]


def test_wedge_reason_names_each_kind_of_wedge():
    from station.publisher.reports import Health
    from station.publisher.supervisor import wedge_reason

    limits = {"puback_timeout_s": 10.0, "connect_stuck_s": 600.0}
    up = Health(gen=1, connected=True, thread_alive=True)
    assert wedge_reason(up, **limits) is None
    assert wedge_reason(Health(gen=1, connected=True, thread_alive=False), **limits) \
        == "paho network thread died while connected"
    # oldest in flight sent at 50, last PUBACK at 60: seen at 71 and at 69
    stuck = {"gen": 1, "connected": True, "thread_alive": True, "inflight": 7}
    assert wedge_reason(Health(**stuck, oldest_inflight_age_s=21.0, last_puback_age_s=11.0), **limits) \
        == "no PUBACK for 11 s with 7 in flight"
    assert wedge_reason(Health(**stuck, oldest_inflight_age_s=19.0, last_puback_age_s=9.0), **limits) \
        is None     # a PUBACK 9 s ago: still moving
    # connecting since 100: the paho thread ended (seen at 103 and at 101), or alive but no CONNACK (at 701)
    assert wedge_reason(Health(gen=1, thread_alive=False, connecting_for_s=3.0), **limits) \
        == "paho network thread ended before connecting"
    assert wedge_reason(Health(gen=1, thread_alive=False, connecting_for_s=1.0), **limits) is None
    assert wedge_reason(Health(gen=1, thread_alive=True, connecting_for_s=601.0), **limits) \
        == "no connection for 601 s"
