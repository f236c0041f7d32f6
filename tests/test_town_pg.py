# The town store on a real PostgreSQL (started by the tests): concurrent writers, alerts in the result's
# transaction, and the report and dashboard reading the same figures as from SQLite.
from __future__ import annotations

import random
import threading

import pytest
import townpg
from townkit import TownKit

from station.protocol import topics
from station.town import alerts, dashboard, monthly
from station.town.store import TownStore
from station.town.trust import TrustStore

pg_server, pg_url = townpg.pg_server, townpg.pg_url   # the private PostgreSQL's fixtures


def _stream(kit: TownKit, sid: str, n: int) -> list[tuple[str, bytes]]:
    t = topics.topic(kit.st[sid]["ident"].grid, sid, "result")
    return [(t, kit.sign(sid, "positive" if i % 10 == 3 else "negative", sample=f"{sid}-S{i}",
                         read_at=f"2026-11-{1 + i % 28:02d}T02:00:00Z")) for i in range(n)]


def test_two_writers_on_one_station_store_each_seq_once_and_keep_the_chain(tmp_path, pg_url):
    kit = TownKit(tmp_path, {"st-0001": "halahai", "st-0002": "xinglong"}, db=pg_url)
    msgs = _stream(kit, "st-0001", 120) + _stream(kit, "st-0002", 80)
    trust = TrustStore.load(kit.trust_dir)
    errors: list[BaseException] = []
    outcomes: list[list[str]] = [[], []]

    def writer(i: int) -> None:
        # both writers get every message, in different orders and batch sizes: the worst case of a shared
        # subscription redelivering to the other listener after a disconnect
        rnd = random.Random(i)
        mine = msgs[:] if i == 0 else list(reversed(msgs))
        rnd.shuffle(mine) if i == 1 else None
        st = TownStore(pg_url, trust)
        try:
            for k in range(0, len(mine), 7 + 5 * i):
                chunk = mine[k:k + 7 + 5 * i]
                for attempt in range(5):
                    try:
                        with st.batch(t for t, _ in chunk):
                            got = [st.ingest(t, m).action for t, m in chunk]
                        outcomes[i].extend(got)
                        break
                    except Exception as exc:   # a lost lock conflict is undone whole and retried
                        if attempt == 4 or getattr(exc, "sqlstate", None) not in ("40P01", "40001"):
                            raise
        except BaseException as exc:
            errors.append(exc)
        finally:
            st.close()

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors
    store = kit.store
    for sid, n in (("st-0001", 120), ("st-0002", 80)):
        path = kit.path(sid)
        seqs = [r["seq"] for r in store.results(path)]
        assert seqs == list(range(1, n + 1))
        assert store.contiguous(path) == n and store.gaps(path) == []
        assert store.counters(path) == {"stored": n, "duplicates": n}
    flat = outcomes[0] + outcomes[1]
    assert flat.count("stored") == 200 and flat.count("duplicate") == 200 and "refused" not in flat
    # one alert per positive, not one per writer
    positives = [a for a in alerts.recent(store.db, 500) if a.kind == "positive"]
    assert len(positives) == 12 + 8
    assert store.refusal_counts() == []


def test_an_undone_batch_leaves_neither_the_result_nor_its_alert(tmp_path, pg_url):
    kit = TownKit(tmp_path, {"st-0001": "halahai"}, db=pg_url)
    t, m = _stream(kit, "st-0001", 4)[3]   # seq 4 is positive
    with pytest.raises(RuntimeError):
        with kit.store.batch([t]):
            assert kit.store.ingest(t, m).alerts == ("positive", "gap")
            raise RuntimeError("the disk went away before COMMIT")
    assert kit.store.results(kit.path("st-0001")) == [] and alerts.recent(kit.store.db) == []
    out = kit.store.ingest(t, m)
    assert out.action == "stored" and out.alerts == ("positive", "gap")
    assert sorted((a.kind, a.seq) for a in alerts.recent(kit.store.db)) == [("gap", 3), ("positive", 4)]
    assert kit.store.ingest(t, m).action == "duplicate" and len(alerts.recent(kit.store.db)) == 2


def test_refusal_evidence_is_capped_per_source_on_postgresql(tmp_path, pg_url):
    kit = TownKit(tmp_path, {"st-0001": "halahai"}, db=pg_url)
    t = topics.topic(kit.st["st-0001"]["ident"].grid, "st-0001", "result")
    for i in range(70):
        kit.store.refusal_book.budgets.clear()   # past the per-minute budget: test the cap itself
        assert kit.store.ingest(t, b"not a jws %d \x00 ?" % i).action == "refused"
    assert sum(n for _, _, n in kit.store.refusal_counts()) == 70
    assert len(kit.store.refusals()) == 50


def test_report_and_dashboard_read_the_same_figures_from_postgresql_and_sqlite(tmp_path, pg_url):
    villages = {"st-0001": "halahai", "st-0002": "xinglong"}
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    lite = TownKit(tmp_path / "a", villages)
    pg = TownKit(tmp_path / "b", villages, db=pg_url)
    pg.st = lite.st             # the same stations and keys sign the same messages into both
    pg.store = TownStore(pg_url, TrustStore.load(lite.trust_dir))
    for sid in villages:
        for t, m in _stream(lite, sid, 30):
            assert lite.store.ingest(t, m, now=1.795e9).action == "stored"
            assert pg.store.ingest(t, m, now=1.795e9).action == "stored"
    a = monthly.build(lite.db_path, "2026-11")
    b = monthly.build(pg_url, "2026-11")
    assert [vars(s) for s in a.stations] == [vars(s) for s in b.stations]
    assert a.total("tests") == 60 and a.total("positives") == 6
    assert a.products == b.products and a.daily == b.daily
    db = dashboard.connect(pg_url)
    try:
        assert [s["station"] for s in dashboard.stations(db)] == [lite.path(s) for s in sorted(villages)]
        hits = dashboard.search(db, "st-0002-S1")
        assert {h["sample"] for h in hits} == {"st-0002-S1", *(f"st-0002-S1{i}" for i in range(10))}
        stored = pg.store.results(lite.path("st-0001"))[4]
        state, found = dashboard.receipt(db, "st-0001", 5, stored["msg_hash"][:16], TrustStore.load(lite.trust_dir))
        assert state == "match" and found[0].signature == "ok" and found[0].chain == "linked"
    finally:
        db.close()


def test_commands_take_a_postgresql_url(tmp_path, pg_url):
    import csv
    import json
    import subprocess
    import sys

    kit = TownKit(tmp_path, {"st-0001": "halahai"}, db=pg_url)
    for t, m in _stream(kit, "st-0001", 12):
        kit.store.ingest(t, m)

    def town(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "station", "town", *args], capture_output=True, text=True,
                              timeout=120)

    shown = json.loads(town("show", "--db", pg_url, "--json", "--trust", str(kit.trust_dir)).stdout)
    assert [r["seq"] for r in shown["stations"][0]["results"]] == list(range(1, 13))
    assert all(r["signature_ok"] for r in shown["stations"][0]["results"])
    out = town("report", "--db", pg_url, "--month", "2026-11", "--out", str(tmp_path / "m.csv"))
    assert out.returncode == 0, out.stderr
    row, = csv.DictReader(open(tmp_path / "m.csv", encoding="utf-8"))
    assert (row["tests"], row["positives"], row["plan"]) == ("12", "1", "no plan")
    assert town("export", "--db", pg_url, "--month", "2026-11", "--out", str(tmp_path / "b.json")).returncode == 0
    bad = town("show", "--db", pg_url.rsplit(":", 1)[0] + ":1/none")
    assert bad.returncode != 0 and len(bad.stderr.strip().splitlines()) == 1 and "cannot open" in bad.stderr
