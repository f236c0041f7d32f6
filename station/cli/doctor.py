# `station doctor`: check the journal in full and, on the technician's word, set a damaged one aside.
from __future__ import annotations

import argparse

from station.cli.common import add_home, home_of
from station.errors import JournalDamagedError, StationError
from station.journal import Journal, verify_chain


def add_parser(sub) -> None:
    p = sub.add_parser("doctor", help="check the journal: SQLite integrity and the full hash chain")
    add_home(p)
    p.add_argument("--set-aside", action="store_true",
                   help="if the journal is damaged, move it (and its -wal/-shm) aside so the station can start a "
                        "new one; never deletes anything. Stop the daemon first.")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    home = home_of(args)
    if not home.journal.exists():
        raise StationError(f"{home.journal}: no journal here")
    try:
        with Journal(home.journal) as journal:
            problems = verify_chain(journal)
            stats = journal.stats()
    except JournalDamagedError as exc:
        problems, stats = [str(exc)], None
    if not problems:
        print(f"{home.journal}: healthy: {stats.last_seq} results, chain intact, town acknowledged up to "
              f"{stats.acked_seq}, {stats.unacked} not yet acknowledged")
        return 0
    for p in problems:
        print(f"DAMAGED: {p}")
    if not args.set_aside:
        print("Keep a copy for the town, then rerun with --set-aside (see docs/technician.md, 'Damaged journal').")
        return 1
    dest = Journal.quarantine_damaged(home.journal)
    print(f"set aside as {dest} (with its -wal/-shm); the next start begins a new journal at seq 1 - tell the town")
    return 1
