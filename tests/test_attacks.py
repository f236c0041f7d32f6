# Hostile messages through a real broker: the town listener accepts none of them and counts each refusal.
from __future__ import annotations

import sqlite3

from station.lab import attacks
from station.protocol.wire import message_hash
from station.town.listener import TownBroker, TownListener
from station.town.store import TownStore
from station.town.trust import TrustStore


def test_accepted_counts_new_and_changed_results():
    assert attacks.accepted({1: "a", 2: "b"}, {1: "a", 2: "b"}) == 0
    assert attacks.accepted({1: "a", 2: "b"}, {1: "a", 2: "x", 3: "c"}) == 2


def test_town_accepts_no_forged_tampered_replayed_wrong_path_or_equivocating_result(station_kit, local_broker,
                                                                                   tmp_path):
    kit = station_kit
    db = tmp_path / "town.db"
    genuine = []
    prev = "0" * 64
    for seq in range(1, 4):
        msg = kit.maker("positive" if seq == 2 else "negative", f"S-{seq}")(seq, prev)
        genuine.append(msg)
        prev = message_hash(msg)
    store = TownStore(db, trust=TrustStore.load(kit.trust_dir))
    for msg in genuine:
        assert store.ingest(f"nongan/v1/{kit.ident.path}/result", msg).action == "stored"
    store.close()

    def query(sql):
        with sqlite3.connect(db, timeout=10) as con:
            return con.execute(sql).fetchall()

    town = TownListener(TownBroker(local_broker.url, keepalive_s=5), kit.trust_dir, db, kit.town_key)
    town.start()
    try:
        assert town.wait_connected(5)
        report = attacks.run_attacks(
            local_broker.url, lambda: dict(query("SELECT seq, msg_hash FROM results")),
            lambda: query("SELECT COALESCE(SUM(n), 0) FROM refusal_counts")[0][0], genuine, kit.key, kit.ident.kid,
            kit.ident.grid, kit.ident.id, settle_s=10)
    finally:
        town.stop()
    assert set(report) == set(attacks.KINDS)
    for kind, r in report.items():
        assert r["tried"] == 3 and r["accepted"] == 0, (kind, r)
        assert r["refused"] == (0 if kind == "replayed" else 3), (kind, r)
    codes = dict(((c, n) for _, c, n in TownStore(db).refusal_counts()))
    assert codes["bad-signature"] == 6 and codes["wrong-path"] == 3 and codes["equivocation"] == 3
    assert len(query("SELECT seq FROM results")) == 3
