# The town store without MQTT (SQLite file or PostgreSQL URL, db.py): ingest, dedupe, chain, checkpoints, gaps, acks.
from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from station.errors import TownStoreError, WireFormatError
from station.protocol import topics
from station.protocol.messages import CHECKPOINT_TYP, WITHHELD_TYP, build_ack, sha256_hex
from station.protocol.result import GENESIS_PREV, RESULT_TYP
from station.protocol.signing import jws_header, same_signed_content
from station.protocol.wire import now_rfc3339, strict_loads
from station.town import alerts, presence, schema
from station.town import db as dbmod
from station.town.chains import chain_columns
from station.town.refusals import RefusalBook
from station.town.reports import TownReports
from station.town.verify import Refuse, hex64, verified

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from station.town.trust import TrustStore

log = logging.getLogger("station.town")

STATUS_MAX_BYTES = 16384   # a station's status is a few hundred bytes; more is junk, not worth a row

RESULT_COLUMNS = ("station, seq, kind, message, msg_hash, prev, kid, sample, verdict, tc_ratio, t_area, c_area, "
                  "read_at, received_at, producer")
# A replaced row (a withheld seq upgraded, a non-canonical copy) takes every column of the new message.
RESULT_UPSERT = ", ".join(f"{c} = excluded.{c}" for c in RESULT_COLUMNS.split(", ")[2:])


def _station_of(topic: str) -> str | None:
    parsed = topics.parse(topic)
    return f"{parsed[0]}/{parsed[1]}" if parsed else None


@dataclass
class Outcome:
    """What ingest() did with one MQTT message."""

    action: str                  # stored | duplicate | refused | checkpoint | status | ignored
    station: str | None = None   # full grid path
    seq: int | None = None
    code: str | None = None      # refusal code
    reason: str | None = None
    ack_changed: bool = False    # the station's ack (contiguous seq or countersigned checkpoint) moved
    alerts: tuple[str, ...] = ()  # kinds of the alerts this message raised (stored in the same transaction)

    def __str__(self) -> str:
        what = f"{self.action} {self.station or '-'}#{self.seq if self.seq is not None else '-'}"
        return f"{what} [{self.code}] {self.reason}" if self.code else what


class TownStore(TownReports):
    """Store of everything the town received, in a SQLite file or a PostgreSQL database (db.py). One object per
    thread (one connection). The read-only queries (results, refusals, counters, station_info) come from
    TownReports. Several processes may share one database: each station's messages are judged under a lock."""

    def __init__(self, db_path: str | Path, trust: TrustStore | None = None,
                 town_key: Ed25519PrivateKey | None = None, town_kid: str = "town/1"):
        self.target = str(db_path)
        self.path = Path(db_path) if not dbmod.is_url(db_path) else None
        self.trust, self.town_key, self.town_kid = trust, town_key, town_kid
        self.db: Any = dbmod.connect(db_path)
        try:
            if self.path is not None:
                self.db.execute("PRAGMA journal_mode=WAL")
                self.db.execute("PRAGMA synchronous=FULL")
            schema.create(self.db)
        except Exception as exc:
            self.db.close()
            raise TownStoreError(f"{dbmod.describe(db_path)}: cannot open town database: {exc}") from None
        self._env_errors = dbmod.environment_errors(self.db)
        self._in_batch = False
        self._lock = threading.RLock()
        self.refusal_book = RefusalBook(self.db)
        self._traceback_at = -1e9

    def close(self) -> None:
        self.db.close()

    # ------------------------------------------------------------ transactions

    @contextmanager
    def batch(self, topics_ahead: Iterable[str] = (), stations: Iterable[str] = ()) -> Iterator[None]:
        """Several ingests in one transaction (one fsync). Acks must be built only after it returns.
        `topics_ahead`: the topics the batch will ingest; `stations`: station paths it will write otherwise. They
        are locked up front in one global order, so two listeners sharing a PostgreSQL database never wait on each
        other in a circle (row locks taken later follow the advisory locks already held)."""
        with self._lock:
            self.db.execute("BEGIN IMMEDIATE")
            self._in_batch = True
            for path in sorted({p for p in map(_station_of, topics_ahead) if p} | set(stations)):
                dbmod.lock_station(self.db, path)
            try:
                yield
            except BaseException:
                self.db.execute("ROLLBACK")
                raise
            else:
                self.db.execute("COMMIT")
            finally:
                self._in_batch = False

    @contextmanager
    def _tx(self) -> Iterator[None]:
        if self._in_batch:
            yield
        else:
            with self.batch():
                yield

    # ------------------------------------------------------------ ingest

    def ingest(self, topic: str, payload: bytes, now: float | None = None, retained: bool = False) -> Outcome:
        """Judge and store one message received on `topic`. Never raises for bad input: refuses it.
        `retained`: the broker replayed a stored status on subscribe, which says nothing about the station now."""
        parsed = topics.parse(topic)
        if parsed is None:
            return Outcome("ignored", reason="not a contract topic")
        grid, station_id, kind = parsed
        path = f"{grid}/{station_id}"
        with self._tx():
            dbmod.lock_station(self.db, path)   # before the savepoint: a rollback to it must not drop the lock
            # Each message in its own savepoint: whatever one sender's bytes make the code below do, only
            # that message's writes are undone, never the rest of the listener's batch.
            self.db.execute("SAVEPOINT message")
            try:
                out = self._judge(topic, path, station_id, kind, payload, now, retained)
            except Refuse as r:
                out = self._refused(topic, path, r, payload, now)
            except self._env_errors:
                raise   # disk full, I/O error, lost server: the environment, not the sender; the batch is resent
            except Exception as exc:
                self.db.execute("ROLLBACK TO message")
                if time.monotonic() - self._traceback_at >= 60.0:   # a sender who finds a crash: one a minute
                    self._traceback_at = time.monotonic()
                    log.exception("town: message on %s could not be judged", topic[:256])
                out = self._refused(topic, path, Refuse("unprocessable", f"{type(exc).__name__}: {exc}"[:300]),
                                    payload, now)
            self.db.execute("RELEASE message")
            return out

    def _judge(self, topic: str, path: str, station_id: str, kind: str, payload: bytes,
               now: float | None, retained: bool) -> Outcome:
        if kind == "result":
            return self._ingest_result(topic, path, station_id, payload, now)
        if kind == "checkpoint":
            return self._ingest_checkpoint(topic, path, station_id, payload, now)
        if kind == "status":
            return self._ingest_status(path, payload, now, retained)
        return Outcome("ignored", station=path, reason=f"{kind} is town-to-station")

    def _trusted_path(self, path: str) -> bool:
        return self.trust is None or self.trust.trusts_path(path)

    def _refused(self, topic: str, path: str, r: Refuse, payload: bytes, now: float | None) -> Outcome:
        station = r.station or path
        # Only a path some trusted key signs for is a station; anything else is counted as untrusted.
        self.refusal_book.record(topic, station if self._trusted_path(station) else None, r, payload, now)
        raised: tuple[str, ...] = ()
        if r.code in alerts.REFUSAL_ALERTS and alerts.raise_alert(
                self.db, r.code, station, r.seq, {"reason": r.detail}, None, now):
            raised = (r.code,)
        return Outcome("refused", station=station, seq=r.seq, code=r.code, reason=r.detail, alerts=raised)

    def _message(self, path: str, seq: int) -> bytes:
        row = self.db.execute("SELECT message FROM results WHERE station=? AND seq=?", (path, seq)).fetchone()
        return bytes(row[0])

    def _row(self, path: str, seq: int) -> tuple | None:
        return self.db.execute("SELECT kind, msg_hash, prev FROM results WHERE station=? AND seq=?",
                               (path, seq)).fetchone()

    def _ingest_result(self, topic: str, path: str, station_id: str, payload: bytes, now: float | None) -> Outcome:
        body, kid = verified(self.trust, station_id, path, payload, (RESULT_TYP, WITHHELD_TYP))
        seq = body["seq"]
        typ = jws_header(payload)["typ"]
        if typ == RESULT_TYP:
            kind, h, prev = "result", sha256_hex(payload), body.get("prev")
            if not hex64(prev):
                raise Refuse("malformed", f"prev must be 64 hex digits, got {prev!r}", seq=seq)
            if body.get("id") not in (None, f"{station_id}:{seq}"):
                raise Refuse("malformed", f"id {body.get('id')!r} is not '{station_id}:{seq}'", seq=seq)
        else:
            kind, h, prev = "withheld", body.get("msg_hash"), None
            if not hex64(h):
                raise Refuse("malformed", "withheld notice without a 64-hex msg_hash", seq=seq)
        existing = self._row(path, seq)
        if existing is not None:
            old_kind, old_hash, _ = existing
            if old_hash == h and old_kind == kind:
                self._count(path, "duplicates")
                return Outcome("duplicate", station=path, seq=seq)
            if old_hash == h and old_kind == "withheld" and kind == "result":
                pass   # the full message for a withheld seq finally arrived (e.g. a USB export): upgrade
            elif old_hash == h:
                self._count(path, "duplicates")    # a withheld notice for a message we already hold
                return Outcome("duplicate", station=path, seq=seq)
            elif old_kind == kind == "result" and same_signed_content(self._message(path, seq), payload):
                # One signed result in two wrappings (a copy stored before the canonical-envelope rule):
                # not equivocation; keep the canonical bytes, the ones the station chains from (the INSERT OR
                # REPLACE below, once the chain checks pass).
                log.warning("town: %s#%s: replacing a non-canonical copy by the canonical message", path, seq)
            else:
                raise Refuse("equivocation", f"seq {seq} already stored with hash {old_hash[:16]}…, this "
                              f"message hashes to {str(h)[:16]}… (two different signed results for one seq)",
                              seq=seq)
        # chain: predecessor's hash must be our prev; our hash must be the successor's prev
        if kind == "result":
            if seq == 1 and prev != GENESIS_PREV:
                raise Refuse("broken-chain", "seq 1 must have prev = 64 zeros", seq=seq)
            before = self._row(path, seq - 1) if seq > 1 else None
            if before is not None and before[1] != prev:
                raise Refuse("broken-chain", f"prev {prev[:16]}… does not match stored seq {seq - 1} hash "
                              f"{before[1][:16]}…", seq=seq)
        after = self._row(path, seq + 1)
        if after is not None and after[0] == "result" and after[2] != h:
            raise Refuse("broken-chain", f"stored seq {seq + 1} has prev {after[2][:16]}…, this message "
                          f"hashes to {h[:16]}…", seq=seq)
        r = body.get("reading") if isinstance(body.get("reading"), dict) else {}
        sample = body.get("sample")
        sample_id = sample.get("id") if isinstance(sample, dict) else None
        read_at = body.get("time", {}).get("read_at") if isinstance(body.get("time"), dict) else None

        def num(v: object) -> float | None:
            return float(v) if isinstance(v, int | float) and not isinstance(v, bool) else None

        def text(v: object) -> str | None:
            return v[:200] if isinstance(v, str) else None if v is None else json.dumps(v)[:200]

        producer = sample.get("producer") if isinstance(sample, dict) else None
        self.db.execute(
            f"INSERT INTO results ({RESULT_COLUMNS}, sig_ok) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,1) "
            f"ON CONFLICT (station, seq) DO UPDATE SET {RESULT_UPSERT}",
            (path, seq, kind, payload, h, prev, kid, text(sample_id),
             text(body.get("verdict")) if kind == "result" else text(f"withheld: {body.get('reason')}"),
             num(r.get("tc_ratio")), num(r.get("t_area")), num(r.get("c_area")), text(read_at), now_rfc3339(now),
             producer[:200] if isinstance(producer, str) else None))
        if kind == "result":
            chain_columns(self.db, path, seq, body)
        self._count(path, "stored")
        self._seen(path, now)
        changed = self._advance(path)
        changed = self._check_pending_checkpoints(path) or changed
        raised = alerts.result_alerts(self.db, path, seq, body, now) if kind == "result" else []
        if alerts.gap_alert(self.db, path, self._gap_below(path, seq), now):
            raised.append("gap")
        return Outcome("stored", station=path, seq=seq, ack_changed=changed, alerts=tuple(raised))

    def _count(self, path: str, name: str) -> None:
        self.db.execute("INSERT INTO counters VALUES (?,?,1) ON CONFLICT (station, name) DO UPDATE SET n=counters.n+1",
                        (path, name))

    def _station(self, path: str) -> None:
        self.db.execute("INSERT INTO stations (station) VALUES (?) ON CONFLICT DO NOTHING", (path,))

    def _seen(self, path: str, now: float | None) -> None:
        self._station(path)
        self.db.execute("UPDATE stations SET last_seen=? WHERE station=?", (now_rfc3339(now), path))

    def _gap_below(self, path: str, seq: int) -> list[tuple[int, int]]:
        """The missing range just below `seq`, if any: two indexed lookups, not a scan of the chain, because
        it runs on every ingest."""
        below = self.db.execute("SELECT MAX(seq) FROM results WHERE station=? AND seq<?", (path, seq)).fetchone()[0]
        low = (below or 0) + 1
        return [(low, seq - 1)] if low <= seq - 1 else []

    def check_silent(self, silent_after_s: float, now: float) -> list[str]:
        """Raise a `silent` alert for each station quiet for longer than silent_after_s (once per silence)."""
        with self._tx():
            return alerts.silent_alerts(self.db, silent_after_s, now)

    def contiguous(self, path: str) -> int:
        row = self.db.execute("SELECT contiguous FROM stations WHERE station=?", (path,)).fetchone()
        return row[0] if row else 0

    def _advance(self, path: str) -> bool:
        self._station(path)
        n = start = self.contiguous(path)
        while self.db.execute("SELECT 1 FROM results WHERE station=? AND seq=?", (path, n + 1)).fetchone():
            n += 1
        if n != start:
            self.db.execute("UPDATE stations SET contiguous=? WHERE station=?", (n, path))
        return n != start

    # ------------------------------------------------------------ checkpoints and status

    def _ingest_checkpoint(self, topic: str, path: str, station_id: str, payload: bytes,
                           now: float | None) -> Outcome:
        body, _ = verified(self.trust, station_id, path, payload, (CHECKPOINT_TYP,))
        seq, head = body["seq"], body.get("head")
        if not hex64(head):
            raise Refuse("malformed", "checkpoint head must be 64 hex digits", seq=seq)
        digest = sha256_hex(payload)
        self._station(path)
        self.db.execute("INSERT INTO checkpoints VALUES (?,?,?,?,?,?,'pending') ON CONFLICT DO NOTHING",
                        (path, seq, head, payload, digest, now_rfc3339(now)))
        self._seen(path, now)
        changed = self._check_pending_checkpoints(path)
        raised = ("gap",) if alerts.gap_alert(self.db, path, self._gap_below(path, seq + 1), now) else ()
        state = self.db.execute("SELECT state FROM checkpoints WHERE station=? AND seq=? AND jws_sha256=?",
                                (path, seq, digest)).fetchone()[0]
        if state == "mismatch":
            raise Refuse("checkpoint-mismatch", f"checkpoint at seq {seq} has head {head[:16]}… but the stored "
                          "result differs (truncated or rewritten journal?)", seq=seq)
        return Outcome("checkpoint", station=path, seq=seq, reason=state, ack_changed=changed, alerts=raised)

    def _check_pending_checkpoints(self, path: str) -> bool:
        changed = False
        for seq, head, digest in self.db.execute(
                "SELECT seq, head, jws_sha256 FROM checkpoints WHERE station=? AND state='pending'",
                (path,)).fetchall():
            row = self._row(path, seq)
            if row is None:
                continue
            ok = row[1] == head
            self.db.execute("UPDATE checkpoints SET state=? WHERE station=? AND seq=? AND jws_sha256=?",
                            ("verified" if ok else "mismatch", path, seq, digest))
            if not ok:
                log.error("CHECKPOINT MISMATCH %s seq %s: station says head %s…, stored %s…", path, seq,
                          head[:16], row[1][:16])
            changed = changed or ok
        return changed

    def _ingest_status(self, path: str, payload: bytes, now: float | None, retained: bool = False) -> Outcome:
        # Status is unsigned (a retained message and last will): only a trusted station's path gets a row,
        # and only a JSON object within limits is kept, so `town show` can print whatever is stored.
        if not payload:
            return Outcome("ignored", station=path, reason="empty status (retained message cleared)")
        if not self._trusted_path(path):
            raise Refuse("unknown-station", "status for a path no trusted key signs for")
        try:
            body = strict_loads(payload, max_bytes=STATUS_MAX_BYTES, max_depth=8)
        except WireFormatError as exc:
            raise Refuse("bad-status", f"status: {exc}") from None
        if not isinstance(body, dict):
            raise Refuse("bad-status", f"status must be a JSON object, not {type(body).__name__}")
        text = json.dumps(body, ensure_ascii=False, allow_nan=False)
        self._station(path)
        presence.note(self.db, path, body.get("state"), now, retained)
        self.db.execute("UPDATE stations SET status=?, status_at=? WHERE station=?", (text, now_rfc3339(now), path))
        if not retained:
            self._seen(path, now)
        return Outcome("status", station=path)

    # ------------------------------------------------------------ acks, gaps, queries

    def expected_last(self, path: str) -> int:
        """Highest seq known to exist: stored results, or claimed by a signed checkpoint."""
        a = self.db.execute("SELECT MAX(seq) FROM results WHERE station=?", (path,)).fetchone()[0] or 0
        b = self.db.execute("SELECT MAX(seq) FROM checkpoints WHERE station=?", (path,)).fetchone()[0] or 0
        return max(a, b)

    def gaps(self, path: str) -> list[tuple[int, int]]:
        """Missing seq ranges (inclusive) up to the highest seq known to exist."""
        out: list[tuple[int, int]] = []
        expect = self.contiguous(path) + 1
        for (seq,) in self.db.execute("SELECT seq FROM results WHERE station=? AND seq>=? ORDER BY seq",
                                      (path, expect)):
            if seq > expect:
                out.append((expect, seq - 1))
            expect = seq + 1
        last = self.expected_last(path)
        if last >= expect:
            out.append((expect, last))
        return out

    def stations(self) -> list[str]:
        # Refusals alone do not make a station: an unauthenticated sender names any path it likes.
        rows = self.db.execute("SELECT station FROM stations UNION SELECT station FROM results ORDER BY 1")
        return [r[0] for r in rows]

    def latest_countersignable(self, path: str, upto: int) -> dict | None:
        row = self.db.execute(
            "SELECT seq, head, jws_sha256 FROM checkpoints WHERE station=? AND state='verified' AND seq<=? "
            "ORDER BY seq DESC LIMIT 1", (path, upto)).fetchone()
        return {"seq": row[0], "head": row[1], "jws_sha256": row[2]} if row else None

    def build_ack(self, path: str, now: float | None = None) -> tuple[str, bytes] | None:
        """(topic, signed ack) for the highest contiguous seq stored, or None if nothing to ack / no key."""
        if self.town_key is None:
            return None
        n = self.contiguous(path)
        if n == 0:
            return None
        head = self.db.execute("SELECT msg_hash FROM results WHERE station=? AND seq=?", (path, n)).fetchone()[0]
        msg = build_ack(self.town_key, self.town_kid, path, n, head, self.latest_countersignable(path, n), now)
        self.db.execute("UPDATE stations SET last_ack=?, last_ack_seq=? WHERE station=?", (msg, n, path))
        return topics.station_topic(path, "ack"), msg
