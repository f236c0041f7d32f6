# The results journal and outbox: SQLite (WAL, synchronous=FULL), gap-free seq, hash chain, delivery state.
"""One Journal object per thread: the sqlite3 connection refuses use from another thread, so the
daemon loop and the publisher thread each open their own Journal on the same file. SQLite (WAL mode)
serialises their writes; appends take an IMMEDIATE transaction so two writers never race for a seq.

A row is never deleted or rewritten, only its delivery flags change. 'published' means the broker
sent PUBACK (not proof of storage); 'acked' means the town's signed ack covered it.
"""
from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path

from station.errors import JournalDamagedError, JournalError
from station.host.files import fsync_dir
from station.journal.chain import TAIL_CHECK, check_message, tail_problems
from station.journal.checkpoints import CheckpointsMixin
from station.journal.damage import damage_or_error, set_aside
from station.journal.schema import (
    APPLICATION_ID,
    COLUMNS,
    SAMPLE_INDEX,
    Entry,
    JournalStats,
    Pending,
    create_tables,
    entry_from_row,
    upgrade,
)
from station.protocol.result import GENESIS_PREV, RESULT_VERDICTS
from station.protocol.wire import message_hash

MAX_NONCE_LEN = 128



class Journal(CheckpointsMixin):
    def __init__(self, path: str | Path, *, check: bool = True):
        self.path = Path(path)
        # In WAL mode committed data can sit in the -wal file alone, so either file means "existing".
        existed = any(_nonempty(Path(f"{self.path}{s}")) for s in ("", "-wal"))
        try:
            self._db = sqlite3.connect(self.path, isolation_level=None, timeout=30.0)
        except sqlite3.Error as exc:
            raise JournalError(f"{self.path}: cannot open journal: {exc}") from None
        try:
            self._open(existed, check)
        except BaseException:
            self._db.close()
            raise

    def _open(self, existed: bool, check: bool) -> None:
        try:
            if existed:
                app = self._db.execute("PRAGMA application_id").fetchone()[0]
                empty = self._db.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()[0] == 0
                if app == 0 and empty:
                    existed = False  # a crash during creation left an empty database: finish creating it
                elif app != APPLICATION_ID:
                    raise JournalError(f"{self.path}: not a station journal (application_id {app:#x})")
            if existed and check:
                findings = [r[0] for r in self._db.execute("PRAGMA integrity_check(20)")]
                if findings != ["ok"]:
                    raise JournalDamagedError(f"{self.path}: integrity check failed: {'; '.join(findings)}")
            mode = self._db.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if mode != "wal":
                raise JournalError(f"{self.path}: cannot switch to WAL mode (got {mode!r})")
            self._db.execute("PRAGMA synchronous=FULL")
            if not existed:
                create_tables(self._db)
                fsync_dir(self.path.parent)
            upgrade(self._db, self.path)  # a version-1 journal gains 'suspect' and the instrument tables
            if check:  # the daemon's open: re-test chains and control cards are found by sample id (no-op if there)
                self._db.execute(SAMPLE_INDEX)
        except sqlite3.Error as exc:
            raise damage_or_error(self.path, exc, "cannot open journal") from None
        if check:
            try:
                problems = self._check_tail()
            except sqlite3.Error as exc:
                raise damage_or_error(self.path, exc, "reading the chain tail") from None
            if problems:
                raise JournalDamagedError(f"{self.path}: hash chain broken: {'; '.join(problems[:5])}")

    # -- lifecycle --------------------------------------------------------------------------------

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # Set-aside needs no open connection: a damaged file may not even open.
    quarantine_damaged = staticmethod(set_aside)

    # -- writing results --------------------------------------------------------------------------

    def append(
        self,
        make_message: Callable[[int, str], bytes],
        *,
        verdict: str,
        sample_id: str | None,
        image_path: str | Path | None,
        priority: bool | None = None,
    ) -> Entry:
        """Journal one result; durable on disk when this returns (append_many of one)."""
        return self.append_many([Pending(make_message, verdict, sample_id, image_path, priority)])[0]

    def append_many(self, items: Sequence[Pending]) -> list[Entry]:
        """Journal several results in ONE transaction: all are durable when this returns, or none is.

        A tray of cassettes photographed together is one press; a crash half-way through recording it
        must not leave some cassettes recorded and the rest not (re-testing the tray would duplicate
        them at the town). Each make_message(seq, prev) builds and signs inside the write transaction,
        so no other writer can take the same seq; if any raises, nothing is written. priority (default:
        verdict is positive) puts the entry in unacked_positives(), which the publisher drains first.
        """
        for it in items:
            if it.verdict not in RESULT_VERDICTS:
                raise JournalError(f"{self.path}: verdict {it.verdict!r} is not journaled (only "
                                   f"{', '.join(RESULT_VERDICTS)})")
        self._begin("cannot start append; result NOT recorded")
        seq, out = 0, []
        try:
            row = self._db.execute("SELECT seq, msg_hash FROM results ORDER BY seq DESC LIMIT 1").fetchone()
            seq, prev = (row[0] + 1, row[1]) if row else (1, GENESIS_PREV)
            for it in items:
                prio = it.verdict == "positive" if it.priority is None else it.priority
                entry = self._insert(seq, prev, it.make_message, it.verdict, it.sample_id, it.image_path, prio)
                out.append(entry)
                seq, prev = seq + 1, entry.msg_hash
            self._db.execute("COMMIT")
        except sqlite3.Error as exc:
            self._rollback()
            raise damage_or_error(self.path, exc, f"append (seq {seq or '?'}) failed; NOTHING of this batch "
                                  "recorded") from None
        except BaseException:
            self._rollback()
            raise
        return out

    def _insert(self, seq: int, prev: str, make_message: Callable[[int, str], bytes], verdict: str,
                sample_id: str | None, image_path: str | Path | None, priority: bool) -> Entry:
        """One row inside the caller's write transaction: the message is built and checked here, so every
        way into the journal (a tray, an instrument burst) stores exactly what it signed."""
        image = None if image_path is None else str(image_path)
        message = make_message(seq, prev)
        rid = check_message(self.path, message, seq, prev, verdict, sample_id)
        h, mono = message_hash(message), time.monotonic()
        self._db.execute(
            "INSERT INTO results (seq, id, message, msg_hash, prev, verdict, sample_id, image_path,"
            " created_monotonic, priority) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (seq, rid, message, h, prev, verdict, sample_id, image, mono, int(priority)))
        return Entry(seq, rid, message, h, prev, verdict, sample_id, image, False, False, None, mono, priority)

    def _begin(self, doing: str) -> None:
        try:
            self._db.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            raise damage_or_error(self.path, exc, doing) from None

    def _rollback(self) -> None:
        if self._db.in_transaction:
            self._db.execute("ROLLBACK")

    # -- reading ----------------------------------------------------------------------------------

    def get(self, seq: int) -> Entry | None:
        row = self._db.execute(f"SELECT {COLUMNS} FROM results WHERE seq = ?", (seq,)).fetchone()
        return entry_from_row(row) if row else None

    def last(self) -> Entry | None:
        row = self._db.execute(f"SELECT {COLUMNS} FROM results ORDER BY seq DESC LIMIT 1").fetchone()
        return entry_from_row(row) if row else None

    def entries(self, limit: int = 50, offset: int = 0, newest_first: bool = True) -> list[Entry]:
        order = "DESC" if newest_first else "ASC"
        return self._select(f"ORDER BY seq {order} LIMIT ? OFFSET ?", (limit, offset))

    def range(self, first: int, last: int) -> list[Entry]:
        """Entries first..last whatever their delivery state (a town that lost acked data asks again)."""
        return self._select("WHERE seq BETWEEN ? AND ? ORDER BY seq", (first, last))

    def unacked(self, after_seq: int = 0, limit: int = 100, exclude_quarantined: bool = True) -> list[Entry]:
        """What the town has not acknowledged, in seq order; page with after_seq = last seq seen."""
        quar = "AND quarantined IS NULL" if exclude_quarantined else ""
        return self._select(f"WHERE acked = 0 {quar} AND seq > ? ORDER BY seq LIMIT ?", (after_seq, limit))

    def unacked_positives(self, limit: int = 100) -> list[Entry]:
        """Priority (positive) results awaiting ack, oldest first, so none waits behind a backlog."""
        return self._select(
            "WHERE acked = 0 AND priority = 1 AND quarantined IS NULL ORDER BY seq LIMIT ?", (limit,)
        )

    def by_samples(self, sample_ids: Sequence[str], limit: int = 200) -> list[Entry]:
        """Newest first, the entries of these sample ids: a re-test chain, a lot's control cards."""
        marks = ",".join("?" * len(sample_ids))
        return self._select(f"WHERE sample_id IN ({marks}) ORDER BY seq DESC LIMIT ?", (*sample_ids, limit))

    def quarantined(self) -> list[Entry]:
        return self._select("WHERE quarantined IS NOT NULL ORDER BY seq")

    def _select(self, where: str, params: tuple = ()) -> list[Entry]:
        """Whole entries from results; where is the WHERE/ORDER BY/LIMIT tail of the query."""
        return [entry_from_row(r) for r in self._db.execute(f"SELECT {COLUMNS} FROM results {where}", params)]

    def unacked_image_paths(self) -> set[str]:
        rows = self._db.execute(
            "SELECT DISTINCT image_path FROM results WHERE acked = 0 AND image_path IS NOT NULL"
        )
        return {r[0] for r in rows}

    def acked_images(self, after_seq: int = 0, limit: int = 500) -> list[tuple[int, str]]:
        """(seq, image_path) of acknowledged results, oldest first: the only photographs prunable."""
        rows = self._db.execute(
            "SELECT seq, image_path FROM results WHERE seq > ? AND acked = 1 AND image_path IS NOT NULL"
            " ORDER BY seq LIMIT ?",
            (after_seq, limit),
        )
        return [(r[0], r[1]) for r in rows]

    # -- delivery state ---------------------------------------------------------------------------

    def _write(self, sql: str, params: Iterable = ()) -> int:
        try:
            return self._db.execute(sql, tuple(params)).rowcount
        except sqlite3.Error as exc:
            raise JournalError(f"{self.path}: update failed: {exc}") from None

    def mark_published(self, seqs: int | Iterable[int]) -> None:
        seqs = [seqs] if isinstance(seqs, int) else list(seqs)
        if not seqs:
            return
        self._begin("mark_published")
        try:
            self._db.executemany("UPDATE results SET published = 1 WHERE seq = ?", [(s,) for s in seqs])
            self._db.execute("COMMIT")
        except sqlite3.Error as exc:
            self._rollback()
            raise JournalError(f"{self.path}: mark_published failed: {exc}") from None

    def mark_acked(self, upto_seq: int, ack_message: bytes | None = None, head: str | None = None) -> bool:
        """The town stored everything <= upto_seq. Never moves backwards; True if it advanced.

        An ack beyond the last seq is refused: the town is confusing this station with another, or
        this journal was replaced, and either way marking unknown results as stored would be a lie.
        With head (the town's hash of message upto_seq) a town holding different bytes is refused too.
        """
        self._begin(f"mark_acked({upto_seq})")
        try:
            last = self._db.execute("SELECT COALESCE(MAX(seq), 0) FROM results").fetchone()[0]
            if upto_seq > last:
                raise JournalError(f"{self.path}: town acked seq {upto_seq} but the journal ends at {last}")
            if head is not None and upto_seq > 0:
                ours = self._db.execute("SELECT msg_hash FROM results WHERE seq = ?", (upto_seq,)).fetchone()[0]
                if ours != head:
                    raise JournalError(f"{self.path}: town ack of seq {upto_seq} names head {head[:16]}…, "
                                       f"the journal has {ours[:16]}…; not marking it stored")
            current = self._acked_seq()
            if upto_seq <= current:
                self._db.execute("COMMIT")
                return False
            self._db.execute("UPDATE results SET acked = 1 WHERE acked = 0 AND seq <= ?", (upto_seq,))
            self._set_state("acked_seq", str(upto_seq).encode("ascii"))
            if ack_message is not None:
                self._set_state("last_ack", bytes(ack_message))
            self._db.execute("COMMIT")
            return True
        except sqlite3.Error as exc:
            self._rollback()
            raise JournalError(f"{self.path}: mark_acked({upto_seq}) failed: {exc}") from None
        except BaseException:
            self._rollback()
            raise

    def _acked_seq(self) -> int:
        row = self._db.execute("SELECT value FROM state WHERE key = 'acked_seq'").fetchone()
        return int(row[0]) if row else 0

    def acked_seq(self) -> int:
        return self._acked_seq()

    def last_ack_message(self) -> bytes | None:
        value = self.get_state("last_ack")
        return None if value is None else bytes(value)

    def quarantine(self, seq: int, reason: str) -> None:
        """Stop retrying one message (oversize, refused) but keep it and report it; never dropped."""
        if not reason:
            raise JournalError(f"{self.path}: quarantine of seq {seq} needs a reason")
        if self._write("UPDATE results SET quarantined = ? WHERE seq = ?", (reason, seq)) != 1:
            raise JournalError(f"{self.path}: cannot quarantine seq {seq}: no such entry")

    def release_quarantine(self, seq: int) -> None:
        """Put a quarantined message back in the outbox (after a technician fixed the cause)."""
        if self._write("UPDATE results SET quarantined = NULL, published = 0 WHERE seq = ?", (seq,)) != 1:
            raise JournalError(f"{self.path}: cannot release seq {seq}: no such entry")

    def reset_published_after(self, seq: int, upto: int | None = None) -> int:
        """Town resend request: unacked entries after seq (through upto) go out again. Returns count."""
        hi = upto if upto is not None else 2**62
        return self._write(
            "UPDATE results SET published = 0 WHERE acked = 0 AND seq > ? AND seq <= ? AND published = 1",
            (seq, hi),
        )

    def stats(self) -> JournalStats:
        q = self._db.execute
        last = q("SELECT COALESCE(MAX(seq), 0) FROM results").fetchone()[0]
        unacked, unpub = q(
            "SELECT COUNT(*), COALESCE(SUM(published = 0), 0) FROM results WHERE acked = 0"
        ).fetchone()
        quar = q("SELECT COUNT(*) FROM results WHERE quarantined IS NOT NULL").fetchone()[0]
        pos = q(
            "SELECT COUNT(*) FROM results WHERE acked = 0 AND priority = 1 AND verdict = 'positive'"
        ).fetchone()[0]
        return JournalStats(last, self._acked_seq(), unacked, unpub, quar, pos)

    # -- small state ------------------------------------------------------------------------------

    def get_state(self, key: str) -> bytes | None:
        row = self._db.execute("SELECT value FROM state WHERE key = ?", (key,)).fetchone()
        return None if row is None else bytes(row[0])

    def _set_state(self, key: str, value: bytes) -> None:
        self._db.execute("INSERT OR REPLACE INTO state (key, value) VALUES (?, ?)", (key, value))

    def set_state(self, key: str, value: bytes) -> None:
        if key in ("acked_seq", "last_ack"):
            raise JournalError(f"{self.path}: state key {key!r} is only written by mark_acked")
        self._write("INSERT OR REPLACE INTO state (key, value) VALUES (?, ?)", (key, value))

    # -- command nonces ---------------------------------------------------------------------------

    def remember_nonce(self, nonce: str, expires_unix: float, now: float | None = None) -> bool:
        """True the first time a command nonce is seen; False for a replay or an already-expired command.

        Nonces are kept until their command expires, so the caller must also reject commands whose
        expiry has passed (a replay after that point is refused by the expiry, not by this table).
        """
        if not isinstance(nonce, str) or not 0 < len(nonce) <= MAX_NONCE_LEN:
            raise JournalError(f"{self.path}: command nonce must be 1..{MAX_NONCE_LEN} characters")
        now = time.time() if now is None else now
        if expires_unix <= now:
            return False
        self._begin("remember_nonce")
        try:
            self._db.execute("DELETE FROM nonces WHERE expires_unix <= ?", (now,))
            fresh = self._db.execute(
                "INSERT OR IGNORE INTO nonces (nonce, expires_unix) VALUES (?, ?)", (nonce, expires_unix)
            ).rowcount == 1
            self._db.execute("COMMIT")
        except sqlite3.Error as exc:
            self._rollback()
            raise JournalError(f"{self.path}: cannot record command nonce: {exc}") from None
        return fresh

    # -- chain verification -----------------------------------------------------------------------

    def _check_tail(self) -> list[str]:
        newest = self._select("ORDER BY seq DESC LIMIT ?", (TAIL_CHECK,))
        return tail_problems(newest[::-1], self._acked_seq())

    def iter_entries(self, page: int = 1000) -> Iterator[Entry]:
        """Every entry in seq order, a page at a time, so a full scan never holds the journal in memory."""
        after = 0
        while rows := self._select("WHERE seq > ? ORDER BY seq LIMIT ?", (after, page)):
            yield from rows
            after = rows[-1].seq


def _nonempty(path: Path) -> bool:
    try:
        return path.stat().st_size > 0
    except FileNotFoundError:
        return False
