# Export of stored results to provincial platforms through adapters; one adapter writes NY/T 4712-style JSON.
# An adapter only formats: selection (month, village, station) and the evidence (signed message, its hash) are
# the same for every platform, so a new platform is one class and one entry in ADAPTERS (see docs/town.md).
from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

from station.errors import SignatureError, TownOptionError
from station.protocol.signing import unverified_payload
from station.town.alerts import QC_EXPECT
from station.town.monthly import month_window, open_readonly, selected, when_read


@dataclass(frozen=True)
class ExportRecord:
    """One stored result as every adapter sees it: the record, where it came from, and its evidence."""

    station: str
    seq: int
    body: dict
    message: bytes      # the signed JWS exactly as received
    msg_hash: str       # SHA-256 hex of `message` (what receipts print the first 16 hex digits of)
    received_at: str
    read_at_local: str


class ExportAdapter(Protocol):
    """A provincial platform's batch format."""

    name: str
    suffix: str

    def write(self, records: Iterable[ExportRecord], out: Path, meta: dict) -> int:
        """Write one batch file; return how many records it holds."""
        ...


class NyT4712Json:
    """Batch records in the spirit of NY/T 4712-2025 (农产品质量安全追溯数据格式): a producer (生产经营者),
    a batch (批次: the sample) and its test information (检测信息), plus the signed evidence. The field names
    are ours, grouped the way the standard groups information; a province's field dictionary maps onto them."""

    name = "nyt4712-json"
    suffix = ".json"
    RESULT = {"negative": "合格", "positive": "不合格", "invalid": "无效"}

    def record(self, r: ExportRecord) -> dict:
        sample = r.body.get("sample") or {}
        strip = r.body.get("strip") or {}
        return {
            "recordId": f"{r.station}#{r.seq}",
            "producer": {"name": sample.get("producer"), "type": None, "creditCode": None},
            "batch": {"batchNo": sample.get("id"), "stage": "收购" if sample.get("producer") else None},
            "testInfo": {
                "item": strip.get("analyte"), "method": "胶体金快速检测", "stripType": strip.get("type"),
                "stripLot": strip.get("lot"), "result": self.RESULT.get(r.body.get("verdict"), r.body.get("verdict")),
                "verdict": r.body.get("verdict"), "tcRatio": (r.body.get("reading") or {}).get("tc_ratio"),
                "testTime": r.read_at_local, "clockSynced": (r.body.get("time") or {}).get("clock_synced"),
                "testOrg": {"gridPath": r.station, "stationId": r.station.rsplit("/", 1)[-1]},
            },
            "evidence": {"format": "JWS (RFC 7515, flattened, Ed25519)", "sha256": r.msg_hash,
                         "receiptCode": r.msg_hash[:16], "receivedAt": r.received_at,
                         "jws": r.message.decode("ascii")},   # the exact bytes the hash and signature cover
        }

    def write(self, records: Iterable[ExportRecord], out: Path, meta: dict) -> int:
        items = [self.record(r) for r in records]
        doc = {"standard": "NY/T 4712-2025 (style)", "batch": meta, "count": len(items), "records": items}
        out.write_text(json.dumps(doc, ensure_ascii=False, indent=1), encoding="utf-8")
        return len(items)


ADAPTERS: dict[str, ExportAdapter] = {NyT4712Json.name: NyT4712Json()}


def records(db_path: str | Path, month: str, *, village: str | None = None, station: str | None = None,
            tz_name: str = "Asia/Shanghai") -> Iterator[ExportRecord]:
    """The month's results (QC runs on reference material excluded), in station and seq order."""
    tz, start, end = month_window(month, tz_name)
    db = open_readonly(db_path)
    try:
        for path, seq, message, msg_hash, received_at in db.execute(
                "SELECT station, seq, message, msg_hash, received_at FROM results WHERE kind='result' "
                "ORDER BY station, seq"):
            if not selected(path, village, station):
                continue
            try:
                body = unverified_payload(bytes(message))
            except SignatureError:
                continue
            when = when_read(body, received_at)
            if when is None or not start <= when < end or body.get("kind") == "qc" or isinstance(
                    (body.get("sample") or {}).get("qc"), str) and (body.get("sample") or {}).get("qc") in QC_EXPECT:
                continue
            yield ExportRecord(path, seq, body, bytes(message), msg_hash, received_at,
                               when.astimezone(tz).isoformat(timespec="seconds"))
    finally:
        db.close()


def export(db_path: str | Path, month: str, adapter: str, out: str | Path, **selection: str | None) -> int:
    """Write the month's batch with the named adapter; the file appears complete or not at all."""
    if adapter not in ADAPTERS:
        raise TownOptionError(f"--adapter {adapter!r}: one of {', '.join(ADAPTERS)}")
    ad = ADAPTERS[adapter]
    out = Path(out)
    tmp = out.with_name(f".{out.name}.tmp")
    meta = {"month": month, "generatedAt": datetime.now(UTC).isoformat(timespec="seconds"),
            **{k: v for k, v in selection.items() if v}}
    n = ad.write(records(db_path, month, **selection), tmp, meta)   # type: ignore[arg-type]
    os.replace(tmp, out)
    return n
