# The real daemon prints after each commit; an unplugged printer loses nothing; `station reprint` prints again.
from __future__ import annotations

import json
import time

from station.home import printer_tables
from station.lab.escpos_decode import decode, read_qr
from station.lab.rig import StationRig, station_cmd, wait_for


def test_daemon_prints_after_commit_and_reprints_after_unplug(tmp_path):
    rig = StationRig(tmp_path, photos=("negative.jpg",))
    paper = tmp_path / "paper.bin"
    switch = paper.with_name(paper.name + ".fault")
    cfg = rig.home.config
    cfg.write_text(cfg.read_text() + printer_tables(f"fake:{paper}", verify_url="https://town.example/r"))
    prints = rig.home.root / "data" / "prints.json"

    def job(seq: int) -> dict:
        jobs = json.loads(prints.read_text())["jobs"] if prints.exists() else {}
        return jobs.get(str(seq), {})

    daemon = rig.daemon().start()
    try:
        first = daemon.press(sample="S-1")["results"][0]
        wait_for(lambda: job(first["seq"]).get("status") == "printed", 20, "the first receipt")
        switch.write_text("unplugged")
        second = daemon.press(sample="S-2")
        assert second["ok"], second                      # the press is answered: the printer held up nothing
        seq = second["results"][0]["seq"]
        wait_for(lambda: job(seq).get("status") == "failed", 20, "the failed receipt")
        assert "unplugged" in job(seq)["error"]
        status = daemon.status()["printer"]
        assert seq in status["failed"] and "unplugged" in status["last_error"]
        size = paper.stat().st_size
        switch.unlink()
        out = station_cmd("reprint", f"st-0001:{seq}", "--home", str(rig.home.root), check=False)
        assert out.returncode == 0, out.stdout + out.stderr
        assert "receipt printed" in out.stdout
        assert job(seq)["status"] == "printed"
        printed = read_qr(decode(paper.read_bytes()[size:]).images[0])
    finally:
        daemon.terminate()
    listed = json.loads(station_cmd("results", "--json", "--home", str(rig.home.root)).stdout)["results"]
    qr = {r["seq"]: r["receipt_qr"] for r in listed}
    assert printed == qr[seq] and qr[seq].startswith(f"https://town.example/r/st-0001/{seq}?h=")
    assert qr[first["seq"]] != qr[seq]


def test_a_receipt_held_by_a_crash_is_printed_at_the_next_start(tmp_path):
    rig = StationRig(tmp_path, photos=("negative.jpg",))
    paper = tmp_path / "paper.bin"
    switch = paper.with_name(paper.name + ".fault")
    cfg = rig.home.config
    cfg.write_text(cfg.read_text() + printer_tables(f"fake:{paper}", verify_url="https://town.example/r"))
    prints = rig.home.root / "data" / "prints.json"

    def jobs() -> dict:
        return json.loads(prints.read_text())["jobs"] if prints.exists() else {}

    daemon = rig.daemon().start()
    try:
        first = daemon.press(sample="S-1")["results"][0]["seq"]
        wait_for(lambda: jobs().get(str(first), {}).get("status") == "printed", 20, "the first receipt")
        switch.write_text("hold")  # the printer takes the next job and never finishes it
        held = daemon.press(sample="S-2")
        assert held["ok"], held  # committed and answered while the paper waits
        seq = held["results"][0]["seq"]
        daemon.kill()  # the power cut: after the commit, before the paper
        assert str(seq) not in jobs()
        size = paper.stat().st_size
        switch.unlink()
        daemon.start()
        wait_for(lambda: jobs().get(str(seq), {}).get("status") == "printed", 20, "the held receipt")
        printed = read_qr(decode(paper.read_bytes()[size:]).images[0])
        assert jobs()[str(first)]["attempts"] == 1  # the receipt already on paper is not printed again
        log = daemon.log_file.read_text()
        assert f"receipts of results {seq}..{seq} were never printed" in log, log
    finally:
        daemon.terminate()
    assert printed.startswith(f"https://town.example/r/st-0001/{seq}?h=")
    # A printer new to a station that already holds results (no print log) prints none of them at its start.
    prints.unlink()
    size = paper.stat().st_size
    daemon = rig.daemon().start()
    try:
        time.sleep(2.0)  # the worker has started and probed; a catch-up would be under way by now
        assert paper.stat().st_size == size and jobs() == {}
    finally:
        daemon.terminate()


def test_catch_up_is_bounded():
    from station.printing import CATCH_UP_MAX, catch_up_from

    assert catch_up_from({}, 500) == 500  # a new printer: no year of slips
    assert catch_up_from({"7": {}, "9": {}}, 10) == 9
    assert catch_up_from({"9": {}}, 9) == 9
    assert catch_up_from({"3": {}}, 500) == 500 - CATCH_UP_MAX
    assert catch_up_from({"12": {}}, 10) == 10  # a reprint of a newer seq in an older journal? never beyond it
