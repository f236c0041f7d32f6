# Town logic without MQTT (TownStore.ingest): verification, refusals, chain, dedupe, gaps, acks, checkpoints.
from __future__ import annotations

import json

import pytest
import townpg
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from station.config import StationIdentity
from station.journal import Journal
from station.protocol import topics
from station.protocol.messages import ACK_TYP, build_checkpoint, build_withheld, sha256_hex
from station.protocol.signing import public_jwk, verify_jws
from station.protocol.wire import b64url, b64url_decode
from station.town.store import TownStore
from station.town.trust import TrustStore

pg_server, pg_url = townpg.pg_server, townpg.pg_url   # the private PostgreSQL's fixtures


@pytest.fixture(params=["sqlite", "postgresql"])
def town(request, station_kit, tmp_path):
    """Every store guarantee below holds on the embedded SQLite file and on a district's PostgreSQL."""
    db = tmp_path / "town.db" if request.param == "sqlite" else request.getfixturevalue("pg_url")
    st = TownStore(db, TrustStore.load(station_kit.trust_dir), station_kit.town_key, "town/1")
    yield st
    st.close()


@pytest.fixture
def msgs(station_kit):
    j = Journal(station_kit.tmp / "journal.sqlite")
    station_kit.fill(j, 6)
    return [j.get(i).message for i in range(1, 7)]


def rtopic(kit, kind="result", ident=None):
    ident = ident or kit.ident
    return topics.topic(ident.grid, ident.id, kind)


def test_stores_in_order_dedupes_and_acks_highest_contiguous(station_kit, town, msgs):
    kit = station_kit
    for m in msgs:
        assert town.ingest(rtopic(kit), m).action == "stored"
    out = town.ingest(rtopic(kit), msgs[2])
    assert out.action == "duplicate"
    assert town.counters(kit.ident.path) == {"stored": 6, "duplicates": 1}
    topic, ack = town.build_ack(kit.ident.path)
    assert topic.endswith("/st-0001/ack")
    body = verify_jws(ack, kit.town_key.public_key(), typ=ACK_TYP)
    assert body["acked_seq"] == 6 and body["head"] == sha256_hex(msgs[5]) and body["station"] == kit.ident.path
    rows = town.results(kit.ident.path)
    assert [bytes(r["message"]) for r in rows] == msgs     # exactly as received


def test_gap_detected_reported_and_cleared_when_missing_seq_arrives(station_kit, town, msgs):
    kit = station_kit
    for i in (0, 1, 4, 5):
        town.ingest(rtopic(kit), msgs[i])
    assert town.gaps(kit.ident.path) == [(3, 4)]
    assert json.loads(b64url_decode(json.loads(town.build_ack(kit.ident.path)[1])["payload"]))["acked_seq"] == 2
    town.ingest(rtopic(kit), msgs[3])
    assert town.gaps(kit.ident.path) == [(3, 3)]
    out = town.ingest(rtopic(kit), msgs[2])
    assert out.action == "stored" and out.ack_changed
    assert town.gaps(kit.ident.path) == [] and town.contiguous(kit.ident.path) == 6


def test_checkpoint_reveals_truncated_tail_and_is_countersigned(station_kit, town, msgs):
    kit = station_kit
    for m in msgs[:4]:
        town.ingest(rtopic(kit), m)
    cp = build_checkpoint(kit.key, kit.ident.kid, kit.ident.path, 6, sha256_hex(msgs[5]), "1")
    assert town.ingest(rtopic(kit, "checkpoint"), cp).reason == "pending"
    assert town.gaps(kit.ident.path) == [(5, 6)]          # the station said 6 exist: 5..6 missing
    town.ingest(rtopic(kit), msgs[4])
    town.ingest(rtopic(kit), msgs[5])
    body = json.loads(b64url_decode(json.loads(town.build_ack(kit.ident.path)[1])["payload"]))
    assert body["checkpoint"] == {"seq": 6, "head": sha256_hex(msgs[5]), "jws_sha256": sha256_hex(cp)}


def test_checkpoint_with_a_different_head_is_refused(station_kit, town, msgs):
    kit = station_kit
    for m in msgs:
        town.ingest(rtopic(kit), m)
    cp = build_checkpoint(kit.key, kit.ident.kid, kit.ident.path, 5, "ab" * 32, "1")
    out = town.ingest(rtopic(kit, "checkpoint"), cp)
    assert out.action == "refused" and out.code == "checkpoint-mismatch"


def tamper(message: bytes) -> bytes:
    jws = json.loads(message)
    body = json.loads(b64url_decode(jws["payload"]))
    body["verdict"] = "negative" if body["verdict"] == "positive" else "positive"
    jws["payload"] = b64url(json.dumps(body).encode())
    return json.dumps(jws, separators=(",", ":")).encode()   # the canonical wrapping: only the content lies


def test_refusals_are_counted_with_reasons(station_kit, town, msgs, tmp_path):
    kit = station_kit
    path = kit.ident.path
    assert town.ingest(rtopic(kit), msgs[0]).action == "stored"
    cases = {
        "bad-signature": tamper(msgs[1]),
        "malformed": b"{not json",
    }
    # unknown key: same station id, a key serial nobody enrolled
    other = Ed25519PrivateKey.generate()
    ident2 = StationIdentity(id="st-0001", grid=kit.ident.grid, key_serial=7)
    cases["unknown-kid"] = kit.maker(ident=ident2, key=other)(2, sha256_hex(msgs[0]))
    for code, m in cases.items():
        out = town.ingest(rtopic(kit), m)
        assert (out.action, out.code) == ("refused", code), out
    # replayed seq with different content (validly signed): equivocation
    equiv = kit.maker("positive", "S-1")(2, sha256_hex(msgs[0]))
    town.ingest(rtopic(kit), msgs[1])
    out = town.ingest(rtopic(kit), equiv)
    assert out.code == "equivocation"
    # broken prev
    broken = kit.maker("negative", "S-2")(3, "cd" * 32)
    assert town.ingest(rtopic(kit), broken).code == "broken-chain"
    # a station writing under another station's path (its own key, enrolled)
    ident_b = StationIdentity(id="st-0002", grid=kit.ident.grid, key_serial=1)
    key_b = Ed25519PrivateKey.generate()
    (kit.trust_dir / "st-0002.jwk").write_text(json.dumps(public_jwk(key_b.public_key(), ident_b.kid, ident_b.path)))
    town.trust.rescan()
    m_b = kit.maker(ident=ident_b, key=key_b)(3, sha256_hex(msgs[1]))
    assert town.ingest(rtopic(kit), m_b).code == "wrong-path"          # st-0002 publishing under st-0001
    # payload station differs from topic path while kid matches topic
    wrong = kit.maker(ident=StationIdentity(id="st-0001", grid="x/y/z", key_serial=1))(3, sha256_hex(msgs[1]))
    assert town.ingest(rtopic(kit), wrong).code == "wrong-path"
    counts = {(s, c): n for s, c, n in town.refusal_counts()}
    for code in ("bad-signature", "malformed", "unknown-kid", "equivocation", "broken-chain", "wrong-path"):
        assert counts.get((path, code), 0) >= 1, (code, counts)
    assert town.contiguous(path) == 2
    assert all(r[5] for r in town.refusals())                          # every refusal has a reason


def test_withheld_notice_keeps_the_chain_and_the_ack_moving(station_kit, town, msgs):
    kit = station_kit
    town.ingest(rtopic(kit), msgs[0])
    notice = build_withheld(kit.key, kit.ident.kid, kit.ident.path, 2, sha256_hex(msgs[1]), 999999, "oversize")
    assert town.ingest(rtopic(kit), notice).action == "stored"
    assert town.ingest(rtopic(kit), msgs[2]).action == "stored"        # prev checked against the notice hash
    assert town.contiguous(kit.ident.path) == 3
    assert town.ingest(rtopic(kit), msgs[1]).action == "stored"        # the full message upgrades the notice
    assert [r["kind"] for r in town.results(kit.ident.path)] == ["result"] * 3


def test_status_and_foreign_topics(station_kit, town):
    kit = station_kit
    assert town.ingest(rtopic(kit, "status"), b'{"state":"online"}').action == "status"
    assert town.station_info(kit.ident.path)["status"] == {"state": "online"}
    assert town.ingest("other/topic", b"x").action == "ignored"
    assert town.ingest(rtopic(kit, "ack"), b"x").action == "ignored"


def test_station_topic_is_the_topic_of_the_station_path():
    ident = StationIdentity(id="st-0001", grid="d/t/v")
    assert topics.station_topic(ident.path, "cmd") == topics.topic(ident.grid, ident.id, "cmd")
    assert topics.parse(topics.station_topic(ident.path, "ack")) == ("d/t/v", "st-0001", "ack")


def test_a_station_key_signs_only_for_its_own_village(station_kit, tmp_path):
    """The ACL lets st-0001 write under any village's st-0001 path; the trusted JWK binds it to one."""
    kit = station_kit
    from dataclasses import replace

    elsewhere = replace(kit.ident, grid="changchun/nongan/other-village")
    st = TownStore(tmp_path / "t.db", TrustStore.load(kit.trust_dir), kit.town_key, "town/1")
    msg = kit.maker(ident=elsewhere)(1, "0" * 64)
    out = st.ingest(f"nongan/v1/{elsewhere.path}/result", msg)
    assert out.action == "refused" and out.code == "wrong-path" and "signs for" in out.reason
    assert st.ingest(f"nongan/v1/{kit.ident.path}/result", kit.maker()(1, "0" * 64)).action == "stored"


def test_trust_files_without_a_station_path_or_with_a_clashing_kid_are_not_trusted(station_kit, tmp_path):
    kit = station_kit
    unbound = tmp_path / "unbound"
    unbound.mkdir()
    (unbound / "a.jwk").write_text(json.dumps(public_jwk(kit.key.public_key(), kit.ident.kid)))
    assert TrustStore.load(unbound).keys == {}
    (kit.trust_dir / "copy.jwk").write_text((kit.trust_dir / "st-0001.jwk").read_text())
    assert kit.ident.kid not in TrustStore.load(kit.trust_dir).keys
