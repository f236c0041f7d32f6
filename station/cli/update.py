# `station update FILE`: install a signed release beside the running one and keep it only if it proves healthy.
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

from station.cli.common import add_home, home_of
from station.errors import ControlError, UpdateRefused
from station.home import Home
from station.host.update_order import POSITIVE_MAX_AGE_S, stale_positives


def add_parser(sub) -> None:
    p = sub.add_parser("update", help="install a signed release archive, switch to it, roll back unless healthy")
    add_home(p)
    p.add_argument("archive", nargs="?", type=Path, help="release archive (.tar.gz) from scripts/build-release")
    p.add_argument("--signature", type=Path, help="detached signature (default: ARCHIVE.sig)")
    p.add_argument("--release-key", type=Path, default=None, help="release public key (JWK); default "
                   "/etc/nongan/release.jwk")
    p.add_argument("--root", type=Path, default=None, help="release root (default /opt/nongan-station)")
    p.add_argument("--probation", type=float, default=120.0, metavar="S",
                   help="seconds the new release must keep running and pinging its watchdog (default 120)")
    p.add_argument("--rollback", action="store_true", help="switch back to the previous release now")
    p.add_argument("--check", action="store_true", help="only say whether an update may run now (exit 0 if so)")
    p.add_argument("--request", type=Path, metavar="FILE", help="carry out a town-ordered update the daemon "
                   "fetched (nongan-station-update.service runs this as root)")
    p.add_argument("--boot-check", action="store_true", help="before the daemon starts (ExecStartPre): roll back "
                   "or re-watch a release left on probation by a power cut")
    p.add_argument("--resume-probation", action="store_true", help="watch the release on probation again "
                   "(started by --boot-check), then confirm it or roll it back")
    p.set_defaults(func=run)


def busy_reason(home: Home, now_monotonic: float | None = None) -> str | None:
    """Why the station may not be interrupted now, or None. Asks the daemon first, then reads the journal."""
    from station.control import request
    from station.journal import Journal

    try:
        reply = request(home.control_socket, {"cmd": "status"}, timeout=15)
    except ControlError:
        reply = None  # no daemon: nothing is being read or incubated
    if reply is not None:
        if not reply.get("ok"):
            return f"the station daemon did not answer its status ({reply.get('error')}); try again"
        if reply.get("state") != "idle" or reply.get("incubating"):
            return (f"the station is {reply.get('state')}: a sample is being read or incubating; update when "
                    "it is idle")
    if not home.journal.exists():
        return None
    with Journal(home.journal, check=False) as journal:
        stale = stale_positives(journal.unacked_positives(limit=1000),
                                time.monotonic() if now_monotonic is None else now_monotonic)
    if stale:
        return (f"{len(stale)} positive result(s) older than {POSITIVE_MAX_AGE_S:.0f} s not yet acknowledged by the "
                f"town (oldest seq {stale[0].seq}): a restart now would delay them; wait for the town's ack")
    return None


def _check_as_owner(home: Home) -> str | None:
    """root must not create the journal's -wal/-shm files (the daemon could not open them): check as their owner."""
    owner = home.journal.stat().st_uid if home.journal.exists() else os.geteuid()
    if os.geteuid() != 0 or owner == 0:
        return busy_reason(home)
    import pwd

    done = subprocess.run(["runuser", "-u", pwd.getpwuid(owner).pw_name, "--", sys.executable, "-m", "station",
                           "update", "--check", "--home", str(home.root)], capture_output=True, text=True,
                          timeout=60)
    return None if done.returncode == 0 else (done.stdout.strip() or done.stderr.strip())


def run(args: argparse.Namespace) -> int:
    from station.host import probation, update
    from station.host import releases as rel
    from station.host.service import SystemdService

    home = home_of(args)
    releases = rel.Releases(args.root or rel.DEFAULT_ROOT)
    if args.check:
        reason = busy_reason(home)
        print(reason or "the station may be updated now")
        return 1 if reason else 0
    if args.boot_check:
        print(probation.boot_check(releases, lambda: _spawn_watcher(releases)))
        return 0
    if args.resume_probation:
        service = SystemdService()
        print(probation.resume(releases, lambda s: update.prove(service, 90.0, s),
                               lambda v: update.confirm(releases, v)))
        return 0
    if args.request:
        res = update.run_request(args.request, args.release_key or rel.DEFAULT_RELEASE_KEY, releases,
                                 rel.PipInstaller(), SystemdService(), lambda: _check_as_owner(home),
                                 probation_s=args.probation)
        print(f"update {res.get('version')}: {res.get('outcome')}: {res.get('detail')}")
        return 0 if res.get("outcome") == "updated" else 1
    if args.rollback:
        print(f"rolled back to {update.rollback(releases, SystemdService())}")
        return 0
    if args.archive is None:
        print(f"running release: {releases.current()}; previous: {releases.previous()}; installed: "
              f"{', '.join(releases.installed()) or 'none'}")
        return 0
    signature = args.signature or args.archive.with_name(args.archive.name + ".sig")
    key = args.release_key or rel.DEFAULT_RELEASE_KEY
    rel.verify_archive(args.archive, signature, key)  # refuse a bad archive before asking the station anything
    reason = _check_as_owner(home)
    if reason:
        raise UpdateRefused(f"update refused for now: {reason}")
    outcome = update.apply(args.archive, signature, key, releases, rel.PipInstaller(), SystemdService(),
                           probation_s=args.probation)
    if outcome.ok:
        print(f"updated {outcome.previous} -> {outcome.version}: READY and watchdog kept for {args.probation:.0f} s")
        return 0
    print(f"release {outcome.version} failed ({outcome.problem}); rolled back to {outcome.previous}, which is running")
    return 1


def _spawn_watcher(releases) -> None:
    """A transient unit of its own: the watcher must outlive this ExecStartPre and restart the station unit."""
    exe = releases.root / "current" / ".venv" / "bin" / "station"
    done = subprocess.run(["systemd-run", "--no-block", "--unit", "nongan-station-probation", "--collect",
                           str(exe), "update", "--resume-probation", "--root", str(releases.root)],
                          capture_output=True, text=True, timeout=30)
    if done.returncode != 0:
        raise OSError(f"systemd-run: {done.stderr.strip() or done.returncode}")
