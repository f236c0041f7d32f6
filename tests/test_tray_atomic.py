# Issue 8, defect 9: a tray of cassettes is recorded all-or-nothing, proven with real SIGKILLs of a real daemon
# landed right after the journal's first commit of a press; and each cassette gets its own sample id.
from __future__ import annotations

import os
import signal
from collections import Counter
from pathlib import Path

from stationkit import press, read_reply, send_press

from station.journal import Journal
from station.lab.rig import StationRig, check_journal_copy

KILLS = 6


def _wal_mark(journal: Path) -> tuple[int, int]:
    try:
        st = os.stat(f"{journal}-wal")
    except FileNotFoundError:
        return (0, 0)
    return (st.st_mtime_ns, st.st_size)


def _trays(journal: Path, scratch: Path) -> Counter:
    """Results per press, as the killed daemon left the journal (checked on a copy)."""
    rep = check_journal_copy(journal, scratch)
    assert rep.problems == [], rep.problems
    return Counter(sample.rsplit("/", 1)[0] for sample, _verdict, _hash in rep.rows.values())


def test_a_sigkill_during_recording_leaves_a_tray_whole_or_absent(tmp_path):
    rig = StationRig(tmp_path, photos=("four-cassettes.jpg",))
    d = rig.daemon().start()
    try:
        for _ in range(KILLS):
            before = _wal_mark(rig.home.journal)
            conn = send_press(rig.home.control_socket)
            # Kill the moment the journal's write-ahead log changes: the first commit of this press.
            while _wal_mark(rig.home.journal) == before and d.running:
                pass
            os.kill(d.proc.pid, signal.SIGKILL)
            d.proc.wait(10)
            read_reply(conn)
            partial = {k: n for k, n in _trays(rig.home.journal, tmp_path / "copy").items() if n != 4}
            assert partial == {}, f"a press recorded only part of its tray: {partial}"
            d.start()
        reply = press(rig.home.control_socket)
        assert reply["ok"] and len(reply["results"]) == 4
    finally:
        d.kill()
    with Journal(rig.home.journal) as j:
        counts = _trays(rig.home.journal, tmp_path / "copy2")
        assert set(counts.values()) == {4} and sum(counts.values()) == j.stats().last_seq >= 4


def test_each_cassette_of_a_tray_gets_its_own_sample_id(tmp_path):
    rig = StationRig(tmp_path, photos=("four-cassettes.jpg",))
    d = rig.daemon().start()
    try:
        unnamed = press(rig.home.control_socket)["results"]
        named = press(rig.home.control_socket, sample="farm-7")["results"]
    finally:
        d.kill()
    ids = [r["sample"] for r in unnamed]
    assert len(set(ids)) == 4 and all(i.startswith("b1-j") and i.endswith(f"/{r['slot']}")
                                      for i, r in zip(ids, unnamed, strict=True)), ids
    assert [r["sample"] for r in named] == [f"farm-7/{r['slot']}" for r in named]
