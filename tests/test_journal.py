# Journal: gap-free seq, hash chain, delivery state, checkpoints, nonces, damage detection — on real SQLite files.
from __future__ import annotations

import hashlib
import os
import shutil
import sqlite3
import threading

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from station.errors import JournalDamagedError, JournalError
from station.journal import TAIL_CHECK, Journal, verify_chain
from station.protocol.result import GENESIS_PREV, RESULT_TYP, build_result_payload
from station.protocol.signing import sign_jws
from station.protocol.wire import message_hash

KEY = Ed25519PrivateKey.generate()


def maker(verdict: str = "negative", sample_id: str = "S-1", seq_shift: int = 0, prev_override: str | None = None):
    def make(seq: int, prev: str) -> bytes:
        payload = build_result_payload(
            seq=seq + seq_shift, prev=prev_override or prev, station_path="d/t/v/st-1", station_id="st-1",
            boot={"counter": 1, "monotonic_s": 10.0}, read_at="2026-11-24T00:00:00Z", clock_synced=False,
            sample={"id": sample_id, "producer": None},
            strip={"type": "pesticide-generic", "analyte": "carbofuran", "lot": None, "slot": 0},
            reading={"tc_ratio": 0.9, "c_area": 1.0, "t_area": 0.9, "c_peak": 0.2, "t_peak": 0.18, "snr": 30.0},
            verdict=verdict, quality=[], calibration={"id": None, "cutoff": 0.6}, image_sha256=None,
            source="camera",
        )
        return sign_jws(payload, KEY, "st-1/1", RESULT_TYP)

    return make


def add(j: Journal, verdict: str = "negative", sample_id: str = "S-1", image_path=None):
    return j.append(maker(verdict, sample_id), verdict=verdict, sample_id=sample_id, image_path=image_path)


@pytest.fixture
def jpath(tmp_path):
    return tmp_path / "journal.sqlite"


def test_chain_links_and_seq_gap_free(jpath):
    with Journal(jpath) as j:
        entries = [add(j, sample_id=f"S-{i}") for i in range(6)]
    assert [e.seq for e in entries] == [1, 2, 3, 4, 5, 6]
    assert entries[0].prev == GENESIS_PREV
    for a, b in zip(entries, entries[1:], strict=False):
        assert b.prev == hashlib.sha256(a.message).hexdigest() == a.msg_hash
    with Journal(jpath) as j:  # reopen: same rows, chain verified
        assert [j.get(s).message for s in range(1, 7)] == [e.message for e in entries]
        assert j.last().seq == 6 and j.get(7) is None
        assert verify_chain(j) == []
        assert [e.seq for e in j.entries(limit=2)] == [6, 5]
        assert [e.seq for e in j.entries(limit=2, offset=1, newest_first=False)] == [2, 3]
        assert add(j).seq == 7


def test_failed_make_message_writes_nothing(jpath):
    with Journal(jpath) as j:
        add(j)

        def boom(seq, prev):
            raise RuntimeError("signing device unplugged")

        with pytest.raises(RuntimeError):
            j.append(boom, verdict="negative", sample_id="S-1", image_path=None)
        with pytest.raises(JournalError, match="seq"):
            j.append(maker(seq_shift=1), verdict="negative", sample_id="S-1", image_path=None)
        with pytest.raises(JournalError, match="prev"):
            j.append(maker(prev_override="ab" * 32), verdict="negative", sample_id="S-1", image_path=None)
        with pytest.raises(JournalError, match="verdict"):
            j.append(maker("positive"), verdict="negative", sample_id="S-1", image_path=None)
        with pytest.raises(JournalError, match="sample.id"):
            j.append(maker(sample_id="S-2"), verdict="negative", sample_id="S-1", image_path=None)
        with pytest.raises(JournalError, match="not journaled"):
            j.append(maker(), verdict="retake", sample_id="S-1", image_path=None)
        with pytest.raises(JournalError, match="not bytes"):
            j.append(lambda s, p: "text", verdict="negative", sample_id="S-1", image_path=None)
        assert j.stats().last_seq == 1
        assert add(j).seq == 2
        assert verify_chain(j) == []


def test_acks_are_monotonic_and_bounded(jpath):
    with Journal(jpath) as j:
        for _ in range(5):
            add(j)
        assert j.mark_acked(3, b'{"ack":3}') is True
        assert j.mark_acked(2, b'{"ack":2}') is False
        assert j.acked_seq() == 3
        assert j.last_ack_message() == b'{"ack":3}'
        assert [e.seq for e in j.unacked()] == [4, 5]
        with pytest.raises(JournalError, match="journal ends at 5"):
            j.mark_acked(6)
        with pytest.raises(JournalError, match="not marking it stored"):
            j.mark_acked(4, b'{"ack":4}', head=j.get(3).msg_hash)
        assert j.acked_seq() == 3 and j.last_ack_message() == b'{"ack":3}'
        assert j.mark_acked(4, b'{"ack":4}', head=j.get(4).msg_hash) is True
        assert j.mark_acked(3) is False
        with pytest.raises(JournalError, match="only written by mark_acked"):
            j.set_state("acked_seq", b"1")
    with Journal(jpath) as j:
        assert j.acked_seq() == 4
        assert j.get(4).acked and not j.get(5).acked
        s = j.stats()
        assert (s.last_seq, s.acked_seq, s.unacked, s.unpublished) == (5, 4, 1, 1)


def test_quarantine_keeps_but_skips(jpath):
    with Journal(jpath) as j:
        for _ in range(4):
            add(j)
        j.quarantine(2, "oversize: 300000 bytes > 262144")
        assert [e.seq for e in j.unacked()] == [1, 3, 4]
        assert [e.seq for e in j.unacked(exclude_quarantined=False)] == [1, 2, 3, 4]
        assert j.get(2).quarantined.startswith("oversize")
        assert j.get(2).message  # kept, not dropped
        assert j.stats().quarantined == 1
        assert [e.seq for e in j.quarantined()] == [2]
        with pytest.raises(JournalError, match="no such entry"):
            j.quarantine(99, "x")
        with pytest.raises(JournalError, match="reason"):
            j.quarantine(1, "")
        j.release_quarantine(2)
        assert [e.seq for e in j.unacked()] == [1, 2, 3, 4]


def test_publish_flags_and_resend_reset(jpath):
    with Journal(jpath) as j:
        for _ in range(6):
            add(j)
        j.mark_published([1, 2, 3, 4, 5, 6])
        j.mark_acked(2)
        assert j.stats().unpublished == 0
        assert j.reset_published_after(3, upto=5) == 2
        assert [(e.seq, e.published) for e in j.unacked()] == [(3, True), (4, False), (5, False), (6, True)]
        assert j.reset_published_after(0) == 2  # 3 and 6; acked 1-2 are not touched
        assert j.stats().unpublished == 4
        assert [e.seq for e in j.range(1, 3)] == [1, 2, 3]  # acked ones can still be resent on request
        j.mark_published(4)
        assert j.get(4).published


def test_unacked_paging_and_positives_first(jpath):
    with Journal(jpath) as j:
        for i in range(300):
            add(j, "positive" if i in (250, 299) else "negative", sample_id=f"S-{i}")
        page1 = j.unacked(limit=100)
        page2 = j.unacked(after_seq=page1[-1].seq, limit=100)
        assert [e.seq for e in page1 + page2] == list(range(1, 201))
        assert [e.seq for e in j.unacked_positives(limit=10)] == [251, 300]
        assert j.stats().positives_unacked == 2
        j.mark_acked(260)
        assert [e.seq for e in j.unacked_positives(limit=10)] == [300]
        assert j.stats().positives_unacked == 1


def test_checkpoints(jpath):
    with Journal(jpath) as j:
        for _ in range(3):
            add(j)
        head = j.get(3).msg_hash
        with pytest.raises(JournalError, match="not the entry hash"):
            j.add_checkpoint(3, "00" * 32, b"cp")
        with pytest.raises(JournalError, match="no such entry"):
            j.add_checkpoint(9, head, b"cp")
        j.add_checkpoint(3, head, b"station-cp-3")
        j.add_checkpoint(3, head, b"station-cp-3")  # idempotent
        with pytest.raises(JournalError, match="different checkpoint"):
            j.add_checkpoint(3, head, b"other")
        assert j.latest_checkpoint(countersigned=True) is None
        with pytest.raises(JournalError, match="no such checkpoint"):
            j.countersign_checkpoint(2, b"town")
        j.countersign_checkpoint(3, b"town-3")
        with pytest.raises(JournalError, match="different countersignature"):
            j.countersign_checkpoint(3, b"town-x")
        cp = j.latest_checkpoint(countersigned=True)
        assert (cp.seq, cp.head, cp.station_jws, cp.town_jws) == (3, head, b"station-cp-3", b"town-3")


def test_command_nonce_replay(jpath):
    with Journal(jpath) as j:
        assert j.remember_nonce("n-1", expires_unix=2000.0, now=1000.0) is True
        assert j.remember_nonce("n-1", expires_unix=2000.0, now=1500.0) is False
        assert j.remember_nonce("n-2", expires_unix=900.0, now=1000.0) is False  # already expired
        assert j.remember_nonce("n-3", expires_unix=3000.0, now=2500.0) is True  # purges n-1
        assert j._db.execute("SELECT nonce FROM nonces ORDER BY nonce").fetchall() == [("n-3",)]
        with pytest.raises(JournalError):
            j.remember_nonce("", 1.0)
    with Journal(jpath) as j:  # replay protection survives a restart
        assert j.remember_nonce("n-3", expires_unix=3000.0, now=2600.0) is False


def test_two_connections_two_threads_stay_gap_free(jpath):
    Journal(jpath).close()
    errors: list[BaseException] = []

    def worker(tag: str):
        try:
            with Journal(jpath) as j:  # one Journal per thread
                for i in range(40):
                    add(j, sample_id=f"{tag}-{i}")
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(t,)) for t in "ab"]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    with Journal(jpath) as j:
        assert j.stats().last_seq == 80
        assert verify_chain(j) == []
        refused: list[BaseException] = []

        def use_from_other_thread():
            try:
                j.last()
            except sqlite3.ProgrammingError as exc:
                refused.append(exc)

        th = threading.Thread(target=use_from_other_thread)
        th.start()
        th.join()
        assert len(refused) == 1  # cross-thread use is refused, never silently shared


def _fill(jpath, n):
    with Journal(jpath) as j:
        for i in range(n):
            add(j, sample_id=f"S-{i}")


def test_corrupted_file_detected_and_kept_aside(jpath):
    _fill(jpath, 120)
    size = jpath.stat().st_size
    assert not os.path.exists(f"{jpath}-wal") or os.path.getsize(f"{jpath}-wal") == 0
    page = 4096
    with open(jpath, "r+b") as f:  # a page in the middle of the file overwritten, as a bad SD sector would
        f.seek((size // page // 2) * page)
        f.write(os.urandom(page))
    damaged = jpath.read_bytes()
    with pytest.raises(JournalDamagedError) as err:
        Journal(jpath)
    assert str(jpath) in str(err.value)
    moved = Journal.quarantine_damaged(jpath)
    assert moved.name.startswith("journal.sqlite.damaged-")
    assert moved.read_bytes() == damaged and not jpath.exists()
    with Journal(jpath) as j:  # a fresh journal may start; the damaged one stays for recovery
        assert j.stats().last_seq == 0
    again = Journal.quarantine_damaged(jpath)
    assert again != moved and moved.exists() and again.exists()


def test_garbage_file_is_refused(jpath):
    jpath.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(JournalDamagedError, match="journal.sqlite"):
        Journal(jpath)
    other = jpath.with_name("other.sqlite")
    sqlite3.connect(other).execute("CREATE TABLE t (x)").connection.close()
    with pytest.raises(JournalError, match="not a station journal") as err:
        Journal(other)
    assert not isinstance(err.value, JournalDamagedError)


def test_unopenable_path_is_not_called_damage(tmp_path):
    """Only real damage may lead anyone to move a journal aside; a bad path or lock is another error."""
    where = tmp_path / "journal.sqlite"
    where.mkdir()
    with pytest.raises(JournalError, match="journal.sqlite") as err:
        Journal(where)
    assert not isinstance(err.value, JournalDamagedError)


def test_quarantine_damaged_moves_wal_with_it(tmp_path, jpath):
    crashed = tmp_path / "crashed" / "journal.sqlite"
    crashed.parent.mkdir()
    with Journal(jpath) as j:
        add(j)
        # Copying main file and WAL while the connection is open gives the on-disk state of a crash.
        for suffix in ("", "-wal"):
            shutil.copyfile(f"{jpath}{suffix}", f"{crashed}{suffix}")
    assert os.path.getsize(f"{crashed}-wal") > 0
    moved = Journal.quarantine_damaged(crashed)
    assert not os.path.exists(f"{crashed}-wal") and os.path.getsize(f"{moved}-wal") > 0
    with Journal(moved) as old:  # SQLite finds the WAL under the new name: the row is recoverable
        assert old.get(1) is not None and verify_chain(old) == []


def test_tampered_tail_refused_at_open(jpath):
    _fill(jpath, 10)
    db = sqlite3.connect(jpath)
    db.execute("UPDATE results SET message = CAST(replace(CAST(message AS TEXT), 'e', 'f') AS BLOB) WHERE seq = 9")
    db.commit()
    db.close()
    with pytest.raises(JournalDamagedError, match="hash chain broken.*seq 9"):
        Journal(jpath)
    with Journal(jpath, check=False) as j:
        assert any("seq 9" in p for p in verify_chain(j))


def test_full_scan_finds_tampering_beyond_the_tail(jpath):
    _fill(jpath, TAIL_CHECK + 20)
    db = sqlite3.connect(jpath)
    # A careful forger rewrites message and msg_hash together; the next entry's prev still exposes it.
    forged = maker(sample_id="S-forged")(5, db.execute("SELECT prev FROM results WHERE seq=5").fetchone()[0])
    db.execute("UPDATE results SET message = ?, msg_hash = ?, sample_id = 'S-forged' WHERE seq = 5",
               (forged, message_hash(forged)))
    db.execute("DELETE FROM results WHERE seq = 7")
    db.commit()
    db.close()
    with Journal(jpath) as j:  # the tail is intact, so opening is quick and succeeds
        problems = verify_chain(j)
    assert any(p.startswith("seq 6: prev") for p in problems), problems
    assert any("seq 8 follows 6" in p for p in problems), problems


def test_durability_settings_are_in_force(jpath):
    with Journal(jpath) as j:
        assert j._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert j._db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL: fsync the WAL at every commit
        plan = " ".join(str(r) for r in j._db.execute(
            "EXPLAIN QUERY PLAN SELECT seq FROM results WHERE acked = 0 AND quarantined IS NULL AND seq > 0"
            " ORDER BY seq LIMIT 100"))
        assert "results_unacked" in plan  # the outbox scan must not walk every result ever taken


def test_reopen_from_crash_state_with_rows_only_in_wal(tmp_path, jpath):
    crashed = tmp_path / "copy.sqlite"
    with Journal(jpath) as j:
        first = add(j)
        for suffix in ("", "-wal"):
            shutil.copyfile(f"{jpath}{suffix}", f"{crashed}{suffix}")
    with Journal(crashed) as j:
        assert j.get(1) == first
        assert add(j).prev == first.msg_hash


def test_crash_during_creation_leaves_a_usable_file(jpath):
    db = sqlite3.connect(jpath)  # killed after SQLite wrote the header, before the schema committed
    db.execute("PRAGMA journal_mode=WAL")
    db.close()
    assert jpath.stat().st_size > 0
    with Journal(jpath) as j:
        assert add(j).seq == 1


def test_append_many_is_one_transaction_chained_like_single_appends(jpath):
    """Issue 8, defect 9: a tray's results go in together; one bad message leaves none of the batch."""
    from station.journal import Pending

    def boom(seq: int, prev: str) -> bytes:
        raise RuntimeError("signing failed")

    with Journal(jpath) as j:
        add(j)
        tray = [Pending(maker(sample_id=f"T/{i}"), "negative", f"T/{i}", None) for i in range(3)]
        with pytest.raises(RuntimeError):
            j.append_many([*tray[:2], Pending(boom, "negative", "T/2", None)])
        assert j.stats().last_seq == 1
        entries = j.append_many(tray)
        assert [e.seq for e in entries] == [2, 3, 4]
        assert [e.prev for e in entries] == [j.get(1).msg_hash, entries[0].msg_hash, entries[1].msg_hash]
        assert verify_chain(j) == []
