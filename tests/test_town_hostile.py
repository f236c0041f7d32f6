# Issue 8, town side: hostile bytes judged one message at a time, canonical envelopes, a `town show` that
# survives junk, and refusals that cannot fill the disk or the log (defects 4, 7, 8).
from __future__ import annotations

import json
import logging
import sqlite3
import subprocess
import sys
import time

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from station.config import StationIdentity
from station.errors import NonCanonicalError, SignatureError, WireFormatError
from station.lab import chaos_poison
from station.lab.attacks import Attack, send
from station.protocol import topics
from station.protocol.signing import public_jwk, verify_jws
from station.protocol.wire import b64url, b64url_decode, message_hash, strict_loads
from station.town import refusals
from station.town.listener import TownBroker, TownListener
from station.town.store import TownStore
from station.town.trust import TrustStore

GENESIS = "0" * 64


def chain(maker, n: int, start_prev: str = GENESIS) -> list[bytes]:
    out, prev = [], start_prev
    for seq in range(1, n + 1):
        m = maker("negative", f"S-{seq}")(seq, prev)
        out.append(m)
        prev = message_hash(m)
    return out


@pytest.fixture
def second(station_kit):
    """A second trusted station in the same village."""
    ident = StationIdentity(id="st-0002", grid=station_kit.ident.grid, key_serial=1)
    key = Ed25519PrivateKey.generate()
    (station_kit.trust_dir / "st-0002.jwk").write_text(json.dumps(public_jwk(key.public_key(), ident.kid,
                                                                             ident.path)))
    return ident, lambda verdict, sample: station_kit.maker(verdict, sample, ident=ident, key=key)


@pytest.fixture
def town(station_kit, tmp_path):
    st = TownStore(tmp_path / "town.db", TrustStore.load(station_kit.trust_dir), station_kit.town_key)
    yield st
    st.close()


def rtopic(ident, kind="result"):
    return topics.topic(ident.grid, ident.id, kind)


# ---- the strict loader and strict base64url (station/protocol/wire.py) ----------------------------------

@pytest.mark.parametrize("text, why", [
    ("[" * 100000, "nested deeper"),
    ('{"seq":' + "9" * 30 + "}", "64-bit"),
    ('{"x":1e400}', "finite"),
    ('{"x":' + "1" * 401 + "}", "64-bit"),
    ('{"x":NaN}', "NaN"),
    ('{"x":-Infinity}', "NaN or Infinity"),
    ('{"a":1,"a":2}', "duplicate key"),
    ('{"a":"\\ud800"', "not JSON"),
])
def test_strict_loads_refuses_what_json_loads_accepts_or_crashes_on(text, why):
    with pytest.raises(WireFormatError, match=why):
        strict_loads(text.encode())


def test_strict_loads_size_limit_and_brackets_inside_strings():
    with pytest.raises(WireFormatError, match="exceeds"):
        strict_loads(b" " * 300000)
    assert strict_loads(json.dumps({"s": "[" * 1000 + '\\"{'}).encode()) == {"s": "[" * 1000 + '\\"{'}
    assert strict_loads(b'{"seq":9223372036854775807,"f":0.5}') == {"seq": 2**63 - 1, "f": 0.5}


def test_b64url_has_exactly_one_text_per_byte_string():
    sig = b64url(bytes(range(64)))
    assert b64url_decode(sig) == bytes(range(64))
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    bumped = sig[:-1] + alphabet[alphabet.index(sig[-1]) + 1]      # same bytes for a lenient decoder
    for bad in (bumped, sig[:40] + "\n" + sig[40:], sig[:40] + "!" + sig[40:], sig + "==", sig + "AAA"):
        with pytest.raises(SignatureError):
            b64url_decode(bad)


# ---- defect 7: one signed result, one accepted byte form ----------------------------------------------

def test_rewrapped_copies_are_refused_as_non_canonical_not_equivocation(station_kit, town):
    kit = station_kit
    msgs = chain(kit.maker, 3)
    for copy in chaos_poison.rewrapped(msgs[0]):
        with pytest.raises(NonCanonicalError):
            verify_jws(copy, kit.key.public_key())
        out = town.ingest(rtopic(kit.ident), copy)                  # arrives BEFORE the genuine one
        assert (out.action, out.code) == ("refused", "non-canonical"), out
    for m in msgs:                                                  # the genuine chain is not stalled
        assert town.ingest(rtopic(kit.ident), m).action == "stored"
    for copy in chaos_poison.rewrapped(msgs[1]):                    # ... nor alarmed about afterwards
        assert town.ingest(rtopic(kit.ident), copy).code == "non-canonical"
    assert town.contiguous(kit.ident.path) == 3
    codes = {c: n for _, c, n in town.refusal_counts()}
    assert codes == {"non-canonical": 10}


def test_a_stored_legacy_rewrap_is_replaced_by_the_genuine_result_not_called_equivocation(station_kit, town):
    """A database filled before the rule may hold a re-wrapped copy: the genuine bytes replace it, so the
    station's next result (whose prev is the genuine hash) chains on."""
    kit = station_kit
    msgs = chain(kit.maker, 2)
    assert town.ingest(rtopic(kit.ident), msgs[0]).action == "stored"
    legacy = json.dumps(json.loads(msgs[0])).encode()
    town.db.execute("UPDATE results SET message=?, msg_hash=? WHERE seq=1", (legacy, message_hash(legacy)))
    assert town.ingest(rtopic(kit.ident), msgs[1]).code == "broken-chain"    # the stall this fixes
    assert town.ingest(rtopic(kit.ident), msgs[0]).action == "stored"         # not "equivocation"
    assert town.ingest(rtopic(kit.ident), msgs[1]).action == "stored"
    assert town.contiguous(kit.ident.path) == 2
    assert "equivocation" not in {c for _, c, _ in town.refusal_counts()}


# ---- defect 4: each message judged on its own ---------------------------------------------------------

def test_poison_inside_one_batch_costs_no_other_message(station_kit, second, town):
    kit = station_kit
    ident_b, maker_b = second
    a, b = chain(kit.maker, 4), chain(maker_b, 4)
    poison = chaos_poison.craft_poison(a[:1], kit.key, kit.ident.kid, kit.ident.grid, kit.ident.id, phantoms=3)
    with town.batch():
        for i in range(4):
            town.ingest(rtopic(kit.ident), a[i])
            for p in poison:
                out = town.ingest(p.topic, p.message)
                assert out.action == "refused", (p.kind, out)
            town.ingest(rtopic(ident_b), b[i])
    assert town.contiguous(kit.ident.path) == 4 and town.contiguous(ident_b.path) == 4
    assert sum(n for _, _, n in town.refusal_counts()) == 4 * len(poison)
    assert town.stations() == [kit.ident.path, ident_b.path]                  # no phantom stations


def test_listener_stores_other_stations_results_sent_in_the_same_burst_as_poison(station_kit, second,
                                                                                  local_broker, tmp_path):
    """Real broker, real listener: the poison and two stations' results arrive interleaved, so they share
    listener batches; before the fix one RecursionError rolled the whole batch back."""
    kit = station_kit
    ident_b, maker_b = second
    a, b = chain(kit.maker, 30), chain(maker_b, 30)
    poison = chaos_poison.craft_poison(a[:2], kit.key, kit.ident.kid, kit.ident.grid, kit.ident.id, phantoms=5)
    burst = []
    for i in range(30):
        burst += [Attack("genuine", rtopic(kit.ident), a[i]), poison[i % len(poison)],
                  Attack("genuine", rtopic(ident_b), b[i])]
    burst += poison[30:]
    n_poison = sum(1 for x in burst if x.kind != "genuine")
    db = tmp_path / "town.db"
    town = TownListener(TownBroker(local_broker.url, keepalive_s=5), kit.trust_dir, db, kit.town_key,
                        resend_after_s=3600)
    town.start()
    try:
        assert town.wait_connected(10)
        send(local_broker.url, burst)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            with sqlite3.connect(db, timeout=10) as con:
                n = con.execute("SELECT COUNT(*) FROM results").fetchone()[0]
                refused = con.execute("SELECT COALESCE(SUM(n),0) FROM refusal_counts").fetchone()[0]
            if n == 60 and refused == n_poison:
                break
            time.sleep(0.2)
    finally:
        town.stop()
    assert not town.failed.is_set()
    st = TownStore(db)
    try:
        assert st.contiguous(kit.ident.path) == 30 and st.contiguous(ident_b.path) == 30
        assert sum(n for _, _, n in st.refusal_counts()) == n_poison
        assert len(st.refusals()) > 0                           # evidence kept, each with its reason
    finally:
        st.close()


# ---- defect 8: statuses validated, `town show` survives, refusals and logs capped ----------------------

def show(db, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "station", "town", "show", "--db", str(db), *extra],
                          capture_output=True, text=True, timeout=60)


def test_bad_status_is_refused_and_show_survives_legacy_junk(station_kit, town, tmp_path):
    kit = station_kit
    for m in chain(kit.maker, 2):
        town.ingest(rtopic(kit.ident), m)
    assert town.ingest(rtopic(kit.ident, "status"), b"[1,2,3]").code == "bad-status"
    assert town.ingest(rtopic(kit.ident, "status"), b'{"state":NaN}').code == "bad-status"
    assert town.ingest(rtopic(kit.ident, "status"), b'{"state":"online"}').action == "status"
    phantom = topics.topic("x/y/z", "st-9999", "status")
    assert town.ingest(phantom, b'{"state":"online"}').code == "unknown-station"
    assert town.stations() == [kit.ident.path]
    # rows a town wrote before these checks: an unsigned [1,2,3] status and an infinite ratio
    town.db.execute("INSERT INTO stations (station, status) VALUES ('a/b/c/st-0009', '[1,2,3]')")
    town.db.execute("UPDATE results SET tc_ratio=? WHERE seq=1", (float("inf"),))
    text = show(town.path)
    assert text.returncode == 0, text.stderr
    assert "station a/b/c/st-0009" in text.stdout and f"station {kit.ident.path}" in text.stdout
    js = show(town.path, "--json")
    assert js.returncode == 0, js.stderr
    out = json.loads(js.stdout, parse_constant=lambda c: pytest.fail(f"bare {c} in --json output"))
    assert [r["tc_ratio"] for r in out["stations"][1]["results"]] == [None, 0.9]
    assert {s["station"]: s["status"]["state"] for s in out["stations"]} == {
        "a/b/c/st-0009": "unreadable", kit.ident.path: "online"}


def test_twenty_thousand_junk_messages_are_counted_not_kept_nor_logged_each(station_kit, town, caplog):
    caplog.set_level(logging.INFO, logger="station.town")
    before = town.path.stat().st_size
    with town.batch():
        for i in range(20000):
            t = topics.topic("x/y/z", f"ph-{i % 505:04d}", "result" if i % 2 else "status")
            out = town.ingest(t, b"junk %d " % i + b"x" * 900)
            assert out.action == "refused"
    town.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    assert town.stations() == []                                             # no phantom stations
    counts = {(s, c): n for s, c, n in town.refusal_counts()}
    assert counts == {(refusals.UNTRUSTED, "malformed"): 10000, (refusals.UNTRUSTED, "unknown-station"): 10000}
    assert len(town.refusals()) <= 2 * refusals.EVIDENCE_PER_KEY
    assert town.path.stat().st_size - before < 1_000_000
    assert len([r for r in caplog.records if "REFUSED" in r.getMessage()]) <= 4


def test_a_station_reads_back_its_own_oversized_result_but_the_town_refuses_it_from_the_wire(station_kit, town):
    """The wire limit (256 KiB, the broker's) is not applied to a station reading its own journal, where an
    oversized result is kept quarantined: its chain check must not call the journal damaged."""
    from station.protocol.result import RESULT_TYP
    from station.protocol.signing import sign_jws, unverified_payload

    kit = station_kit
    body = {"v": 1, "seq": 1, "station": kit.ident.path, "prev": GENESIS, "note": "x" * 300_000}
    big = sign_jws(body, kit.key, kit.ident.kid, RESULT_TYP)
    assert len(big) > 262144 and unverified_payload(big)["seq"] == 1
    out = town.ingest(rtopic(station_kit.ident), big)
    assert (out.action, out.code) == ("refused", "malformed") and "exceeds" in out.reason
