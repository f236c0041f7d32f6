# Issue 8, defect 1: a full disk, for real (a 20 MB tmpfs filled until ENOSPC), never stops the station for good.
from __future__ import annotations

import os
import threading

import pytest
from stationkit import eventually, press

from station.errors import StationError
from station.host.clock import BOOT_COUNTER_FILE
from station.journal import Journal
from station.lab.chaos_disk import fill, move_onto_tmpfs
from station.lab.rig import StationRig, check_journal, station_cmd
from station.photos import prune_images

TMPFS_MB = 20


@pytest.fixture
def rig(tmp_path):
    """An offline station whose home lives on its own 20 MB tmpfs (logs and photographs stay outside)."""
    r = StationRig(tmp_path, photos=("negative.jpg",))
    try:
        fs = move_onto_tmpfs(r.home.root, TMPFS_MB)
    except StationError as exc:
        pytest.skip(f"needs a real small filesystem: {exc}")
    r.proc = None
    yield r
    if r.proc is not None:
        r.proc.kill()
    fs.unmount(keep=False)


def start(rig):
    rig.proc = rig.daemon().start()
    return rig.proc


def test_a_running_station_refuses_on_a_full_disk_says_why_and_recovers_by_itself(rig):
    d = start(rig)
    assert press(rig.home.control_socket)["ok"]
    assert d.status()["disk_reserve"] is True
    filler = fill(rig.home.root)
    st = eventually(lambda: (s := d.status())["refusing"] and s, 10, "the refusal on a full disk")
    assert "disk" in st["refusing"] and st["panel"] == "refused" and st["disk"] == "full"
    refused = press(rig.home.control_socket)
    assert not refused["ok"] and "disk" in refused["error"], refused
    doctor = station_cmd("doctor", "--home", str(rig.home.root), check=False)
    assert doctor.returncode == 0 and "healthy" in doctor.stdout, doctor
    filler.unlink()
    eventually(lambda: d.status()["refusing"] is None, 10, "samples accepted again once space returned")
    assert press(rig.home.control_socket)["ok"]
    assert d.status()["disk_reserve"] is True and d.status()["panel"] != "refused"
    assert d.terminate() == 0
    assert check_journal(rig.home.journal).last_seq == 2


def test_a_station_starts_on_a_full_disk_stays_up_and_recovers(rig):
    d = start(rig)
    assert press(rig.home.control_socket)["ok"]
    assert d.terminate() == 0  # a clean stop removes the -wal and -shm: reopening needs space again
    filler = fill(rig.home.root)
    d.start()  # with the reserve to release, the boot counter and the journal open
    st = d.status()
    assert "disk" in st["refusing"] and st["panel"] == "refused" and st["last_seq"] == 1
    assert int((rig.home.state / BOOT_COUNTER_FILE).read_text()) == st["boot"] == 2
    threading.Event().wait(2.5)  # the first ticks: status, prune and refusal checks on the full disk
    assert d.running and d.status()["refusing"]
    assert d.terminate() == 0
    # Now with no reserve left at all: not even the journal can be opened. The daemon must not exit.
    (rig.home.root / "data" / "reserve.bin").unlink(missing_ok=True)
    filler.unlink()
    filler = fill(rig.home.root)
    d.start()
    st = d.status()
    assert "journal cannot be opened" in st["refusing"] and st["panel"] == "refused", st
    refused = press(rig.home.control_socket)
    assert not refused["ok"] and "disk" in refused["error"], refused
    assert d.running
    filler.unlink()
    eventually(lambda: d.status()["refusing"] is None, 15, "the journal to open once space returned")
    reply = press(rig.home.control_socket)
    assert reply["ok"], reply
    st = d.status()
    assert st["last_seq"] == 2 and int((rig.home.state / BOOT_COUNTER_FILE).read_text()) == st["boot"] == 3
    assert d.terminate() == 0
    assert check_journal(rig.home.journal).problems == []


def test_the_reserve_lets_a_taken_sample_be_stored_and_without_it_the_panel_says_call_the_technician(rig):
    cfg = rig.home.config.read_text()
    rig.home.config.write_text(cfg.replace("warn_pct = 80", "warn_pct = 90").replace("refuse_pct = 95",
                                                                                   "refuse_pct = 99.9"))
    d = start(rig)
    assert press(rig.home.control_socket)["ok"]
    # 24 KB free: below the 99.9 % refusal line, so the press is taken, but the 43 KB photograph does not fit.
    filler = fill(rig.home.root, leave=24 * 1024)
    kept = press(rig.home.control_socket)
    assert kept["ok"] and kept["results"], kept  # the reserve was released and the result stored
    assert d.status()["disk_reserve"] is False
    filler.unlink()
    fill(rig.home.root, leave=24 * 1024)
    lost = press(rig.home.control_socket)
    assert not lost["ok"] and lost["error"].startswith("refused \u2014 call the technician: photograph not saved"), lost
    assert "retake" not in lost
    assert d.status()["panel"] == "refused"
    assert d.terminate() == 0
    assert check_journal(rig.home.journal).last_seq == 2


def test_the_photo_prune_survives_a_full_disk(rig):
    """The periodic prune ends with a journal write; on a full disk that raised `database or disk is full`."""
    with Journal(rig.home.journal) as j:
        (rig.home.images).mkdir(parents=True, exist_ok=True)
        fill(rig.home.root)
        res = prune_images(j, rig.home.images, target_pct=5.0)
        assert res.deleted == 0 and res.used_pct == 100.0
    assert os.path.ismount(rig.home.root)
