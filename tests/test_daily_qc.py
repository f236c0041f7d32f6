# Lots, daily control cards and re-tests of positives through a real daemon (and a real broker and town).
from __future__ import annotations

import json
import sqlite3
from importlib import resources

import jsonschema
import pytest
from stationkit import eventually

from station.errors import RecordError
from station.journal import Journal
from station.lab.rig import StationRig, station_cmd
from station.protocol import signing
from station.protocol.result import build_result_payload, load_schema

ST = "pesticide-generic"


def rig_with(tmp_path, sequence: str, broker_url: str = "") -> StationRig:
    """A rig whose camera serves one photograph per press in this order: N = negative.jpg, P = positive.jpg."""
    rig = StationRig(tmp_path / "rig", broker_url=broker_url)
    photos = rig.work / "photos"
    for p in photos.iterdir():
        p.unlink()
    samples = resources.files("station.lab").joinpath("samples")
    for i, c in enumerate(sequence):
        name = {"N": "negative.jpg", "P": "positive.jpg"}[c]
        (photos / f"{i:02d}-{name}").write_bytes(samples.joinpath(name).read_bytes())
    return rig


def station(rig: StationRig, *args: str, check: bool = True):
    return station_cmd(*args, "--home", str(rig.home.root), check=check)


def records(rig) -> list[dict]:
    with Journal(rig.home.journal, check=False) as j:
        return [signing.unverified_payload(e.message) for e in j.entries(newest_first=False)]


def test_a_failed_positive_control_blocks_the_lot_and_passing_both_unblocks(tmp_path):
    rig = rig_with(tmp_path, "NNPN")
    station(rig, "lot", "set", ST, "L2601", "--expires", "2099-12-31")
    daemon = rig.daemon().start()
    try:
        reply = daemon.press(sample="S-1")
        assert not reply["ok"] and "today's QC is not done" in reply["error"] and "L2601" in reply["error"], reply
        assert daemon.status()["panel"] == "refused"
        qc = daemon.press(qc="negative")
        assert qc["ok"] and qc["results"][0]["qc"]["passed"] is True, qc
        reply = daemon.press(sample="S-1")
        assert not reply["ok"] and "positive control card" in reply["error"], reply
        qc = daemon.press(qc="positive")  # the card reads negative: the positive control failed
        assert qc["results"][0]["qc"] == {"control": "positive", "lot": "L2601", "strip_type": ST, "passed": False,
                                          "reason": "positive control read negative; it must read positive"}
        reply = daemon.press(sample="S-1")
        assert not reply["ok"] and "blocked: the positive control card failed today" in reply["error"], reply
        assert "L2601" in daemon.status()["lots"][ST]["refused"]
        done = station(rig, "qc", "--control", "positive")  # the CLI, through the socket; this card reads positive
        assert "positive control: PASSED" in done.stdout, done.stdout
        eventually(lambda: daemon.status()["lots"][ST]["refused"] is None, 5, "the lot to be released")
        reply = daemon.press(sample="S-1")
        assert reply["ok"], reply
    finally:
        daemon.terminate()
    recs = records(rig)
    for rec in recs:
        jsonschema.validate(rec, load_schema())
    assert [(r.get("kind", "result"), r["sample"]["id"]) for r in recs] == [
        ("qc", f"qc:{ST}:L2601:negative"), ("qc", f"qc:{ST}:L2601:positive"), ("qc", f"qc:{ST}:L2601:positive"),
        ("result", "S-1")]
    assert recs[-1]["strip"]["lot"] == "L2601" and recs[-1]["calibration"]["lot"] == "L2601"
    assert [r["qc"]["passed"] for r in recs[:3]] == [True, False, True]


def test_an_expired_lot_is_refused_and_no_lot_works_as_today(tmp_path):
    rig = rig_with(tmp_path, "N")
    daemon = rig.daemon().start()
    try:
        st = daemon.status()
        assert st["lots"] == {} and "no lot set" in st["lot_warning"], st
        reply = daemon.press(sample="S-1")
        assert reply["ok"] and "retest_required" not in reply, reply
        station(rig, "lot", "set", ST, "L2001", "--expires", "2020-01-31")
        for req in ({"sample": "S-2"}, {"qc": "negative"}):
            reply = daemon.press(**req)
            assert not reply["ok"] and "lot L2001 of pesticide-generic expired on 2020-01-31" in reply["error"], reply
        bad = station(rig, "lot", "set", ST, "bad lot!", check=False)
        assert bad.returncode == 2 and "lot 'bad lot!'" in bad.stderr
        bad = station(rig, "lot", "set", "no-such-type", "L1", check=False)
        assert bad.returncode == 2 and "strip type 'no-such-type' unknown" in bad.stderr
        station(rig, "lot", "clear", ST)
        assert daemon.press(sample="S-3")["ok"]
        assert "L2001" in station(rig, "lot", "show").stdout  # the history keeps the change
    finally:
        daemon.terminate()
    recs = records(rig)
    assert [r["sample"]["id"] for r in recs] == ["S-1", "S-3"]
    assert all(r["strip"]["lot"] is None and "kind" not in r for r in recs)


def test_a_positive_is_retested_and_the_town_sees_the_chain(tmp_path, local_broker):
    # S-1: positive, re-tested automatically (same sample id today) positive -> confirmed_positive.
    # S-2: positive, `--retest-of` negative -> disputed, third test positive -> resolved_positive.
    rig = rig_with(tmp_path, "PPPNP", broker_url=local_broker.url)
    town = rig.town().start()
    daemon = rig.daemon().start()
    try:
        first = daemon.press(sample="S-1")
        assert first["retest_required"] is True and first["results"][0]["retest_required"], first
        first_id = first["results"][0]["id"]
        again = daemon.press(sample="S-1")
        assert again["results"][0]["retest"] == {"of": first_id, "round": 2, "status": "confirmed_positive"}
        assert "retest_required" not in again
        closed = daemon.press(retest_of=first_id)
        assert not closed["ok"] and "confirmed_positive already" in closed["error"], closed
        s2 = daemon.press(sample="S-2")["results"][0]["id"]
        assert not daemon.press(retest_of=s2, sample="S-9")["ok"]  # the re-test is of S-2, not another sample
        disputed = daemon.press(retest_of=s2)
        assert disputed["results"][0]["sample"] == "S-2" and disputed["retest_required"] is True
        assert disputed["results"][0]["retest"] == {"of": s2, "round": 2, "status": "disputed"}
        third = station(rig, "press", "--retest-of", s2)
        assert "round 3 of" in third.stdout and "resolved_positive" in third.stdout, third.stdout
        chain = json.loads(station(rig, "results", "--json").stdout)["results"]
        by_seq = {r["seq"]: r["chain"] for r in chain}
        assert by_seq[1] == "first test: confirmed_positive" and by_seq[3] == "first test: resolved_positive"
        eventually(lambda: rig.town_contiguous() >= 5, 30, "the town to store all five results")
    finally:
        daemon.terminate()
        town.terminate()
    db = sqlite3.connect(rig.town_db)
    rows = db.execute("SELECT seq, record_kind, retest_of, retest_status FROM results ORDER BY seq").fetchall()
    assert rows == [(1, "result", None, None), (2, "result", first_id, "confirmed_positive"),
                    (3, "result", None, None), (4, "result", s2, "disputed"), (5, "result", s2, "resolved_positive")]
    kinds = db.execute("SELECT seq, kind FROM alerts WHERE kind LIKE '%positive' ORDER BY seq").fetchall()
    assert kinds == [(1, "positive"), (2, "confirmed-positive"), (3, "positive"), (5, "confirmed-positive")]
    db.close()
    from station.town import monthly

    month = records(rig)[0]["time"]["read_at"][:7]
    sm = monthly.build(rig.town_db, month, tz_name="UTC").stations[0]
    assert (sm.tests, sm.retests, sm.retest_positive, sm.retest_negative, sm.confirmed_positives) == (5, 3, 2, 1, 2)


def _record(**extra) -> dict:
    base = dict(seq=3, prev="a" * 64, station_path="d/t/v/st-0001", station_id="st-0001",
                boot={"counter": 1, "monotonic_s": 1.0}, read_at="2026-11-20T08:00:00Z", clock_synced=True,
                sample={"id": "S-1", "producer": None}, strip={"type": ST, "analyte": "x", "lot": "L1", "slot": 0},
                reading={"tc_ratio": 0.5, "c_area": 1.0, "t_area": 0.5, "c_peak": 1.0, "t_peak": 0.5, "snr": 9.0},
                verdict="positive", quality=[], calibration={"id": None, "cutoff": 0.7}, image_sha256=None,
                source="camera")
    return build_result_payload(**{**base, **extra})


GOOD_QC = {"control": "positive", "lot": "L1", "strip_type": ST, "passed": True, "reason": "ok"}


def test_the_new_fields_validate_and_bad_shapes_are_refused():
    schema = load_schema()
    for rec in (_record(), _record(kind="result"), _record(kind="qc", qc=GOOD_QC),
                _record(retest={"of": "st-0001:1", "round": 2, "status": "confirmed_positive"}),
                _record(verdict="negative", retest={"of": "st-0001:2", "round": 3, "status": "resolved_negative"})):
        jsonschema.validate(rec, schema)
    bad = [
        ({"kind": "sample"}, "$.kind"),
        ({"kind": "qc"}, "$.qc"),                                     # a QC record without its qc object
        ({"qc": GOOD_QC}, "$.qc"),                                    # a qc object on a sample result
        ({"kind": "qc", "qc": {**GOOD_QC, "passed": False}}, "$.qc.passed"),   # positive read positive: passed
        ({"kind": "qc", "qc": {**GOOD_QC, "extra": 1}}, "$.qc.extra"),
        ({"kind": "qc", "qc": {**GOOD_QC, "lot": "L2"}}, "$.qc"),     # not the record's lot
        ({"retest": {"of": "st-0001:1", "round": 4, "status": "disputed"}}, "$.retest.round"),
        ({"retest": {"of": "st-0001:1", "round": 2, "status": "resolved_positive"}}, "$.retest.status"),
        ({"retest": {"of": "st-0001:1", "round": 2, "status": "disputed"}}, "$.retest.status"),  # verdict positive
        ({"retest": {"of": "st-0001:3", "round": 2, "status": "confirmed_positive"}}, "$.retest.of"),  # itself
        ({"retest": {"of": "st-0002:1", "round": 2, "status": "confirmed_positive"}}, "$.retest.of"),
        ({"retest": {"of": "st-0001:1", "round": True, "status": "confirmed_positive"}}, "$.retest.round"),
        ({"retest": {"of": "st-0001:1", "round": 2}}, "$.retest.status"),
        ({"kind": "qc", "qc": GOOD_QC, "retest": {"of": "st-0001:1", "round": 2, "status": "confirmed_positive"}},
         "$.retest"),
    ]
    for extra, where in bad:
        with pytest.raises(RecordError) as exc:
            _record(**extra)
        assert where in str(exc.value), (extra, str(exc.value))


def test_the_panel_says_retest_then_confirmed_and_a_dispute_is_no_all_clear(tmp_path):
    # gpiozero MockFactory pins behind the real daemon: the state lit and the LEDs' values.
    rig = rig_with(tmp_path, "PPPN")
    daemon = rig.daemon().start()
    try:
        first = daemon.press(sample="S-1")
        assert first["retest_required"], first
        st = daemon.status()
        assert st["panel"] == "retest" and st["lights"]["red"] and not st["lights"]["green"], st
        again = daemon.press(sample="S-1")
        assert again["results"][0]["retest"]["status"] == "confirmed_positive", again
        assert daemon.status()["panel"] == "confirmed"
        s2 = daemon.press(sample="S-2")["results"][0]["id"]
        assert daemon.status()["panel"] == "retest"
        disputed = daemon.press(retest_of=s2)  # reads negative: disputed, still to be re-tested
        assert disputed["results"][0]["verdict"] == "negative" and disputed["retest_required"], disputed
        st = daemon.status()
        assert st["panel"] == "retest" and not st["lights"]["green"], st
    finally:
        daemon.terminate()


def test_a_passed_control_card_is_shown_briefly_then_the_lot_refusal(tmp_path):
    from station.workflow.job import SHOW_QC_S

    rig = rig_with(tmp_path, "N")
    station(rig, "lot", "set", ST, "L2602", "--expires", "2099-12-31")
    daemon = rig.daemon().start()
    try:
        qc = daemon.press(qc="negative")
        assert qc["results"][0]["qc"]["passed"], qc
        assert daemon.status()["panel"] == "negative"  # the card's outcome, for a moment
        # The positive control is still missing: samples are refused, and the panel goes back to saying so.
        st = eventually(lambda: (lambda s: s if s["panel"] == "refused" else None)(daemon.status()),
                        SHOW_QC_S + 10, "the refusal to come back")
        assert "positive control card" in st["refusing"] and not st["lights"]["green"], st
    finally:
        daemon.terminate()
