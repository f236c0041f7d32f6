# `station town export`: the month's results as NY/T 4712-style JSON batch records, each carrying its signed
# evidence byte for byte (hash and signature checked again from the exported file alone).
from __future__ import annotations

import hashlib
import json
import subprocess
import sys

from townkit import TownKit

from station.protocol.signing import load_jwk_file_with_station, verify_jws


def test_export_batch_carries_verifiable_evidence(tmp_path):
    kit = TownKit(tmp_path, {"st-0001": "halahai", "st-0002": "xinglong"})
    kit.result("st-0001", "negative", "A-1", producer="张家农场", read_at="2026-11-02T02:00:00Z")
    kit.result("st-0001", "positive", "A-2", producer="李家菜园", read_at="2026-11-03T02:00:00Z")
    kit.result("st-0001", "negative", "A-3", read_at="2026-12-03T02:00:00Z")          # December
    kit.result("st-0002", "negative", "QC-1", read_at="2026-11-03T02:00:00Z", extra_sample={"qc": "expect-negative"})
    kit.result("st-0002", "invalid", "B-1", read_at="2026-11-04T02:00:00Z")
    kit.store.close()
    out = tmp_path / "batch.json"
    r = subprocess.run([sys.executable, "-m", "station", "town", "export", "--db", str(kit.db_path), "--month",
                        "2026-11", "--out", str(out)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    doc = json.loads(out.read_text(encoding="utf-8"))
    assert doc["count"] == 3 and doc["batch"]["month"] == "2026-11"
    recs = {x["recordId"].rsplit("/", 1)[1]: x for x in doc["records"]}
    assert set(recs) == {"st-0001#1", "st-0001#2", "st-0002#2"}                       # no QC run, no December
    a2 = recs["st-0001#2"]
    assert (a2["producer"]["name"], a2["batch"]["batchNo"], a2["testInfo"]["result"], a2["testInfo"]["item"]) == \
        ("李家菜园", "A-2", "不合格", "carbofuran")
    assert a2["testInfo"]["testTime"] == "2026-11-03T10:00:00+08:00"
    assert recs["st-0002#2"]["testInfo"]["result"] == "无效"
    _, key, _ = load_jwk_file_with_station(kit.trust_dir / "st-0001.jwk")
    ev = a2["evidence"]
    assert hashlib.sha256(ev["jws"].encode()).hexdigest() == ev["sha256"] and ev["receiptCode"] == ev["sha256"][:16]
    assert verify_jws(ev["jws"].encode(), key)["sample"]["id"] == "A-2"
    r = subprocess.run([sys.executable, "-m", "station", "town", "export", "--db", str(kit.db_path), "--month",
                        "2026-11", "--adapter", "csv-x", "--out", str(out)], capture_output=True, text=True)
    assert r.returncode == 2 and "one of nyt4712-json" in r.stderr
