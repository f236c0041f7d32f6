# `station doctor`: check the journal in full and, on the technician's word, set a damaged one aside;
# with --hardware, check the Pi underneath (station/host/checks.py), one OK / WARN / FAIL line each with its fix.
from __future__ import annotations

import argparse
import getpass
import os

from station.cli.common import add_home, home_of
from station.errors import ConfigError, JournalDamagedError, StationError
from station.journal import Journal, verify_chain


def add_parser(sub) -> None:
    p = sub.add_parser("doctor", help="check the journal: SQLite integrity and the full hash chain")
    add_home(p)
    p.add_argument("--set-aside", action="store_true",
                   help="if the journal is damaged, move it (and its -wal/-shm) aside so the station can start a "
                        "new one; never deletes anything. Stop the daemon first.")
    p.add_argument("--hardware", action="store_true", help="check devices, permissions and groups, serial ports, "
                   "camera, GPIO chip, clock sync, disk, broker reachability and certificate expiry")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    home = home_of(args)
    if args.hardware:
        return run_hardware(home)
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


def run_hardware(home) -> int:
    from station.config import load_config
    from station.host import checks as hc

    found: list[hc.Check] = []
    try:
        cfg = load_config(home.root)
        found.append(hc.Check(hc.OK, "config", f"{home.config}: {cfg.station.path}"))
    except ConfigError as exc:
        cfg = None
        found.append(hc.Check(hc.FAIL, "config", str(exc), "station init, or fix the line named"))
    technician = os.environ.get("SUDO_USER") or getpass.getuser()
    plan = [("users", lambda: hc.user_and_groups(technician)), ("gpio", hc.gpio_chip), ("serial", hc.serial_ports),
            ("clock", hc.clock_sync), ("service", hc.service)]
    if home.root.is_dir():
        plan.append(("home", lambda: hc.home_owner(home.root)))
    if cfg:
        plan += [("camera", lambda: hc.camera(cfg.camera.driver, cfg.camera.device, cfg.resolve(cfg.camera.folder))),
                 ("scanner", lambda: hc.scanner(cfg.scanner.driver, cfg.scanner.target)),
                 ("disk", lambda: hc.disk(home.root, cfg.storage.warn_pct, cfg.storage.refuse_pct)),
                 ("broker", lambda: hc.broker(cfg.broker.url)),
                 ("signing key", lambda: hc.signing_key(cfg.resolve(cfg.station.key_file)))]
        for name, path in (("CA cert", cfg.broker.ca_file), ("client cert", cfg.broker.cert_file)):
            if path:
                plan.append((name, lambda name=name, path=path: hc.certificate(name, cfg.resolve(path))))
    if home.journal.exists():
        plan.append(("journal", lambda: _journal_check(home, hc)))
    for name, check in plan:
        found += hc.guarded(name, check)
    for c in found:
        print(c.line())
    counts = {level: sum(c.level == level for c in found) for level in (hc.OK, hc.WARN, hc.FAIL)}
    print(f"{counts[hc.OK]} OK, {counts[hc.WARN]} WARN, {counts[hc.FAIL]} FAIL")
    return 1 if counts[hc.FAIL] else 0


def _journal_check(home, hc) -> list:
    try:
        with Journal(home.journal) as journal:
            problems, stats = verify_chain(journal), journal.stats()
    except JournalDamagedError as exc:
        problems, stats = [str(exc)], None
    if problems:
        return [hc.Check(hc.FAIL, "journal", problems[0], "station doctor (without --hardware); docs/technician.md")]
    return [hc.Check(hc.OK, "journal", f"{stats.last_seq} results, chain intact, {stats.unacked} unacknowledged")]
