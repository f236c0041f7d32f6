# The chain: gap-free seq from 1, each entry's prev the hash of the one before; verify_chain checks it all.
from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from station.errors import JournalError, SignatureError
from station.journal.schema import Entry
from station.protocol.result import GENESIS_PREV
from station.protocol.signing import unverified_payload
from station.protocol.wire import message_hash

if TYPE_CHECKING:
    from station.journal.journal import Journal

TAIL_CHECK = 32  # entries whose chain is re-verified at every open; verify_chain() scans everything


def embedded_fields(message: bytes) -> dict:
    """The record inside a flattened JWS, unverified: the journal checks it agrees with its row."""
    try:
        return unverified_payload(message)
    except SignatureError as exc:
        raise ValueError(str(exc)) from None


def check_message(path: Path, message: bytes, seq: int, prev: str, verdict: str, sample_id: str | None) -> str:
    """A caller bug that signs the wrong seq or prev would break the chain for good: refuse it."""
    if not isinstance(message, bytes | bytearray):
        raise JournalError(f"{path}: make_message returned {type(message).__name__}, not bytes")
    try:
        rec = embedded_fields(bytes(message))
    except ValueError as exc:
        raise JournalError(f"{path}: seq {seq}: {exc}") from None
    sample = rec.get("sample") if isinstance(rec.get("sample"), dict) else {}
    for field, got, want in (
        ("seq", rec.get("seq"), seq), ("prev", rec.get("prev"), prev),
        ("verdict", rec.get("verdict"), verdict), ("sample.id", sample.get("id"), sample_id),
    ):
        if got != want:
            raise JournalError(
                f"{path}: seq {seq}: message {field} is {got!r}, journal expects {want!r}"
            )
    rid = rec.get("id")
    if not isinstance(rid, str) or not rid.endswith(f":{seq}"):
        raise JournalError(f"{path}: seq {seq}: message id {rid!r} does not end in ':{seq}'")
    return rid


def link_problems(entries: Iterable[Entry], expect_seq: int, expect_prev: str) -> list[str]:
    problems: list[str] = []
    for e in entries:
        if e.seq != expect_seq:
            problems.append(f"seq {e.seq} follows {expect_seq - 1} (gap)")
        if message_hash(e.message) != e.msg_hash:
            problems.append(f"seq {e.seq}: stored message does not match its hash")
        if e.prev != expect_prev:
            problems.append(f"seq {e.seq}: prev {e.prev[:12]}… does not link to the previous message")
        try:
            rec = embedded_fields(e.message)
            if rec.get("seq") != e.seq or rec.get("prev") != e.prev or rec.get("id") != e.id:
                problems.append(f"seq {e.seq}: signed record disagrees with its journal row")
        except ValueError as exc:
            problems.append(f"seq {e.seq}: {exc}")
        expect_seq, expect_prev = e.seq + 1, message_hash(e.message)
    return problems


def tail_problems(entries: list[Entry], acked_seq: int) -> list[str]:
    """The newest TAIL_CHECK entries, oldest first: a cheap check at every open, not a full scan.

    The first entry's own prev is trusted (its predecessor is not read) unless it is seq 1.
    """
    if not entries:
        return []
    first = entries[0]
    prev = GENESIS_PREV if first.seq == 1 else first.prev
    problems = link_problems(entries, first.seq, prev)
    if len(entries) < TAIL_CHECK and first.seq != 1:
        problems.append(f"journal starts at seq {first.seq}, not 1")
    if acked_seq > entries[-1].seq:
        problems.append(f"acked_seq {acked_seq} is beyond the last entry {entries[-1].seq}")
    return problems


def chain_problems(entries: Iterable[Entry], max_problems: int = 100) -> list[str]:
    """Entries from seq 1 in order: gap-free, every hash and link right. Stops at max_problems."""
    problems: list[str] = []
    expect_seq, expect_prev = 1, GENESIS_PREV
    for e in entries:
        found = link_problems([e], expect_seq, expect_prev)
        problems.extend(found)
        if len(problems) >= max_problems:
            return problems[:max_problems]
        expect_seq, expect_prev = e.seq + 1, message_hash(e.message)
    return problems


def verify_chain(journal: Journal, max_problems: int = 100) -> list[str]:
    """Full scan from seq 1: gap-free, every hash and link right. Empty list means intact."""
    return chain_problems(journal.iter_entries(), max_problems)
