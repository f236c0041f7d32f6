# Chaos run: a real station, broker and town listener under SIGKILLs and outages; proves no shown result is lost.
"""scripts/chaos: press the button as fast as the station serves while the daemon is SIGKILLed at random
moments, the broker restarts (once with a long outage) and the town listener crashes; then stop the
faults, wait for the drain and check that every result the operator was shown is stored by the town,
byte-identical to the station journal, in a gap-free verified chain.

"Acknowledged to the operator" means a press reply carrying results reached the presser. A press whose
daemon died before answering is counted apart: its results may or may not exist, and either is fine.
The rig (StationRig, DaemonProcess, TownProcess) is station/lab/rig.py, shared with the tests; the figures
and the table are station/lab/chaos_report.py.
"""
from __future__ import annotations

import argparse
import json
import math
import random
import shutil
import sqlite3
import sys
import tempfile
import threading
import time
from pathlib import Path

from station.config import load_config
from station.errors import BrokerError, ControlError, DaemonRefused, StationError
from station.home import signing_key_path
from station.lab import attacks, chaos_disk
from station.lab.broker import LocalBroker
from station.lab.chaos_poison import Poisoner
from station.lab.chaos_report import (
    DRAIN_TIMEOUT_S,
    LONG_OUTAGE_S,
    TARGET_BROKER_RESTARTS,
    TARGET_KILLS,
    Tally,
    print_table,
    report,
)
from station.lab.rig import (
    GRID,
    PRESS_TIMEOUT_S,
    STATION_ID,
    DaemonProcess,
    StationRig,
    TownProcess,
    check_journal_copy,
)
from station.protocol import signing


def say(msg: str) -> None:
    print(f"chaos: {msg}", file=sys.stderr, flush=True)


# ---- the run ------------------------------------------------------------------------------------------------

class Chaos:
    def __init__(self, work: Path, duration: float, seed: int):
        self.work, self.duration, self.rng = work, duration, random.Random(seed)
        self.seed = seed
        self.t = Tally()
        self.stop_faults = threading.Event()
        self.stop_presses = threading.Event()
        self.broker: LocalBroker | None = None
        self.rig: StationRig | None = None
        self.daemon: DaemonProcess | None = None
        self.town: TownProcess | None = None
        self._daemon_lock = threading.Lock()
        self.t0 = 0.0
        self.attacks: dict[str, dict[str, int]] = {}
        self.disk_fs: chaos_disk.Tmpfs | None = None
        self.poison: dict[str, int] = {}

    # -- threads ---------------------------------------------------------------------------------------------
    def presser(self) -> None:
        """Press as fast as the station serves; record what is shown."""
        while not self.stop_presses.is_set():
            with self.t.lock:
                self.t.sends += 1
                self.t.signal.notify_all()
            outcome = self._press_once()
            with self.t.lock:
                self.t.replies += 1
                self.t.presses += 1
                self.t.outcomes[outcome] += 1
                self.t.signal.notify_all()
            if outcome == "refused: daemon down":
                time.sleep(0.05)

    def _press_once(self) -> str:
        try:
            reply = self.daemon.press(timeout=PRESS_TIMEOUT_S)
        except ControlError as exc:
            text = str(exc)
            if "no station daemon is listening" in text:
                return "refused: daemon down"
            if "closed the connection" in text:
                return "unanswered: daemon killed mid-press"
            if "did not answer" in text:
                return "unanswered: timed out"
            return f"error: {text[:60]}"
        except (OSError, ValueError):
            return "unanswered: daemon killed mid-press"   # reset or a reply cut short by the SIGKILL
        results = reply.get("results") or []
        with self.t.lock:
            for r in results:
                seen = self.t.shown.get(r["seq"])
                if seen is not None and (seen["sample"], seen["slot"]) != (r.get("sample"), r.get("slot")):
                    self.t.shown_twice.append(r["seq"])
                self.t.shown[r["seq"]] = {k: r.get(k) for k in ("seq", "id", "slot", "verdict", "sample")}
        if results:
            return "shown"
        err = str(reply.get("error", ""))
        return "not recorded: " + (err.split(":", 1)[0][:40] or "?")

    def _wait_press_event(self, kind: str, timeout: float) -> bool:
        with self.t.lock:
            start = self.t.sends if kind == "send" else self.t.replies
            return self.t.signal.wait_for(
                lambda: (self.t.sends if kind == "send" else self.t.replies) > start or self.stop_faults.is_set(),
                timeout)

    def killer(self, n: int) -> None:
        """n SIGKILLs, one at a random moment inside each of n equal slots of the fault phase; each aimed at
        the middle of a press (capture, scoring, commit) or just after a reply (publishing) or anywhere."""
        slot = self.duration / n
        for i in range(n):
            if not self._sleep_until(self.t0 + i * slot + self.rng.uniform(0.15, 0.75) * slot):
                return
            mode = self.rng.choice(("mid-press", "mid-press", "after-reply", "anywhere"))
            if mode == "mid-press":
                self._wait_press_event("send", 3.0)
                time.sleep(self.rng.uniform(0.0, 0.15))
            elif mode == "after-reply":
                self._wait_press_event("reply", 3.0)
                time.sleep(self.rng.uniform(0.0, 0.03))
            with self._daemon_lock:
                self.daemon.kill()
            with self.t.lock:
                self.t.kills += 1
                self.t.kill_modes[mode] += 1
            self._check_after_kill()
            time.sleep(self.rng.uniform(0.1, 1.2))   # the station is down: presses are refused
            if not self._restart_daemon():
                return

    def _check_after_kill(self) -> None:
        rep = check_journal_copy(self.rig.home.journal, self.work / "scratch")
        with self.t.lock:
            shown = list(self.t.shown.values())
            if rep.problems:
                self.t.corrupt.append(f"after kill {self.t.kills}: {'; '.join(rep.problems[:3])}")
            for r in shown:
                row = rep.rows.get(r["seq"])
                if (row is None or row[:2] != (r["sample"], r["verdict"])) and r["id"] not in self.t.missing_ids:
                    self.t.missing_ids.add(r["id"])   # each missing result counted once, not after every kill
                    self.t.missing_at_station.append(f"after kill {self.t.kills}: {r['id']} shown "
                                                     f"{r['verdict']} {r['sample']}, journal has {row}")

    def _restart_daemon(self) -> bool:
        try:
            with self._daemon_lock:
                self.daemon.start()
            with self.t.lock:
                self.t.daemon_starts += 1
            return True
        except DaemonRefused as exc:
            with self.t.lock:
                self.t.corrupt.append(f"daemon refused to start: {exc}")
                self.t.fatal = f"daemon refused to start: {exc}"
            self.stop_faults.set()
            return False

    def broker_faults(self, n_short: int) -> None:
        """n_short quick restarts (graceful or SIGKILL) at random moments, then one long outage that ends as
        the fault phase ends, so the drain after the faults has a real backlog to deliver."""
        n = n_short + 1
        slot = self.duration / n
        for i in range(n):
            long = i == n - 1
            down = self.rng.uniform(*LONG_OUTAGE_S) if long else self.rng.uniform(0.0, 1.5)
            when = (self.t0 + self.duration - down if long
                    else self.t0 + i * slot + self.rng.uniform(0.1 * slot, max(0.2, 0.9 * slot - down)))
            if not self._sleep_until(when):
                return
            if long or self.rng.random() < 0.5:
                self.broker.kill()
            else:
                self.broker.stop()
            time.sleep(down)
            if not self._start_broker():
                return
            with self.t.lock:
                self.t.broker_restarts += 1
                if long:
                    self.t.broker_long_outage_s = max(self.t.broker_long_outage_s, down)

    def _start_broker(self) -> bool:
        for attempt in range(5):
            try:
                self.broker.start()
                return True
            except BrokerError as exc:
                say(f"broker restart attempt {attempt + 1} failed: {exc}")
                time.sleep(1.0)
        with self.t.lock:
            self.t.fatal = "the broker could not be restarted on its port"
        self.stop_faults.set()
        return False

    def town_faults(self, n: int) -> None:
        slot = self.duration / n
        for i in range(n):
            if not self._sleep_until(self.t0 + i * slot + self.rng.uniform(0.2, 0.8) * slot):
                return
            self.town.kill()
            time.sleep(self.rng.uniform(0.5, 3.0))
            self.town.start(wait=False)
            with self.t.lock:
                self.t.town_kills += 1

    def _sleep_until(self, when: float) -> bool:
        """False if the fault phase ended first."""
        return not self.stop_faults.wait(max(0.0, when - time.monotonic()))

    def progress(self) -> None:
        while not self.stop_presses.wait(10.0):
            with self.t.lock:
                say(f"t={time.monotonic() - self.t0:5.0f}s  shown {len(self.t.shown):5d}  presses {self.t.presses:5d}"
                    f"  kills {self.t.kills:2d}  broker restarts {self.t.broker_restarts}  town kills "
                    f"{self.t.town_kills}  refused while down {self.t.outcomes['refused: daemon down']}")

    # -- the whole run ---------------------------------------------------------------------------------------
    def run(self) -> dict:
        self.broker = LocalBroker(self.work / "broker").start()
        self.rig = StationRig(self.work, broker_url=self.broker.url)
        self.disk_fs = chaos_disk.prepare(self)
        say(f"work folder {self.work}, broker {self.broker.url}, seed {self.seed}, faults for {self.duration:.0f} s")
        self.town = self.rig.town().start()
        self.daemon = self.rig.daemon().start()
        self.t.daemon_starts = 1
        n_kills = max(TARGET_KILLS + 4, math.ceil(self.duration / 7))
        threads = [threading.Thread(target=self.presser, name="presser"),
                   threading.Thread(target=self.progress, name="progress", daemon=True)]
        faults = [threading.Thread(target=self.killer, args=(n_kills,), name="killer"),
                  threading.Thread(target=self.broker_faults, args=(TARGET_BROKER_RESTARTS + 1,), name="broker"),
                  threading.Thread(target=self.town_faults, args=(3,), name="town")]
        poisoner = self._poisoner()   # hostile messages in the same batches as genuine results (issue 8)
        faults.append(threading.Thread(target=poisoner.during, args=(self.stop_faults,), name="poison"))
        self.t0 = time.monotonic()
        for th in threads + faults:
            th.start()
        self.stop_faults.wait(self.duration)
        self.stop_faults.set()
        for th in faults:
            th.join()
        self.stop_presses.set()
        threads[0].join()
        fault_end = time.monotonic()
        if self.t.fatal:
            say(f"stopping early: {self.t.fatal}")
        say(f"faults stopped after {fault_end - self.t0:.0f} s; filling the station's disk")
        disk = chaos_disk.disk_phase(self)
        say(f"full-disk phase: {disk}; waiting for the drain")
        drain_s = self._drain(fault_end)
        say("drained" if drain_s is not None else f"NOT drained within {DRAIN_TIMEOUT_S:.0f} s")
        say("sending forged, tampered, replayed, wrong-path and equivocating results to the town")
        self.attacks = self._attack()
        say("sending town poison (deep JSON, huge numbers, re-wrapped copies, bad statuses, phantom paths)")
        self.poison = poisoner.final()
        code = self.daemon.terminate()
        self.town.terminate()
        return chaos_disk.judge(report(self, drain_s, code), disk)

    def _poisoner(self) -> Poisoner:
        def query(sql: str, *args: object) -> list[tuple]:
            with sqlite3.connect(f"file:{self.rig.town_db}?mode=ro", uri=True, timeout=10) as con:
                return con.execute(sql, args).fetchall()

        cfg = load_config(self.rig.home.root)
        key = signing.load_private_key(signing_key_path(self.rig.home, cfg.station.key_file))
        return Poisoner(self.broker.url, query, self.rig.station_path, key, cfg.station.kid, GRID, STATION_ID)

    def _attack(self) -> dict[str, dict[str, int]]:
        db = self.rig.town_db

        def query(sql: str, *args: object) -> list[tuple]:
            with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10) as con:
                return con.execute(sql, args).fetchall()

        path = self.rig.station_path
        genuine = [bytes(m) for (m,) in query("SELECT message FROM results WHERE station=? ORDER BY seq DESC "
                                              "LIMIT 5", path)][::-1]
        cfg = load_config(self.rig.home.root)
        key = signing.load_private_key(signing_key_path(self.rig.home, cfg.station.key_file))
        return attacks.run_attacks(
            self.broker.url, lambda: dict(query("SELECT seq, msg_hash FROM results WHERE station=?", path)),
            lambda: query("SELECT COALESCE(SUM(n), 0) FROM refusal_counts")[0][0], genuine, key, cfg.station.kid,
            GRID, STATION_ID)

    def _drain(self, since: float) -> float | None:
        """Seconds until the town stores everything shown and the station holds the town's ack of its last seq."""
        want = max(self.t.shown, default=0)
        deadline = since + DRAIN_TIMEOUT_S
        while time.monotonic() < deadline and not self.t.fatal:
            try:
                st = self.daemon.status(timeout=5)
            except ControlError:
                st = {}
            last, acked = st.get("last_seq", -1), st.get("acked_seq", -2)
            if last >= want and acked == last and self.rig.town_contiguous() >= last:
                return time.monotonic() - since
            time.sleep(0.25)
        return None

    def cleanup(self) -> None:
        for p in (self.daemon, self.town):
            if p is not None:
                p.kill()
        if self.broker is not None:
            self.broker.stop()
        if self.disk_fs is not None:
            self.disk_fs.unmount()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="chaos", description=__doc__.split("\n\n")[0])
    p.add_argument("--duration", type=float, default=210.0, metavar="S",
                   help="seconds of faults (default 210: the whole run then takes about 4 minutes on 2 cores)")
    p.add_argument("--seed", type=int, help="random seed (default: random, printed)")
    p.add_argument("--keep", metavar="DIR", help="work in DIR and keep it (default: a temporary folder, kept on "
                   "failure)")
    p.add_argument("--json", action="store_true", help="print the report as JSON instead of a table")
    args = p.parse_args(argv)
    if args.duration < 10:
        p.error("--duration must be at least 10 s")
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(2**31)
    work = Path(args.keep).absolute() if args.keep else Path(tempfile.mkdtemp(prefix="nongan-chaos-"))
    if args.keep and work.exists() and any(work.iterdir()):
        p.error(f"--keep {work}: folder is not empty")
    started = time.monotonic()
    chaos = Chaos(work, args.duration, seed)
    try:
        report = chaos.run()
    except StationError as exc:
        say(f"error: {exc} (logs in {work / 'logs'})")
        return 2
    finally:
        chaos.cleanup()
    report["run_s"] = round(time.monotonic() - started, 1)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print_table(report)
    say(f"done in {report['run_s']:.0f} s")
    if report["passed"] and not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    elif not report["passed"]:
        say(f"kept {work} for a look (logs/, station/, town/)")
    return 0 if report["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
