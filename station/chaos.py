# Chaos run: a real station, broker and town listener under SIGKILLs and outages; proves no shown result is lost.
"""scripts/chaos: press the button as fast as the station serves while the daemon is SIGKILLed at random
moments, the broker restarts (once with a long outage) and the town listener crashes; then stop the
faults, wait for the drain and check that every result the operator was shown is stored by the town,
byte-identical to the station journal, in a gap-free verified chain.

"Acknowledged to the operator" means a press reply carrying results reached the presser. A press whose
daemon died before answering is counted apart: its results may or may not exist, and either is fine.
The rig classes (StationRig, DaemonProcess, TownProcess) are shared with tests/stationkit.py.
"""
from __future__ import annotations

import argparse
import json
import math
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from station import attacks, demo
from station.config import load_config
from station.control import request
from station.errors import BrokerError, ControlError, DaemonRefused, StationError
from station.home import Home, init_home, signing_key_path
from station.journal import Journal, verify_chain
from station.localbroker import LocalBroker
from station.protocol import signing
from station.town.trust import load_or_create_town_key, town_public_jwk

STATION_ID, GRID = "st-0001", "nongan/hetao/xinmin"
# Four cassettes in one photograph plus two singles: a press yields 4, 1 or 1 results.
CHAOS_PHOTOS = ("four-cassettes.jpg", "negative.jpg", "positive.jpg")
PRESS_TIMEOUT_S = 30.0
DRAIN_TIMEOUT_S = 150.0
TARGET_RESULTS, TARGET_KILLS, TARGET_BROKER_RESTARTS = 2000, 20, 5
LONG_OUTAGE_S = (6.0, 9.0)


def say(msg: str) -> None:
    print(f"chaos: {msg}", file=sys.stderr, flush=True)


# ---- the rig: real subprocesses around one station home --------------------------------------------------



def copy_samples(dest: Path, names: tuple[str, ...] = CHAOS_PHOTOS) -> Path:
    """The bundled photographs named become the simulated camera's folder (served in name order, cycling)."""
    dest.mkdir(parents=True, exist_ok=True)
    samples = resources.files("station").joinpath("samples")
    for name in names:
        (dest / name).write_bytes(samples.joinpath(name).read_bytes())
    return dest


@dataclass
class StationRig:
    """One work folder: station home, simulated camera photos, town key and trust dir, town db, logs."""

    work: Path
    broker_url: str = ""
    photos: tuple[str, ...] = CHAOS_PHOTOS
    home: Home = field(init=False)
    station_path: str = field(init=False)

    def __post_init__(self) -> None:
        self.work = Path(self.work).absolute()
        self.logs.mkdir(parents=True, exist_ok=True)
        self.trust.mkdir(parents=True, exist_ok=True)
        copy_samples(self.work / "photos", self.photos)
        town_key = load_or_create_town_key(self.town_key)
        jwk = self.work / "town" / "town.jwk"
        jwk.write_text(json.dumps(town_public_jwk(town_key)))
        self.home = Home(self.work / "station")
        init_home(self.home, station=STATION_ID, grid=GRID, broker=self.broker_url,
                  sim_images=str(self.work / "photos"), town_key=str(jwk))
        cfg = load_config(self.home.root)
        self.station_path = cfg.station.path
        key = signing.load_private_key(signing_key_path(self.home, cfg.station.key_file))
        jwk = signing.public_jwk(key.public_key(), cfg.station.kid, cfg.station.path)
        (self.trust / f"{STATION_ID}.jwk").write_text(json.dumps(jwk))

    @property
    def logs(self) -> Path:
        return self.work / "logs"

    @property
    def trust(self) -> Path:
        return self.work / "town" / "trust"

    @property
    def town_key(self) -> Path:
        return self.work / "town" / "town.key"

    @property
    def town_db(self) -> Path:
        return self.work / "town" / "town.sqlite"

    def daemon(self) -> DaemonProcess:
        return DaemonProcess(self.home, self.logs)

    def town(self, broker_url: str | None = None) -> TownProcess:
        return TownProcess(broker_url or self.broker_url, self.trust, self.town_db, self.town_key, self.logs)

    def town_contiguous(self) -> int:
        return town_contiguous(self.town_db, self.station_path)


class DaemonProcess:
    """`station run` as a child process; each incarnation logs to its own file (logs/station-NN.log)."""

    def __init__(self, home: Home, logdir: Path):
        self.home, self.logdir = home, logdir
        self.proc: subprocess.Popen | None = None
        self.starts = 0

    @property
    def log_file(self) -> Path:
        return self.logdir / f"station-{self.starts:02d}.log"

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self, timeout: float = 30.0) -> DaemonProcess:
        self.starts += 1
        self.proc = demo.spawn(f"station-{self.starts:02d}", ["run", "--home", str(self.home.root)], self.logdir)
        self.wait_ready(timeout)
        return self

    def wait_ready(self, timeout: float) -> None:
        """Until the control socket answers a status request; DaemonRefused if the process exits first."""
        deadline = time.monotonic() + timeout
        while True:
            code = self.proc.poll() if self.proc else -1
            if code is not None:
                lines = self.log_file.read_text(errors="replace").strip().splitlines() if self.log_file.exists() else []
                raise DaemonRefused(f"station run exited with status {code}: {lines[-1] if lines else '(no output)'}")
            try:
                if request(self.home.control_socket, {"cmd": "status"}, timeout=2).get("ok"):
                    return
            except (ControlError, OSError, ValueError):
                pass
            if time.monotonic() > deadline:
                self.kill()
                raise DaemonRefused(f"station run did not answer on {self.home.control_socket} within {timeout:.0f} s")
            time.sleep(0.03)

    def press(self, timeout: float = PRESS_TIMEOUT_S, **extra: object) -> dict:
        return request(self.home.control_socket, {"cmd": "press", "wait": True, **extra}, timeout=timeout)

    def status(self, timeout: float = 10.0) -> dict:
        return request(self.home.control_socket, {"cmd": "status"}, timeout=timeout)

    def kill(self) -> None:
        """SIGKILL, as a power cut or the OOM killer would: no handler, no cleanup."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        if self.proc is not None:
            self.proc.wait(10)

    def terminate(self, timeout: float = 15.0) -> int | None:
        """SIGTERM (clean stop); SIGKILL if it does not exit in time. Returns the exit status."""
        return demo.stop_process(self.proc, timeout)


class TownProcess:
    """`station town listen -v` as a child process (verbose: its log lists every stored seq in arrival order)."""

    def __init__(self, broker_url: str, trust: Path, db: Path, key: Path, logdir: Path):
        self.broker_url, self.trust, self.db, self.key, self.logdir = broker_url, trust, db, key, logdir
        self.proc: subprocess.Popen | None = None
        self.starts = 0

    @property
    def log_file(self) -> Path:
        return self.logdir / f"town-{self.starts:02d}.log"

    def start(self, timeout: float = 20.0, wait: bool = True) -> TownProcess:
        """wait: until it has connected to the broker (a restart during a broker outage must not wait)."""
        self.starts += 1
        self.proc = demo.spawn(f"town-{self.starts:02d}",
                               ["town", "listen", "--broker", self.broker_url, "--trust", str(self.trust),
                                "--db", str(self.db), "--key", str(self.key), "-v"], self.logdir)
        if not wait:
            return self
        demo.wait_for(lambda: self.proc.poll() is not None or "connected to" in self._log(), timeout,
                      "the town listener to connect", interval=0.05)
        if self.proc.poll() is not None:
            raise StationError(f"town listener exited with status {self.proc.returncode}: {self._log()[-300:]}")
        return self

    def _log(self) -> str:
        try:
            return self.log_file.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def stored_order(self) -> list[int]:
        """Seqs in the order this incarnation stored them (first storage only; duplicates left out)."""
        out = []
        for line in self._log().splitlines():
            if " stored " in line and "#" in line:
                tail = line.rsplit("#", 1)[1].split()[0]
                if tail.isdigit():
                    out.append(int(tail))
        return out

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        if self.proc is not None:
            self.proc.wait(10)

    def terminate(self, timeout: float = 10.0) -> None:
        demo.stop_process(self.proc, timeout)


def town_contiguous(db: Path, station_path: str) -> int:
    """The town's highest contiguous seq, read without writing (0 while the database is not there yet)."""
    if not db.exists():
        return 0
    try:
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
        try:
            row = con.execute("SELECT contiguous FROM stations WHERE station=?", (station_path,)).fetchone()
        finally:
            con.close()
    except sqlite3.Error:
        return 0
    return row[0] if row else 0


def town_show(db: Path, trust: Path, station_path: str) -> tuple[dict, list[dict]]:
    """`station town show --json --trust` (every signature re-verified now): this station's entry, refusals."""
    out = json.loads(demo.station_cmd("town", "show", "--db", str(db), "--json", "--trust", str(trust),
                                      timeout=120).stdout)
    st = next((s for s in out["stations"] if s["station"] == station_path),
              {"results": [], "contiguous": 0, "gaps": [], "counters": {}})
    return st, out["refusal_counts"]


@dataclass
class JournalReport:
    """What a full check of a journal found; `problems` empty means it opens, is intact and chains from seq 1."""

    last_seq: int = 0
    acked_seq: int = 0
    problems: list[str] = field(default_factory=list)
    rows: dict[int, tuple[str | None, str, str]] = field(default_factory=dict)   # seq -> sample, verdict, hash


def check_journal(path: Path, *, rows: bool = False) -> JournalReport:
    """Open as the daemon does (integrity check, chain tail), then verify the whole chain from seq 1."""
    rep = JournalReport()
    try:
        with Journal(path) as j:
            st = j.stats()
            rep.last_seq, rep.acked_seq = st.last_seq, st.acked_seq
            rep.problems += verify_chain(j)
            if rows:
                rep.rows = {e.seq: (e.sample_id, e.verdict, e.msg_hash) for e in j.iter_entries()}
    except StationError as exc:
        rep.problems.append(str(exc))
    return rep


def check_journal_copy(path: Path, scratch: Path) -> JournalReport:
    """Check a copy of the journal files as the killed daemon left them, so the daemon's own recovery at its
    next start is still what gets exercised (opening the original here would replay its WAL for it)."""
    if scratch.exists():
        shutil.rmtree(scratch)
    scratch.mkdir(parents=True)
    for suffix in ("", "-wal"):
        src = Path(f"{path}{suffix}")
        if src.exists():
            shutil.copyfile(src, scratch / f"{path.name}{suffix}")
    return check_journal(scratch / path.name, rows=True)


# ---- the run ------------------------------------------------------------------------------------------------

@dataclass
class Tally:
    """Everything the threads count; one lock guards it."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    shown: dict[int, dict] = field(default_factory=dict)   # seq -> the result as the operator saw it
    shown_twice: list[int] = field(default_factory=list)     # a seq shown for two different results
    presses: int = 0
    outcomes: Counter = field(default_factory=Counter)
    kills: int = 0
    kill_modes: Counter = field(default_factory=Counter)
    daemon_starts: int = 0
    broker_restarts: int = 0
    broker_long_outage_s: float = 0.0
    town_kills: int = 0
    corrupt: list[str] = field(default_factory=list)
    missing_at_station: list[str] = field(default_factory=list)
    missing_ids: set[str] = field(default_factory=set)
    fatal: str | None = None
    sends: int = 0
    replies: int = 0

    def __post_init__(self) -> None:
        self.signal = threading.Condition(self.lock)   # waiting on press events shares the one lock


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
        say(f"faults stopped after {fault_end - self.t0:.0f} s; waiting for the drain")
        drain_s = self._drain(fault_end)
        say("drained" if drain_s is not None else f"NOT drained within {DRAIN_TIMEOUT_S:.0f} s")
        say("sending forged, tampered, replayed, wrong-path and equivocating results to the town")
        self.attacks = self._attack()
        code = self.daemon.terminate()
        self.town.terminate()
        return self._report(drain_s, code)

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
            lambda: query("SELECT COUNT(*) FROM refusals")[0][0], genuine, key, cfg.station.kid, GRID, STATION_ID)

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

    def _report(self, drain_s: float | None, daemon_exit: int | None) -> dict:
        final = check_journal(self.rig.home.journal, rows=True)
        town, refusals = town_show(self.rig.town_db, self.rig.trust, self.rig.station_path)
        at_town = {r["seq"]: r for r in town["results"]}
        lost = []
        for seq, r in sorted(self.t.shown.items()):
            got = at_town.get(seq)
            if got is None or (got["sample"], got["verdict"]) != (r["sample"], r["verdict"]):
                lost.append(f"{r['id']} shown as {r['verdict']} {r['sample']}; town has "
                            f"{None if got is None else (got['sample'], got['verdict'])}")
        lost += [f"seq {s} shown for two different results" for s in self.t.shown_twice]
        differing = [s for s, r in at_town.items() if final.rows.get(s, (None, None, None))[2] != r["msg_hash"]]
        bad_sigs = sum(1 for r in town["results"] if not r["signature_ok"])
        seqs = sorted(at_town)
        contiguous_ok = (seqs == list(range(1, final.last_seq + 1)) and town["contiguous"] == final.last_seq
                         and not town["gaps"])
        corrupt = list(self.t.corrupt) + [f"final check: {p}" for p in final.problems]
        attacked = self.attacks or {}
        n_refusals = sum(r["count"] for r in refusals) - sum(a["refused"] for a in attacked.values())
        t = self.t
        figures = [
            ("results produced (journal last seq)", f">= {TARGET_RESULTS}", final.last_seq,
             final.last_seq >= TARGET_RESULTS),
            ("results shown to the operator", "reported", len(t.shown), True),
            ("daemon SIGKILLs", f">= {TARGET_KILLS}", t.kills, t.kills >= TARGET_KILLS),
            ("broker restarts", f">= {TARGET_BROKER_RESTARTS}", t.broker_restarts,
             t.broker_restarts >= TARGET_BROKER_RESTARTS),
            ("longest broker outage (s)", f">= {LONG_OUTAGE_S[0]:.0f}", round(t.broker_long_outage_s, 1),
             t.broker_long_outage_s >= LONG_OUTAGE_S[0]),
            ("town listener SIGKILLs", ">= 1", t.town_kills, t.town_kills >= 1),
            ("results lost (shown, not stored by the town)", "0", len(lost), not lost),
            ("shown results missing from the journal after a kill", "0", len(t.missing_at_station),
             not t.missing_at_station),
            ("corrupted journals", "0", len(corrupt), not corrupt),
            ("town seqs contiguous 1..N, no gaps", f"1..{final.last_seq}",
             f"{len(seqs)} stored, contiguous {town['contiguous']}, gaps {len(town['gaps'])}", contiguous_ok),
            ("town copies differing from the journal", "0", len(differing), not differing),
            ("bad signatures at the town (re-verified)", "0", bad_sigs, bad_sigs == 0),
            ("duplicates delivered (town counter)", "reported", town["counters"].get("duplicates", 0), True),
            ("refusals by the town (genuine traffic)", "0", n_refusals, n_refusals == 0),
            *[(f"{kind} results accepted by the town", "0", f"{a['accepted']} of {a['tried']}",
               a["accepted"] == 0 and a["tried"] > 0) for kind, a in attacked.items()],
            ("station acked seq = last seq", str(final.last_seq), final.acked_seq, final.acked_seq == final.last_seq),
            ("drain time after faults stop (s)", f"< {DRAIN_TIMEOUT_S:.0f}",
             "timeout" if drain_s is None else round(drain_s, 1), drain_s is not None),
            ("presses refused while daemon down", "reported", t.outcomes["refused: daemon down"], True),
            ("presses unanswered (daemon killed mid-press)", "reported",
             t.outcomes["unanswered: daemon killed mid-press"], True),
            ("presses timed out", "0", t.outcomes["unanswered: timed out"],
             t.outcomes["unanswered: timed out"] == 0),
            ("clean stop of the last daemon (exit status)", "0", daemon_exit, daemon_exit == 0),
        ]
        if t.fatal:
            figures.append(("run completed", "yes", t.fatal, False))
        return {
            "passed": all(f[3] for f in figures),
            "figures": [{"figure": f[0], "target": f[1], "measured": f[2], "pass": bool(f[3])} for f in figures],
            "seed": self.seed, "duration_s": self.duration, "work": str(self.work),
            "presses": t.presses, "press_outcomes": dict(t.outcomes), "kill_modes": dict(t.kill_modes),
            "daemon_starts": t.daemon_starts, "refusals": refusals,
            "details": {"lost": lost[:20], "corrupt": corrupt[:20], "missing_at_station": t.missing_at_station[:20],
                        "differing_seqs": differing[:20], "gaps": town["gaps"][:20]},
        }

    def cleanup(self) -> None:
        for p in (self.daemon, self.town):
            if p is not None:
                p.kill()
        if self.broker is not None:
            self.broker.stop()


def print_table(report: dict) -> None:
    rows = [(f["figure"], f["target"], str(f["measured"]), "yes" if f["pass"] else "NO") for f in report["figures"]]
    head = ("figure", "target", "measured", "pass")
    w = [max(len(r[i]) for r in [head, *rows]) for i in range(4)]
    line = "| " + " | ".join(f"{{:<{x}}}" for x in w) + " |"
    print(line.format(*head))
    print("|" + "|".join("-" * (x + 2) for x in w) + "|")
    for r in rows:
        print(line.format(*r))
    print(f"\npresses {report['presses']}: {report['press_outcomes']}")
    print(f"kill moments: {report['kill_modes']}; daemon starts {report['daemon_starts']}")
    for name, items in report["details"].items():
        for item in items:
            print(f"{name}: {item}")
    verdict = "PASS" if report["passed"] else "FAIL"
    print(f"\n{verdict} (seed {report['seed']}, faults for {report['duration_s']:.0f} s)")


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
