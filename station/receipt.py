# The receipt (检测单) of one committed result: lines of text and the QR text, laid out from the signed record.
"""Pure: the input is the record as journaled (its payload and the hash of the message as published), so a
reprint years later says exactly what the first print said. The words come from a versioned data file."""
from __future__ import annotations

import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from importlib import resources
from typing import Any

TEXTS_VERSION = "zh-CN.v1"


@dataclass(frozen=True)
class Line:
    text: str
    style: str = "body"  # title | body | big (the verdict) | small | rule (a dashed separator)


@dataclass(frozen=True)
class Receipt:
    seq: int
    result_id: str
    lines: tuple[Line, ...]
    qr: str
    certificate: tuple[Line, ...] = ()  # the 承诺达标合格证 prefill, printed below the receipt; empty if none


def producer_by_id(producer_id: str) -> Mapping[str, str]:
    """Until the town's roster is cached here, a producer is known by the id on its card."""
    return {"name": producer_id}


@cache
def load_texts(version: str = TEXTS_VERSION) -> dict:
    """The printed words of one wording version (station/receipt_texts/<version>.toml)."""
    text = resources.files("station").joinpath(f"receipt_texts/{version}.toml").read_text(encoding="utf-8")
    return tomllib.loads(text)


def station_id_of(body: Mapping[str, Any]) -> str:
    return str(body["station"]).rsplit("/", 1)[-1]


def qr_text(verify_url: str, station_id: str, seq: int, msg_hash: str) -> str:
    """What the QR says: the town dashboard's /r/<station id>/<seq>?h=<first 16 hex of the message SHA-256>
    (station/town/web.py, dashboard.receipt). Station ids are [A-Za-z0-9_.-] (config.py), so need no quoting.
    Without a verify_url the same path is printed bare, still enough to look the record up by hand."""
    return f"{verify_url.rstrip('/')}/{station_id}/{seq}?h={msg_hash[:16].lower()}"


def local_time(stamp: str) -> tuple[str, str]:
    """An RFC 3339 UTC stamp as the station's local wall time and its offset: farmers do not read UTC."""
    try:
        t = datetime.fromisoformat(stamp.replace("Z", "+00:00")).astimezone()
    except ValueError:
        return stamp, ""
    offset = t.strftime("%z")
    return f"{t:%Y-%m-%d %H:%M:%S}", f"UTC{offset[:3]}:{offset[3:]}"


def _ratio(reading: Mapping[str, Any]) -> str | None:
    tc = reading.get("tc_ratio")
    return None if tc is None else f"{float(tc):.3f}"


def receipt_of(body: Mapping[str, Any], msg_hash: str, *, verify_url: str = "", operator: str = "",
               producer: Callable[[str], Mapping[str, str]] = producer_by_id, texts: Mapping | None = None,
               certificate: tuple[Line, ...] = ()) -> Receipt:
    """The receipt of one record. producer(id) gives the roster's entry (name, contact, origin)."""
    t = (texts or load_texts())["receipt"]
    none = t["none"]
    sample = body.get("sample") or {}
    strip = body.get("strip") or {}
    verdict = body.get("verdict", "")
    producer_id = sample.get("producer")
    who = (producer(producer_id).get("name") or producer_id) if producer_id else none
    if body.get("source") == "serial":
        method = t["methods"]["serial"].format(instrument=(body.get("instrument") or {}).get("model") or none)
    else:
        method = t["methods"]["camera"]
    names = t.get("analytes", {})
    item = "、".join(names.get(a.strip(), a.strip()) for a in str(strip.get("analyte") or none).split(","))
    if strip.get("type"):
        item = f"{item}（{strip['type']}）"
    time = body.get("time") or {}
    when, offset = local_time(str(time.get("read_at", "")))
    lines = [
        Line(t["title"], "title"),
        Line(f"{t['station']}：{body.get('station', none)}"),
        Line(f"{t['result_id']}：{body.get('id', none)}"),
        Line(f"{t['sample']}：{sample.get('id') or none}"),
        Line(f"{t['producer']}：{who}"),
        Line(f"{t['item']}：{item}"),
        Line(f"{t['method']}：{method}"),
        Line("", "rule"),
        Line(f"{t['verdict']}：{t['verdicts'].get(verdict, verdict)}", "big"),
        Line(f"{t['reading']}：{_ratio(body.get('reading') or {}) or none}"),
        Line(f"{t['time']}：{when}"),
        Line(f"{t['clock_synced'] if time.get('clock_synced') else t['clock_unsynced']} {offset}", "small"),
        Line(f"{t['operator']}：{operator or none}"),
    ]
    if body.get("task"):
        lines.append(Line(f"{t['task']}：{body['task']}"))
    retest = body.get("retest")
    if isinstance(retest, Mapping):
        status = t["retest_status"].get(str(retest.get("status")), str(retest.get("status")))
        lines.append(Line(t["retest_round"].format(round=retest.get("round", "?"), status=status), "big"))
    elif verdict == "positive":
        lines.append(Line(t["retest"], "big"))  # a first positive: the operator must test the sample again
    lines += [Line("", "rule"), Line(t["verify"], "small")]
    qr = qr_text(verify_url, station_id_of(body), int(body["seq"]), msg_hash)
    return Receipt(int(body["seq"]), str(body.get("id", "")), tuple(lines), qr, certificate)


def footer(texts: Mapping | None = None) -> Line:
    return Line((texts or load_texts())["receipt"]["footer"], "small")
