# Issue 11, the tray: slots with their own incubation deadlines in a real daemon (folder camera twin with
# photogen tray photographs, gpiozero MockFactory), busy slots refused, scans attached, read windows enforced.
from __future__ import annotations

import os
import signal
import threading
import time

from stationkit import eventually, press

from station.journal import Journal
from station.lab.photogen.tray import write_tray_photo
from station.lab.rig import StationRig
from station.protocol.signing import unverified_payload


def _rig(tmp_path, slots: int, incubation: int, photos: dict[str, tuple[int, ...]]) -> StationRig:
    rig = StationRig(tmp_path, photos=(), slots=slots, incubation=incubation)
    for name, occupied in photos.items():
        write_tray_photo(rig.work / "photos" / name, slots, occupied)
    return rig


def _records(rig: StationRig) -> dict[int, dict]:
    with Journal(rig.home.journal) as j:
        return {e.seq: unverified_payload(e.message) for e in j.iter_entries()}


def _press_in_thread(sock, out: dict, key, **extra) -> threading.Thread:
    t = threading.Thread(target=lambda: out.__setitem__(key, press(sock, timeout=60, **extra)), daemon=True)
    t.start()
    return t


def test_three_slots_laid_a_second_apart_finish_a_second_apart(tmp_path):
    rig = _rig(tmp_path, 3, 3, {"tray.jpg": (1, 2, 3)})
    d = rig.daemon().start()
    replies: dict[int, dict] = {}
    try:
        threads = []
        for k in (1, 2, 3):
            threads.append(_press_in_thread(rig.home.control_socket, replies, k, slot=k, sample=f"s{k}"))
            time.sleep(1.0)
        # All three count at once: slot 3 was accepted while 1 and 2 were still incubating.
        slots = {s["slot"]: s for s in d.status()["slots"]}
        assert [slots[k]["sample"] for k in (1, 2, 3)] == ["s1", "s2", "s3"]
        for t in threads:
            t.join(60)
    finally:
        d.kill()
    for k in (1, 2, 3):
        r = replies[k]
        assert r["ok"] and r["slot"] == k, r
        assert [x["sample"] for x in r["results"]] == [f"s{k}"], r  # only the cassette in its own region
    recs = _records(rig)
    read = {rec["sample"]["slot"]: rec["boot"]["monotonic_s"] for rec in recs.values()}
    assert sorted(read) == [1, 2, 3]
    assert read[1] < read[2] < read[3]
    # Served one after another, each waiting its own 3 s, the finishes would be >= 3 s apart (>= 6 s overall);
    # counted in parallel they keep the 1 s spacing of the presses.
    spread = read[3] - read[1]
    assert 1.0 <= spread < 4.5, read
    assert {rec["sample"]["id"] for rec in recs.values()} == {"s1", "s2", "s3"}


def test_a_press_on_a_busy_slot_is_refused_and_a_free_slot_taken(tmp_path):
    rig = _rig(tmp_path, 3, 3, {"tray.jpg": (1, 2, 3)})
    d = rig.daemon().start()
    try:
        first = press(rig.home.control_socket, wait=False, slot=2)
        assert first["ok"] and first["queued"] and first["slot"] == 2, first
        busy = press(rig.home.control_socket, slot=2)
        assert not busy["ok"] and "slot 2 is busy (incubating" in busy["error"], busy
        other = press(rig.home.control_socket, wait=False, slot=1)
        assert other["ok"] and other["slot"] == 1, other
        nosuch = press(rig.home.control_socket, slot=4)
        assert not nosuch["ok"] and "slots 1..3" in nosuch["error"], nosuch
        st = {s["slot"]: s for s in d.status()["slots"]}
        assert st[2]["state"] == st[1]["state"] == "incubating" and st[3]["state"] == "empty"
        assert 0 < st[2]["left_s"] <= 3
        eventually(lambda: all(s["state"] == "done" for s in d.status()["slots"][:2]), 30, "slots 1 and 2 done")
    finally:
        d.kill()
    assert sorted(rec["sample"]["slot"] for rec in _records(rig).values()) == [1, 2]


def test_the_button_finds_the_slot_just_laid_or_asks_for_slot(tmp_path):
    # The camera serves the next photograph at each press: slot 2 laid, then 2 and 3, then 1, 2 and 3 with
    # nothing new on the third photograph's free slots... (1 is new there, so only an empty press is ambiguous).
    rig = _rig(tmp_path, 3, 0, {"a.jpg": (2,), "b.jpg": (2, 3), "c.jpg": (1, 3), "d.jpg": (1, 3)})
    d = rig.daemon().start()
    try:
        r = press(rig.home.control_socket)
        assert r["ok"] and r["slot"] == 2 and len(r["results"]) == 1, r
        r = press(rig.home.control_socket)
        assert r["ok"] and r["slot"] == 3, r
        r = press(rig.home.control_socket)  # 2 was taken away, 1 is new; 3 is the card already read
        assert r["ok"] and r["slot"] == 1, r
        r = press(rig.home.control_socket)  # the same tray again: nothing new
        assert not r["ok"] and "press with --slot N" in r["error"] and "no new card" in r["error"], r
        assert d.status()["panel"] == "refused"
    finally:
        d.kill()
    assert [rec["sample"]["slot"] for rec in _records(rig).values()] == [2, 3, 1]


def test_a_card_photographed_past_its_read_window_is_recorded_invalid(tmp_path):
    rig = _rig(tmp_path, 2, 1, {"tray.jpg": (1, 2)})
    with open(rig.home.config, "a", encoding="utf-8") as f:
        f.write('\n[[strip_types]]\nname = "quick-card"\nanalyte = "imidacloprid"\nread_window_s = 1\n')
    d = rig.daemon().start()
    try:
        r = press(rig.home.control_socket, wait=False, slot=1, strip_type="quick-card")
        assert r["ok"], r
        # The loop is held up (SIGSTOP) past incubation (1 s) plus the read window (1 s).
        os.kill(d.proc.pid, signal.SIGSTOP)
        time.sleep(3.0)
        os.kill(d.proc.pid, signal.SIGCONT)
        eventually(lambda: d.status()["slots"][0]["state"] in ("done", "retake"), 20, "slot 1 read")
        ok = press(rig.home.control_socket, slot=2, strip_type="quick-card")  # on time: a verdict
    finally:
        d.kill()
    recs = _records(rig)
    late = next(r for r in recs.values() if r["sample"]["slot"] == 1)
    assert late["verdict"] == "invalid" and "READ_WINDOW_MISSED" in late["quality"], late
    assert all(ln["verdict"] is None for ln in late["reading"]["lines"].values())
    assert ok["ok"] and ok["results"][0]["verdict"] == "negative", ok
    assert "READ_WINDOW_MISSED" not in ok["results"][0]["quality"]


def test_one_slot_station_reads_every_cassette_as_before(tmp_path):
    rig = StationRig(tmp_path, photos=("four-cassettes.jpg",))
    d = rig.daemon().start()
    try:
        r = press(rig.home.control_socket)
        st = d.status()
    finally:
        d.kill()
    assert r["ok"] and len(r["results"]) == 4 and "slot" not in r, r
    assert st["slots"] == [{"slot": 1, "state": "done", "sample": None, "producer": None, "left_s": None}]
    assert all("slot" not in rec["sample"] for rec in _records(rig).values())


def test_a_scanned_code_is_attached_to_the_next_slot_laid(tmp_path):
    # The daemon in this process, so the test posts Scanned exactly as the scanner's reader thread will.
    from station.app import Daemon
    from station.config import load_config
    from station.control import request
    from station.events import Scanned, Stop

    rig = _rig(tmp_path, 3, 0, {"tray.jpg": (1, 2, 3)})
    held: dict = {}

    def run() -> None:  # the journal is used by the thread that opened it, as in `station run`
        held["d"] = daemon = Daemon(load_config(rig.home.root), rig.home)
        try:
            if daemon.start():
                daemon.serve()
        finally:
            daemon.stop()

    loop = threading.Thread(target=run, daemon=True)
    loop.start()
    sock = rig.home.control_socket

    def scanned() -> dict:
        return request(sock, {"cmd": "status"}, timeout=10)["scanned"]

    try:
        eventually(lambda: sock.exists() and request(sock, {"cmd": "status"}, timeout=10).get("slots"), 20,
                   "the daemon to start")
        held["d"].post(Scanned("SHEET-0042", "pty"))
        held["d"].post(Scanned("bad\x07code", "pty"))  # refused, logged; the waiting code stays
        eventually(lambda: scanned()["sample"] == "SHEET-0042", 5, "the scan to wait")
        first = press(sock, slot=2)
        second = press(sock, slot=3)  # nothing scanned for it: a generated id
        held["d"].post(Scanned("SHEET-0043", "pty"))
        eventually(lambda: scanned()["sample"] == "SHEET-0043", 5, "the second scan")
        own = press(sock, slot=1, sample="typed-7")  # a typed id wins; the scan waits on
        waiting = scanned()
    finally:
        if "d" in held:
            held["d"].post(Stop())
        loop.join(10)
    assert [r["sample"] for r in first["results"]] == ["SHEET-0042"], first
    assert second["results"][0]["sample"].startswith("b1-j"), second
    assert [r["sample"] for r in own["results"]] == ["typed-7"] and waiting["sample"] == "SHEET-0043"
    recs = {r["sample"]["id"]: r["sample"] for r in _records(rig).values()}
    assert recs["SHEET-0042"] == {"id": "SHEET-0042", "producer": None, "slot": 2}


def test_producer_cards_go_to_sample_producer():
    from types import SimpleNamespace as NS

    from station.record import sample_of
    from station.workflow.scans import Scans

    scans = Scans([r"^ZT\d{6}$"])
    assert scans.add("ZT000123") is None and scans.add("veg-9") is None
    got = scans.take(None)
    assert (got.sample, got.producer) == ("veg-9", "ZT000123")
    assert scans.take(None).producer is None  # each code goes with one slot only
    assert "printable" in scans.add("x\x00")
    job = NS(producer=got.producer, slot=3)
    assert sample_of(job, got.sample) == {"id": "veg-9", "producer": "ZT000123", "slot": 3}


def test_the_panel_tells_the_slot_by_blinks_and_beeps(monkeypatch):
    from drivers.panel import PIN_FACTORY_ENV, Panel
    from station.config import GpioConfig

    monkeypatch.delenv(PIN_FACTORY_ENV, raising=False)
    panel = Panel(GpioConfig(pin_factory="mock"), lambda: None)
    try:
        panel.show("negative", slot=3)
        edges: dict[str, list[float]] = {"green": [], "buzzer": []}
        last = {"green": False, "buzzer": False}
        pins = {"green": panel.green.pin, "buzzer": panel.buzzer.pin}
        deadline = time.monotonic() + 3.2
        while time.monotonic() < deadline:
            for name, pin in pins.items():
                now = bool(pin.state)
                if now and not last[name]:
                    edges[name].append(time.monotonic())
                last[name] = now
            time.sleep(0.004)
        panel.show("idle")
    finally:
        panel.close()

    def groups(times: list[float]) -> list[int]:
        out = [1] if times else []
        for a, b in zip(times, times[1:], strict=False):
            if b - a > 0.5:
                out.append(1)
            else:
                out[-1] += 1
        return out

    assert groups(edges["green"])[:2] == [3, 3], edges  # slot 3: groups of three blinks
    assert len(edges["buzzer"]) == 1 + 3  # the negative's one beep, then three for slot 3
