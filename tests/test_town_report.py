# `station town report`: the month's figures per station, cross-checked against counts computed straight from
# the stored signed messages; .csv, .xlsx and .pdf written by the real command.
from __future__ import annotations

import csv
import json
import sqlite3
import subprocess
import sys
from collections import Counter
from datetime import UTC, datetime, timedelta, timezone

import pytest
import townpg
from townkit import TownKit

from station.protocol.wire import b64url_decode
from station.town import monthly

BEIJING = timezone(timedelta(hours=8))
pg_server, pg_url = townpg.pg_server, townpg.pg_url   # the private PostgreSQL's fixtures


def town_report(*args):
    return subprocess.run([sys.executable, "-m", "station", "town", "report", *args], capture_output=True,
                          text=True, timeout=120)


@pytest.fixture
def kit(tmp_path):
    k = TownKit(tmp_path, {"st-0001": "halahai", "st-0002": "halahai", "st-0003": "xinglong"})
    # st-0001: three in November (Beijing time), one of them read at 01:00 on 1 Nov Beijing = 31 Oct UTC
    k.result("st-0001", "negative", "A-1", producer="张家农场", read_at="2026-10-31T17:00:00Z")
    k.result("st-0001", "positive", "A-2", producer="李家菜园", read_at="2026-11-03T02:00:00Z")
    k.result("st-0001", "positive", "A-2", producer="李家菜园", read_at="2026-11-03T03:00:00Z")   # re-test: confirms
    k.result("st-0001", "negative", "A-3", read_at="2026-11-30T16:30:00Z")      # 1 Dec 00:30 Beijing: December
    # st-0002: re-tests a sample st-0001 found positive (negative now), an invalid strip, an unsynced clock
    k.result("st-0002", "negative", "A-2", producer="李家菜园", read_at="2026-11-04T02:00:00Z")
    k.result("st-0002", "invalid", "B-1", read_at="2026-11-05T02:00:00Z")
    k.result("st-0002", "negative", "B-1", read_at="2026-11-05T02:10:00Z")      # re-test after an invalid strip
    k.result("st-0002", "positive", "B-2", analyte="imidacloprid", read_at="2026-11-06T02:00:00Z")
    k.result("st-0002", "negative", "B-2", read_at="2026-11-06T03:00:00Z")      # same sample, other analyte
    k.result("st-0002", "negative", "B-3", read_at="2020-01-01T00:00:00Z", clock_synced=False,
             now=datetime(2026, 11, 7, 2, tzinfo=UTC).timestamp())    # counted by when it arrived
    # st-0003: a QC run that failed, a test of October only, then a gap (seq 3 missing)
    k.result("st-0003", "negative", "QC-1", read_at="2026-11-08T02:00:00Z", extra_sample={"qc": "expect-positive"})
    k.result("st-0003", "positive", "C-1", read_at="2026-10-15T02:00:00Z")
    k.result("st-0003", "positive", "C-1", read_at="2026-11-09T02:00:00Z")     # re-test of last month's positive
    k.st["st-0003"]["seq"] += 1
    k.result("st-0003", "negative", "C-2", read_at="2026-11-10T02:00:00Z")
    yield k
    k.store.close()


def straight_from_messages(db_path, month="2026-11"):
    """Independent count: decode every stored message, place it in the month by Beijing time, count by rule."""
    db = sqlite3.connect(db_path)
    bodies = []
    for station, message, received_at in db.execute("SELECT station, message, received_at FROM results "
                                                    "WHERE kind='result'"):
        body = json.loads(b64url_decode(json.loads(message)["payload"]))
        stamp = body["time"]["read_at"] if body["time"]["clock_synced"] else received_at
        when = datetime.fromisoformat(stamp.replace("Z", "+00:00")).astimezone(BEIJING)
        bodies.append((when, station, body))
    bodies.sort(key=lambda b: (b[0], b[1], b[2]["seq"]))
    counts: dict[str, Counter] = {}
    seen: Counter = Counter()
    for when, station, b in bodies:
        c = counts.setdefault(station, Counter())
        key = (b["sample"]["id"], b["strip"]["analyte"])
        in_month = when.strftime("%Y-%m") == month
        if b["sample"].get("qc"):
            continue
        if in_month:
            c["tests"] += 1
            c["positives"] += b["verdict"] == "positive"
            c["invalid"] += b["verdict"] == "invalid"
            c["retests"] += seen[key] > 0
        seen[key] += 1
    return counts


def test_csv_figures_match_the_stored_messages(kit, tmp_path):
    out = tmp_path / "nov.csv"
    r = town_report("--db", str(kit.db_path), "--month", "2026-11", "--out", str(out))
    assert r.returncode == 0, r.stderr
    rows = {row["station"]: row for row in csv.DictReader(out.open(encoding="utf-8"))}
    expect = straight_from_messages(kit.db_path)
    assert set(rows) == {kit.path(s) for s in ("st-0001", "st-0002", "st-0003")}
    for station, c in expect.items():
        row = rows[station]
        assert (int(row["tests"]), int(row["positives"]), int(row["retests"])) == \
            (c["tests"], c["positives"], c["retests"]), station
        rate = (c["tests"] - c["invalid"]) / c["tests"]
        if station != kit.path("st-0003"):
            assert float(row["qc_pass_rate"]) == pytest.approx(rate, abs=1e-4)
    # and the same figures by hand, so the independent count is itself checked
    one, two, three = (rows[kit.path(s)] for s in ("st-0001", "st-0002", "st-0003"))
    assert (one["tests"], one["positives"], one["retests"], one["confirmed_positives"]) == ("3", "2", "1", "1")
    assert (two["tests"], two["positives"], two["retests"], two["invalid"]) == ("6", "1", "2", "1")
    assert two["retest_negative"] == "2" and two["unsynced_clock"] == "1"
    assert float(two["qc_pass_rate"]) == pytest.approx(5 / 6, abs=1e-4)
    assert (three["tests"], three["retests"], three["confirmed_positives"], three["missing_seq"]) == \
        ("2", "1", "1", "1")
    assert (three["qc_pass_rate"], three["qc_basis"], three["qc_runs"]) == ("0.0", "qc-runs", "1")


def test_filters_xlsx_and_pdf(kit, tmp_path):
    openpyxl = pytest.importorskip("openpyxl")
    out = tmp_path / "halahai.xlsx"
    r = town_report("--db", str(kit.db_path), "--month", "2026-11", "--village", "halahai", "--out", str(out))
    assert r.returncode == 0, r.stderr
    wb = openpyxl.load_workbook(out)
    assert wb.sheetnames == ["站点汇总", "产品与项目", "阳性明细", "每日"]
    summary = list(wb["站点汇总"].iter_rows(values_only=True))
    assert summary[1][:4] == ("检测站", "村", "检测数", "阳性")
    assert [row[0] for row in summary[2:-1]] == [kit.path("st-0001"), kit.path("st-0002")]
    assert summary[-1][:4] == ("合计", None, 9, 3)
    positives = list(wb["阳性明细"].iter_rows(values_only=True))[1:]
    assert {(p[3], p[4]) for p in positives} == {("A-2", "李家菜园"), ("B-2", None)}
    products = {(r[0], r[2]): r[3] for r in list(wb["产品与项目"].iter_rows(values_only=True))[1:]}
    assert products[(kit.path("st-0002"), "imidacloprid")] == 1
    pytest.importorskip("matplotlib")
    pdf = tmp_path / "st-0003.pdf"
    r = town_report("--db", str(kit.db_path), "--month", "2026-11", "--station", "st-0003", "--out", str(pdf))
    assert r.returncode == 0, r.stderr
    data = pdf.read_bytes()
    assert data.startswith(b"%PDF") and b"/Count 3" in data          # summary, charts, positives
    from station.town.report_pdf import cjk_font

    if cjk_font():
        assert b"WenQuanYi" in data or b"Noto" in data or b"Source" in data, "the CJK font is not embedded"
    else:
        assert "no CJK font found" in r.stderr


def test_bad_options_are_one_line_errors(kit, tmp_path):
    for args, says in ((["--month", "2026-13"], "expected YYYY-MM"),
                       (["--month", "2026-11", "--station", "st-9999"], "no such station"),
                       (["--month", "2026-11", "--out", str(tmp_path / "r.doc")], "suffix must be one of")):
        if "--out" not in args:
            args += ["--out", str(tmp_path / "r.csv")]
        r = town_report("--db", str(kit.db_path), *args)
        assert r.returncode == 2 and says in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    r = town_report("--db", str(tmp_path / "none.db"), "--month", "2026-11", "--out", str(tmp_path / "r.csv"))
    assert r.returncode == 2 and "town database not found" in r.stderr


def test_month_boundaries_in_beijing_time(kit):
    def tests(month, tz="Asia/Shanghai"):
        return {s.station.rsplit("/", 1)[1]: s.tests for s in monthly.build(kit.db_path, month, tz_name=tz).stations}

    assert tests("2026-12")["st-0001"] == 1            # A-3, read 00:30 on 1 December in Beijing
    assert tests("2026-10")["st-0001"] == 0
    assert tests("2026-10", "UTC")["st-0001"] == 1     # A-1 is October in UTC


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_plan_fulfilment_and_offline_hours(request, tmp_path, backend):
    db = None if backend == "sqlite" else request.getfixturevalue("pg_url")
    k = TownKit(tmp_path, {"st-0001": "halahai", "st-0002": "halahai"}, db=db)
    nov = datetime(2026, 11, 10, 8, tzinfo=UTC).timestamp()
    for i in range(6):
        k.result("st-0001", sample=f"A{i}", read_at="2026-11-10T02:00:00Z", now=nov)
    # no plan sent from this database: no plan, in every format
    before = monthly.build(k.db_path, "2026-11", now=datetime(2026, 12, 5, tzinfo=UTC))
    assert [s.plan for s in before.stations] == ["no plan"]
    # st-0001: online, offline (its last will) for 5 h, online again, offline the last 2 h of the month
    for hours, state in ((0, "online"), (1, "offline"), (6, "online"), (6.5, "online"), (20 * 24 + 14, "offline")):
        k.status("st-0001", {"state": state}, now=nov + hours * 3600)
    # st-0002: never sent a status; its last contact is the only result, 24 h before the month ends
    end = datetime(2026, 12, 1, tzinfo=UTC).timestamp()
    k.result("st-0002", sample="B0", read_at="2026-11-30T00:00:00Z", now=end - 24 * 3600)
    r = monthly.build(k.db_path, "2026-11", tz_name="UTC", now=datetime(2026, 12, 5, tzinfo=UTC))
    one, two = r.stations
    assert one.plan == two.plan == "no plan"       # fulfilment of a sent plan: tests/test_plan.py
    assert one.offline_hours == 7.0               # 5 h between will and return, the month's last 2 h
    assert two.offline_hours == 24.0              # silent since its last message
    rows = list(csv.DictReader(open(report_out(r, tmp_path), encoding="utf-8")))
    assert [(x["plan"], x["offline_hours"]) for x in rows] == [("no plan", "7.0"), ("no plan", "24.0")]


def report_out(report, tmp_path):
    from station.town import report_files

    return report_files.write(report, tmp_path / "plan.csv")
