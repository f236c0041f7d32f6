# A scanner on a pty twin through the real daemon: scanned codes become sample.id or sample.producer, and
# garbage or an unplugged scanner never crash the station nor hold up a result.
from __future__ import annotations

import base64
import json
import sqlite3

import pytest
from stationkit import eventually

from drivers.scanner.fake import ScannerTwin
from station.lab.rig import StationRig, check_journal


def _payloads(journal) -> dict[int, dict]:
    with sqlite3.connect(journal) as db:
        rows = db.execute("SELECT seq, message FROM results ORDER BY seq").fetchall()
    out = {}
    for seq, msg in rows:
        body = json.loads(msg)["payload"]
        out[seq] = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    return out


def _use_scanner(rig: StationRig, spec: str, patterns: str = "") -> None:
    text = rig.home.config.read_text(encoding="utf-8")
    written = '[scanner]\ndevice = ""'
    assert written in text  # station init writes the table with no scanner
    text = text.replace(written, f'[scanner]\ndevice = "{spec}"')
    if patterns:
        text = text.replace("producer_patterns = [", f"producer_patterns = [{patterns}, ")
    rig.home.config.write_text(text, encoding="utf-8")


@pytest.fixture
def station(tmp_path, local_broker):
    rig = StationRig(tmp_path, broker_url=local_broker.url, photos=("negative.jpg",))
    twin = ScannerTwin(tmp_path / "by-id" / "usb-Newland_HR32_Scanner_0042-if00")
    # A card whose QR says 主体信息卡：<id>: the group takes the id out of the text.
    _use_scanner(rig, f"serial:{twin.link}", patterns="'^主体信息卡[:：](\\S+)$'")
    town = rig.town().start()
    daemon = rig.daemon().start()
    eventually(lambda: (daemon.status().get("scanner") or {}).get("connected"), 10, "the scanner to connect")
    yield rig, twin, daemon, town
    daemon.terminate()
    town.terminate()
    twin.close()


def _scan(daemon, twin: ScannerTwin, code: str) -> None:
    """Scan, and wait until the scanner thread has posted it: a press sent after that is queued behind it."""
    before = daemon.status()["scanner"]["codes"]
    twin.scan(code)
    eventually(lambda: daemon.status()["scanner"]["codes"] > before, 5, f"the scan of {code!r}")


def _pressed(daemon, **extra) -> dict:
    reply = daemon.press(**extra)
    assert reply["ok"], reply
    (result,) = reply["results"]
    return result


def test_scans_become_sample_and_producer_through_faults(station):
    rig, twin, daemon, town = station
    # A sample sheet's code, then a press without --sample: the result carries the code.
    _scan(daemon, twin, "S-2026-0001")
    first = _pressed(daemon)
    assert first["sample"] == "S-2026-0001"
    # Power-up noise and a NUL burst first; a producer card and a sample sheet in either order.
    twin.garbage(400, nul=True)
    twin.garbage(300)
    twin.send(b"\r\n")
    _scan(daemon, twin, "ZT0012345")
    _scan(daemon, twin, "S-2026-0002")
    second = _pressed(daemon)
    # A CR-only scanner with GB18030 Chinese text; --sample on the press wins, the producer card still counts.
    twin.ending, twin.encoding = b"\r", "gb18030"
    _scan(daemon, twin, "主体信息卡：合作社-07")
    third = _pressed(daemon, sample="S-OPERATOR-3")
    _scan(daemon, twin, "样品-青菜-甲01")
    fourth = _pressed(daemon)
    # Unplugged mid-stream, a half code on the wire: the next press is recorded at once, with no scanned id.
    twin.send(b"S-HAL")
    twin.unplug()
    eventually(lambda: not daemon.status()["scanner"]["connected"], 5, "the unplug to be seen")
    unplugged = _pressed(daemon)
    assert daemon.status()["scanner"]["fault"]
    twin.plug()
    eventually(lambda: daemon.status()["scanner"]["connected"], 10, "the scanner to come back")
    twin.ending, twin.encoding = b"\r\n", "utf-8"
    _scan(daemon, twin, "S-AFTER-REPLUG")
    after = _pressed(daemon)
    # A code that cannot be a sample id is refused, and takes nothing from the next press.
    _scan(daemon, twin, "S" * 200)
    plain = _pressed(daemon)

    records = _payloads(rig.home.journal)
    got = [(records[r["seq"]]["sample"]["id"], records[r["seq"]]["sample"]["producer"])
           for r in (first, second, third, fourth, unplugged, after, plain)]
    assert got[:4] == [("S-2026-0001", None), ("S-2026-0002", "ZT0012345"), ("S-OPERATOR-3", "合作社-07"),
                       ("样品-青菜-甲01", None)]
    assert got[4][0].startswith("b") and got[4][1] is None  # generated: the half code was not kept
    assert got[5] == ("S-AFTER-REPLUG", None)
    assert got[6][0].startswith("b") and got[6][1] is None
    assert daemon.running
    log = daemon.log_file.read_text(errors="replace")
    assert "Traceback" not in log
    assert "code from" in log and "refused" in log and "scanned producer 'ZT0012345'" in log
    assert check_journal(rig.home.journal).problems == []
    # The town verifies the records with the producer in them and keeps it.
    eventually(lambda: rig.town_contiguous() >= len(records), 30, "the town to store every result")
    with sqlite3.connect(rig.town_db) as db:
        stored = dict(db.execute("SELECT sample, producer FROM results").fetchall())
    assert stored["S-2026-0002"] == "ZT0012345" and stored["S-OPERATOR-3"] == "合作社-07"


def test_a_missing_scanner_never_stops_the_station_and_an_empty_tray_keeps_the_scan(tmp_path):
    rig = StationRig(tmp_path, photos=("empty-tray.jpg", "negative.jpg"))  # served in turn, press after press
    _use_scanner(rig, f"serial:{tmp_path / 'by-id' / 'usb-not-plugged-if00'}")
    daemon = rig.daemon().start()
    try:
        st = eventually(lambda: daemon.status()["scanner"], 5, "the scanner status")
        assert not st["connected"] and "no such serial port" in (st["fault"] or "")
        assert not daemon.press()["ok"]  # the empty tray: answered, nothing recorded
        assert _pressed(daemon)["verdict"] == "negative"
        # Plugged in later: found without a restart.
        twin = ScannerTwin(tmp_path / "by-id" / "usb-not-plugged-if00")
        try:
            eventually(lambda: daemon.status()["scanner"]["connected"], 10, "the late scanner")
            _scan(daemon, twin, "S-LATE")
            _scan(daemon, twin, "ZT0099")
            pending = eventually(lambda: daemon.status()["scanner"]["pending"], 5, "the scans to be taken")
            assert pending == {"sample": "S-LATE", "producer": "ZT0099"}
            assert not daemon.press()["ok"]  # nothing recorded: the scans wait for the cassette laid next
            assert (lambda r: (r["sample"], r["producer"]))(_pressed(daemon)) == ("S-LATE", "ZT0099")
            assert not daemon.press()["ok"]
            again = _pressed(daemon)  # a recorded press used them up: the next cassette is not given them again
            assert again["sample"] != "S-LATE" and again["producer"] is None
        finally:
            twin.close()
    finally:
        daemon.terminate()


def test_scans_attach_to_the_slot_pressed_on_a_three_slot_tray(tmp_path):
    from station.lab.photogen.tray import write_tray_photo

    rig = StationRig(tmp_path, photos=(), slots=3, incubation=0)
    write_tray_photo(rig.work / "photos" / "tray.jpg", 3, (1, 2, 3))
    twin = ScannerTwin(tmp_path / "by-id" / "usb-Honeywell_1900_0007-if00")
    _use_scanner(rig, f"serial:{twin.link}")
    daemon = rig.daemon().start()
    try:
        eventually(lambda: (daemon.status().get("scanner") or {}).get("connected"), 10, "the scanner to connect")
        _scan(daemon, twin, "SHEET-A")
        on_two = _pressed(daemon, slot=2)
        _scan(daemon, twin, "SHEET-B")
        on_one = _pressed(daemon, slot=1)
    finally:
        daemon.terminate()
        twin.close()
    assert (on_two["sample"], on_two["tray_slot"]) == ("SHEET-A", 2), on_two
    assert (on_one["sample"], on_one["tray_slot"]) == ("SHEET-B", 1), on_one
    got = {r["sample"]["id"]: r["sample"]["slot"] for r in _payloads(rig.home.journal).values()}
    assert got == {"SHEET-A": 2, "SHEET-B": 1}, got
