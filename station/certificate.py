# The 承诺达标合格证 prefill: when a result allows one, and its lines (style 一, basis 委托检测合格).
"""Pure. Printed only when the producer is known and every analyte the plan requires for the product
has a latest result that is negative and not waiting for a re-test; never for a positive, suspect or
invalid result, nor a QC record. The required analytes come from an injectable function (the town's plan,
station/orders.py, when there is one); by default only the analyte tested is required."""
from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from typing import Any

from station.receipt import Line, load_texts, producer_by_id

Body = Mapping[str, Any]
# A re-test status under which a negative still counts as negative (station/decide retest chain).
SETTLED_NEGATIVE = (None, "resolved_negative")


def base_sample(sample_id: str | None) -> str | None:
    """The sample a card belongs to: several cards of one sample laid in one press are recorded as ID/0,
    ID/1, … (station/record.py), and for the certificate they are all sample ID."""
    head, sep, tail = (sample_id or "").rpartition("/")
    return head if sep and head and tail.isdigit() else sample_id


def tested_analyte_only(body: Body) -> set[str]:
    """The default requirement: without a plan, the certificate covers the analyte that was tested."""
    analyte = (body.get("strip") or {}).get("analyte")
    return {analyte} if analyte else set()


def refusal(body: Body, sample_results: Iterable[Body], required: Callable[[Body], set[str]] = tested_analyte_only
            ) -> str | None:
    """Why no certificate may be printed for this record, or None when one may.

    sample_results: every record of the same sample (this one included, and the other cards ID/N of a sample
    ID laid in one press), in any order."""
    if body.get("kind", "result") != "result":
        return "not a sample result"
    if not (body.get("sample") or {}).get("producer"):
        return "producer unknown (no producer card scanned)"
    needed = required(body)
    if not needed:
        return "no analyte required for this product"
    # The latest record of each card: an analyte and the card's own id (ID/N for one of several cards of the
    # sample in one press; its re-tests keep that id). One card's later negative never hides another's positive.
    latest: dict[tuple, Body] = {}
    for r in sorted(sample_results, key=lambda r: int(r.get("seq", 0))):
        if r.get("kind", "result") == "result":
            latest[((r.get("strip") or {}).get("analyte"), (r.get("sample") or {}).get("id"))] = r
    for analyte in sorted(needed):
        cards = [r for (a, _), r in latest.items() if a == analyte]
        if not cards:
            return f"{analyte} not tested yet"
        for r in cards:
            if r.get("verdict") != "negative":
                return f"{analyte} is {r.get('verdict')}"
            status = (r.get("retest") or {}).get("status")
            if status not in SETTLED_NEGATIVE:
                return f"{analyte} awaits its re-test ({status})"
    # A positive anywhere in the sample's records still waiting for its re-test blocks it too.
    for r in latest.values():
        if r.get("verdict") != "negative" and not r.get("retest"):
            return f"{(r.get('strip') or {}).get('analyte')} is {r.get('verdict')}"
    return None


def certificate_lines(body: Body, *, producer: Callable[[str], Mapping[str, str]] = producer_by_id,
                      product: str | None = None, texts: Mapping | None = None,
                      issued: datetime | None = None) -> tuple[Line, ...]:
    """The prefill: the station fills what it knows; quantity and the signature are the producer's."""
    c = (texts or load_texts())["certificate"]
    pid = (body.get("sample") or {}).get("producer") or ""
    who = producer(pid) if pid else {}
    blank = c["blank"]
    day = (issued or datetime.now().astimezone()).strftime("%Y-%m-%d")
    return (
        Line("", "rule"),
        Line(c["title"], "title"),
        Line(c["style"], "small"),
        Line(c["promise"]),
        Line(f"{c['basis_label']}：√ {c['basis']}"),
        Line(f"{c['product']}：{product or blank}"),
        Line(f"{c['quantity']}：{blank}"),
        Line(f"{c['producer']}：{who.get('name') or pid}"),
        Line(f"{c['contact']}：{who.get('contact') or blank}"),
        Line(f"{c['origin']}：{who.get('origin') or blank}"),
        Line(f"{c['issued']}：{day}"),
        Line(f"{c['test_ref']}：{body.get('id', '')}"),
        Line(f"{c['signature']}：{blank}", "big"),
        Line(c["note"], "small"),
    )
