# A town with several enrolled stations that sign and chain real results: for report and dashboard tests.
from __future__ import annotations

import json
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from station.config import StationIdentity
from station.protocol import topics
from station.protocol.messages import sha256_hex
from station.protocol.result import GENESIS_PREV, RESULT_TYP, build_result_payload
from station.protocol.signing import public_jwk, sign_jws
from station.town.store import TownStore
from station.town.trust import TrustStore


class TownKit:
    """Stations (id -> village) with their own keys; result() signs the next record and stores it."""

    def __init__(self, tmp: Path, stations: dict[str, str], district_town: str = "changchun/nongan",
                 db: str | None = None):
        self.trust_dir = tmp / "trust"
        self.trust_dir.mkdir(exist_ok=True)
        self.db_path: Path | str = db or tmp / "town.db"   # db: a postgresql:// URL instead of the file
        self.st: dict[str, dict] = {}
        for sid, village in stations.items():
            ident = StationIdentity(id=sid, grid=f"{district_town}/{village}", key_serial=1)
            key = Ed25519PrivateKey.generate()
            (self.trust_dir / f"{sid}.jwk").write_text(json.dumps(public_jwk(key.public_key(), ident.kid,
                                                                            ident.path)))
            self.st[sid] = {"ident": ident, "key": key, "seq": 0, "prev": GENESIS_PREV}
        self.store = TownStore(self.db_path, TrustStore.load(self.trust_dir))

    def path(self, sid: str) -> str:
        return self.st[sid]["ident"].path

    def sign(self, sid: str, verdict: str = "negative", sample: str = "S-1", *, producer: str | None = None,
             analyte: str = "carbofuran", strip: str = "pesticide-generic", read_at: str = "2026-11-10T02:00:00Z",
             clock_synced: bool = True, extra_sample: dict | None = None, seq: int | None = None) -> bytes:
        s = self.st[sid]
        ident = s["ident"]
        seq = seq or s["seq"] + 1
        payload = build_result_payload(
            seq=seq, prev=s["prev"] if seq == s["seq"] + 1 else "ab" * 32, station_path=ident.path,
            station_id=ident.id, boot={"counter": 1, "monotonic_s": 5.0}, read_at=read_at, clock_synced=clock_synced,
            sample={"id": sample, "producer": producer, **(extra_sample or {})},
            strip={"type": strip, "analyte": analyte, "lot": "L1", "slot": 0},
            reading={"tc_ratio": 0.3 if verdict == "positive" else 0.9, "c_area": 1.0, "t_area": 0.5,
                     "c_peak": 0.2, "t_peak": 0.1, "snr": 25.0},
            verdict=verdict, quality=[], calibration={"id": None, "cutoff": 0.6}, image_sha256=None, source="camera")
        m = sign_jws(payload, s["key"], ident.kid, RESULT_TYP)
        s["seq"], s["prev"] = seq, sha256_hex(m)
        return m

    def result(self, sid: str, *args, now: float | None = None, **kw) -> bytes:
        m = self.sign(sid, *args, **kw)
        out = self.store.ingest(topics.topic(self.st[sid]["ident"].grid, sid, "result"), m, now=now)
        assert out.action == "stored", out
        return m

    def status(self, sid: str, doc: dict, now: float | None = None) -> None:
        self.store.ingest(topics.topic(self.st[sid]["ident"].grid, sid, "status"), json.dumps(doc).encode(), now=now)
