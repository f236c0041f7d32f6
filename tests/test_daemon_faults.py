# The real daemon under faults: SIGKILLs around a press, a broker that is down, a damaged journal, a full disk.
from __future__ import annotations

import logging
import os
import signal
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from stationkit import eventually, press, read_reply, send_press, shown_of

from station.app import Daemon
from station.config import load_config
from station.control import request
from station.events import Stop
from station.journal import Journal
from station.lab.rig import StationRig, check_journal, check_journal_copy, town_show
from station.photos import DiskUsage

# The first photograph in name order is served first after every daemon start: four cassettes, the
# slowest press (about 0.1 s of scoring and four commits), so a kill soon after the request lands inside it.
PHOTOS = ("four-cassettes.jpg", "negative.jpg")


def _assert_journal_holds(rep, shown: dict[int, dict], when: str) -> None:
    assert rep.problems == [], f"{when}: journal damaged: {rep.problems}"
    for seq, r in shown.items():
        row = rep.rows.get(seq)
        assert row is not None and row[:2] == (r["sample"], r["verdict"]), \
            f"{when}: {r['id']} was shown as {r['verdict']} {r['sample']}, the journal has {row}"


def _drained(rig: StationRig, daemon) -> bool:
    st = daemon.status()
    return st["acked_seq"] == st["last_seq"] and rig.town_contiguous() >= st["last_seq"]


# ---- (a) SIGKILL right after a reply and in the middle of a press -------------------------------------------

def test_sigkill_around_presses_loses_nothing_shown(tmp_path, local_broker):
    rig = StationRig(tmp_path, broker_url=local_broker.url, photos=PHOTOS)
    town = rig.town().start()
    daemon = rig.daemon().start()
    shown: dict[int, dict] = {}
    unanswered = 0
    try:
        for i, delay in enumerate((0.0, 0.02, 0.05, 0.08)):
            # Killed right after the reply: the four results shown must survive the kill.
            reply = press(rig.home.control_socket)
            assert reply["ok"] and len(reply["results"]) == 4, reply
            shown.update(shown_of(reply))
            daemon.kill()
            _assert_journal_holds(check_journal_copy(rig.home.journal, tmp_path / "copy"), shown,
                                  f"after the kill following reply {i}")
            daemon.start()
            # Killed mid-press (capture, scoring or commit): no reply, or a reply that then must survive.
            conn = send_press(rig.home.control_socket)
            threading.Event().wait(delay)
            daemon.kill()
            got = read_reply(conn)
            unanswered += got is None
            shown.update(shown_of(got))
            _assert_journal_holds(check_journal_copy(rig.home.journal, tmp_path / "copy"), shown,
                                  f"after the mid-press kill {i} ({delay:.2f} s)")
            daemon.start()
        assert unanswered >= 2, "the kills never landed inside a press; the test did not test that"
        eventually(lambda: _drained(rig, daemon), 40, "the town to store and acknowledge every result")
        assert daemon.terminate() == 0
    finally:
        daemon.kill()
        town.terminate()
    final = check_journal(rig.home.journal, rows=True)
    _assert_journal_holds(final, shown, "at the end")
    st, refusals = town_show(rig.town_db, rig.trust, rig.station_path)
    assert [r["seq"] for r in st["results"]] == list(range(1, final.last_seq + 1)) and st["gaps"] == []
    at_town = {r["seq"]: r for r in st["results"]}
    for seq, r in shown.items():
        assert (at_town[seq]["sample"], at_town[seq]["verdict"]) == (r["sample"], r["verdict"]), r
    assert all(r["signature_ok"] for r in st["results"])
    assert all(at_town[s]["msg_hash"] == row[2] for s, row in final.rows.items()), "town copy differs"
    assert refusals == []


# ---- (b) broker down at press time -----------------------------------------------------------------------------

def test_broker_down_presses_succeed_and_drain_in_order(tmp_path, local_broker):
    rig = StationRig(tmp_path, broker_url=local_broker.url, photos=PHOTOS)
    town = rig.town().start()
    daemon = rig.daemon().start()
    try:
        before = shown_of(press(rig.home.control_socket))
        eventually(lambda: _drained(rig, daemon), 20, "the first press to reach the town")
        local_broker.stop()
        eventually(lambda: not daemon.status()["connected"], 10, "the station to notice the broker is gone")
        shown: dict[int, dict] = {}
        for _ in range(4):
            reply = press(rig.home.control_socket)
            assert reply["ok"] and reply["results"], f"a press with the broker down failed: {reply}"
            shown.update(shown_of(reply))
        st = daemon.status()
        assert st["last_seq"] == max(shown) and st["acked_seq"] == max(before) and st["outbox"] == len(shown)
        _assert_journal_holds(check_journal_copy(rig.home.journal, tmp_path / "copy"), shown, "broker down")
        assert rig.town_contiguous() == max(before)
        # Freeze the station while the broker comes back so the town has resubscribed before the station
        # drains: otherwise the first drain goes to a broker with no subscriber and only the station's
        # ack-stall resend (20 s) recovers it, which the chaos run measures but a quick test should not wait for.
        os.kill(daemon.proc.pid, signal.SIGSTOP)
        try:
            town_log = town.log_file.read_text()
            local_broker.start()
            eventually(lambda: town.log_file.read_text().count("connected to") > town_log.count("connected to"),
                       20, "the town listener to reconnect")
        finally:
            os.kill(daemon.proc.pid, signal.SIGCONT)
        eventually(lambda: _drained(rig, daemon), 30, "the backlog to drain to the town")
        assert daemon.terminate() == 0
    finally:
        daemon.kill()
        town.terminate()
    arrived = [s for s in town.stored_order() if s in shown]
    assert sorted(arrived) == sorted(shown), f"stored {arrived}, shown {sorted(shown)}"
    # Seq order, except that the drain deliberately sends unacknowledged positives ahead of the rest: each
    # kind must arrive in seq order, and the town ends contiguous.
    positives = [s for s in arrived if shown[s]["verdict"] == "positive"]
    others = [s for s in arrived if shown[s]["verdict"] != "positive"]
    assert positives and others
    assert positives == sorted(positives) and others == sorted(others), f"arrival order {arrived}"
    st, refusals = town_show(rig.town_db, rig.trust, rig.station_path)
    assert st["contiguous"] == max(shown) and st["gaps"] == [] and refusals == []


# ---- (c) a damaged journal ---------------------------------------------------------------------------------

def _root_page(db: Path, name: str) -> tuple[int, int]:
    con = sqlite3.connect(db)
    try:
        page = con.execute("SELECT rootpage FROM sqlite_master WHERE name = ?", (name,)).fetchone()[0]
        size = con.execute("PRAGMA page_size").fetchone()[0]
    finally:
        con.close()
    return page, size


def _varint_end(data: bytearray, i: int) -> int:
    for k in range(9):
        if k == 8 or data[i + k] < 0x80:
            return i + k + 1
    raise AssertionError("unreachable")


def _damage(db: Path, how: str) -> None:
    """Damage the file's bytes the ways an SD card or a torn write does, from gross to subtle."""
    data = bytearray(db.read_bytes())
    if how == "header":            # not recognisable as SQLite at all
        data[0:16] = b"NOT A JOURNAL!!\0"
    elif how == "btree-page":      # the results table's root page garbled
        page, size = _root_page(db, "results")
        start = (page - 1) * size
        data[start:start + 64] = b"\xa5" * 64
    elif how == "truncated":       # the second half of the file gone
        del data[len(data) // 2:]
    elif how == "index-entry":     # well-formed pages, but an index entry no longer matches its row: only
        page, size = _root_page(db, "results_unacked")   # PRAGMA integrity_check notices this
        base = (page - 1) * size
        assert data[base] == 0x0A, "expected the index to fit one leaf page"
        cell = base + int.from_bytes(data[base + 8:base + 10], "big")   # first cell: the entry for seq 1
        header = _varint_end(data, cell)                 # skip the payload size
        serial = _varint_end(data, header)               # skip the record header size: seq's serial type
        assert data[serial] == 9, "seq 1 should be stored as the constant 1"
        data[serial] = 8                                 # ... now the constant 0
    elif how == "message-bytes":   # one character of a signed message changed: only the hash chain notices
        k = data.find(b'"payload":"') + len(b'"payload":"') + 30
        data[k] = ord("A") if data[k] != ord("A") else ord("B")
    db.write_bytes(bytes(data))


@pytest.mark.parametrize("how", ["header", "btree-page", "truncated", "index-entry", "message-bytes"])
def test_damaged_journal_refuses_to_start_and_keeps_the_file(tmp_path, how):
    rig = StationRig(tmp_path, photos=PHOTOS)
    daemon = rig.daemon().start()
    try:
        for _ in range(3):
            assert press(rig.home.control_socket)["ok"]
        assert daemon.terminate() == 0
    finally:
        daemon.kill()
    journal = rig.home.journal
    assert not Path(f"{journal}-wal").exists() or Path(f"{journal}-wal").stat().st_size == 0
    _damage(journal, how)
    damaged = journal.read_bytes()
    for attempt in (1, 2):   # a second start must refuse too: nothing may have replaced the journal meanwhile
        proc = subprocess.Popen([sys.executable, "-m", "station", "run", "--home", str(rig.home.root)],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                env={k: v for k, v in os.environ.items() if k != "DEBUG"})
        try:
            _, err = proc.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            _, err = proc.communicate()
            pytest.fail(f"start {attempt}: the daemon is running on a damaged journal ({how}): {err[-500:]}")
        err = err.strip()
        assert proc.returncode != 0, f"start {attempt}: exited 0 on a damaged journal ({how}): {err}"
        assert "Traceback" not in err and len(err.splitlines()) == 1, f"start {attempt}: not one line:\n{err}"
        assert str(journal) in err, f"start {attempt}: the error does not name {journal}: {err}"
        # Kept: either in place, or moved aside under a name that says so; never deleted, never rewritten.
        aside = sorted(journal.parent.glob(f"{journal.name}.damaged-*"))
        kept = [p for p in [journal, *aside] if p.is_file() and p.read_bytes() == damaged]
        assert kept, f"start {attempt}: the damaged journal's bytes are gone ({how})"
        if journal.exists():
            assert journal.read_bytes() == damaged, f"start {attempt}: {journal} was replaced"


# ---- (d) a nearly full disk (in-process daemon, injected disk usage) -----------------------------------------

class FakeDisk:
    """shutil.disk_usage with a dial: the percentage used is whatever the test sets."""

    def __init__(self, pct: float):
        self.pct = pct

    def __call__(self, path) -> DiskUsage:
        used = int(self.pct * 10_000)
        return DiskUsage(total=1_000_000, used=used, free=1_000_000 - used)


class InProcess:
    """A Daemon built, started, served and stopped on one thread of the test process, as `station run` does on
    its main thread (its journal connection belongs to the thread that opened it)."""

    def __init__(self, rig: StationRig, disk: FakeDisk):
        self._ready = threading.Event()
        self._failed: BaseException | None = None
        self.daemon: Daemon | None = None
        self.thread = threading.Thread(target=self._run, args=(rig, disk), name="daemon-loop", daemon=True)
        self.thread.start()
        assert self._ready.wait(20), "the in-process daemon did not start"
        if self._failed:
            raise self._failed

    def _run(self, rig: StationRig, disk: FakeDisk) -> None:
        try:
            self.daemon = Daemon(load_config(rig.home.root), rig.home, disk_usage=disk)
            self.daemon.start()
        except BaseException as exc:
            self._failed = exc
            self._ready.set()
            return
        self._ready.set()
        try:
            self.daemon.serve()
        finally:
            self.daemon.stop()

    def close(self) -> None:
        self.daemon.post(Stop())
        self.thread.join(15)
        assert not self.thread.is_alive(), "the in-process daemon did not stop"


def test_nearly_full_disk_warns_then_refuses_and_deletes_no_result(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="station.app")
    rig = StationRig(tmp_path, photos=PHOTOS)   # offline: nothing is acknowledged unless the test says so
    sock = rig.home.control_socket
    disk = FakeDisk(85.0)
    st = InProcess(rig, disk)
    try:
        eventually(lambda: "disk 85.0% used (warning at 80" in caplog.text, 5, "the disk warning in the log")
        assert request(sock, {"cmd": "status"})["disk"] == "warn"
        assert len(press(sock)["results"]) == 4 and len(press(sock)["results"]) == 1   # warn: still accepted

        disk.pct = 95.0
        reply = press(sock)
        assert reply["ok"] is False and not reply.get("results"), reply
        for words in ("95.0% full", "refused", "no result has been lost"):
            assert words in reply["error"], reply["error"]
        assert st.daemon.panel.state == "refused"
        assert request(sock, {"cmd": "status"})["disk"] == "full"

        disk.pct = 94.9
        reply = press(sock)
        assert reply["ok"] and len(reply["results"]) == 4, reply
        assert st.daemon.panel.state != "refused"
    finally:
        st.close()
    with Journal(rig.home.journal) as j:
        entries = {e.seq: e for e in j.iter_entries()}
        assert sorted(entries) == list(range(1, 10))
        # The town acknowledged seq 1..5: their photographs become prunable, except where seq 6..9 share one.
        j.mark_acked(5)
    acked_only = {entries[5].image_path} - {entries[s].image_path for s in range(6, 10)}
    assert acked_only and all(Path(entries[s].image_path).is_file() for s in entries)

    disk.pct = 97.0
    st = InProcess(rig, disk)
    try:
        assert st.daemon.panel.state == "refused"   # shown from the start, before any press
        eventually(lambda: "pruned 1 acknowledged photographs" in caplog.text, 5, "the prune at a full disk")
        reply = press(sock)
        assert reply["ok"] is False and "refused" in reply["error"]
        assert st.daemon.panel.state == "refused"
    finally:
        st.close()
    rep = check_journal(rig.home.journal, rows=True)
    assert rep.problems == [] and sorted(rep.rows) == list(range(1, 10)), "a journal row was lost"
    assert all(rep.rows[s] == (e.sample_id, e.verdict, e.msg_hash) for s, e in entries.items())
    assert not any(Path(p).exists() for p in acked_only), "the acknowledged-only photograph was not pruned"
    assert all(Path(entries[s].image_path).is_file() for s in range(6, 10)), "an unacknowledged photograph was deleted"


# ---- bad requests and failing hardware never wedge the loop -----------------------------------------------

def test_bad_sample_id_and_a_crashing_camera_are_answered_and_the_station_carries_on(tmp_path):
    rig = StationRig(tmp_path, photos=PHOTOS)
    sock = rig.home.control_socket
    st = InProcess(rig, FakeDisk(10.0))
    try:
        for bad, words in (("x" * 121, "at most 120"), ("a\nb", "printable"), (7, "non-empty text")):
            reply = request(sock, {"cmd": "press", "wait": True, "sample": bad})
            assert reply["ok"] is False and words in reply["error"], reply
        good = request(sock, {"cmd": "press", "wait": True, "sample": "S-" + "9" * 100})
        assert good["ok"] and [r["sample"] for r in good["results"]][0].startswith("S-999"), good

        # The driver raises something unexpected, as a real one can (cv2.error, OSError, ...).
        before = len(st.daemon.camera.captures)
        st.daemon.camera.fail_next(RuntimeError("VIDIOC_DQBUF: No such device"))
        reply = request(sock, {"cmd": "press", "wait": True}, timeout=20)
        assert reply["ok"] is False and "VIDIOC_DQBUF" in reply["error"], reply
        assert st.daemon.panel.state == "refused"

        # A DeviceError (no StationError since drivers/ stands alone) is refused with the driver's own words.
        st.daemon.camera.fail_next("timeout")
        reply = request(sock, {"cmd": "press", "wait": True}, timeout=20)
        assert reply["ok"] is False and reply["error"].startswith("camera folder: no frame within"), reply
        assert st.daemon.panel.state == "refused"

        assert request(sock, {"cmd": "press", "wait": True}, timeout=20)["ok"]  # not stuck "busy"
        outcomes = [c.outcome for c in st.daemon.camera.captures[before:]]
        assert outcomes[:2] == ["RuntimeError('VIDIOC_DQBUF: No such device')", "timeout"] and "ok" in outcomes[2:]
    finally:
        st.close()
