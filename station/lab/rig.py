# The lab's rig: a station daemon, town listener and their files as real processes; journal checks.
"""Shared by scripts/chaos, scripts/demo and the tests that drive real processes (tests/test_daemon_faults.py,
tests/test_station_e2e.py): StationRig lays out one work folder (station home, simulated camera photos,
town key and trust dir), DaemonProcess and TownProcess run `station run` and `station town listen` as
children, and check_journal* verify a journal the way the daemon opens it.
"""
from __future__ import annotations

import json
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import TypeVar

from station.config import load_config
from station.control import request
from station.errors import ControlError, DaemonRefused, StationError
from station.home import Home, init_home, signing_key_path
from station.journal import Journal, verify_chain
from station.protocol import signing
from station.town.trust import load_or_create_town_key, town_public_jwk

STATION_ID, GRID = "st-0001", "nongan/hetao/xinmin"
# Four cassettes in one photograph plus two singles: a press yields 4, 1 or 1 results.
CHAOS_PHOTOS = ("four-cassettes.jpg", "negative.jpg", "positive.jpg")
PRESS_TIMEOUT_S = 30.0
T = TypeVar("T")


# ---- child processes of `python -m station` ---------------------------------------------------------------

def station_cmd(*args: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess:
    """`python -m station ARGS` to completion, output captured; StationError with its message if it fails."""
    done = subprocess.run([sys.executable, "-m", "station", *args], capture_output=True, text=True, timeout=timeout)
    if check and done.returncode != 0:
        raise StationError(f"`station {' '.join(args)}` failed: {done.stderr.strip() or done.stdout.strip()}")
    return done


def spawn(name: str, args: list[str], logdir: Path) -> subprocess.Popen:
    """`python -m station ARGS` in the background, stdout and stderr to logdir/NAME.log."""
    log = open(logdir / f"{name}.log", "wb")  # noqa: SIM115 - kept open for the child's lifetime
    return subprocess.Popen([sys.executable, "-m", "station", *args], stdout=log, stderr=subprocess.STDOUT)


def stop_process(proc: subprocess.Popen | None, timeout: float = 10.0) -> int | None:
    """SIGTERM (a clean stop), SIGKILL if it does not exit in time; returns the exit status."""
    if proc is None:
        return None
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
    return proc.returncode


def wait_for(pred: Callable[[], T], timeout: float = 10.0, what: str = "condition", interval: float = 0.2) -> T:
    """Poll pred until it returns something truthy, and return that; fail naming `what` if it never does."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = pred()
        if value:
            return value
        time.sleep(interval)
    raise StationError(f"timed out after {timeout:.0f} s waiting for {what}")


# ---- the rig: real subprocesses around one station home --------------------------------------------------



def copy_samples(dest: Path, names: tuple[str, ...] = CHAOS_PHOTOS) -> Path:
    """The bundled photographs named become the simulated camera's folder (served in name order, cycling)."""
    dest.mkdir(parents=True, exist_ok=True)
    samples = resources.files("station.lab").joinpath("samples")
    for name in names:
        (dest / name).write_bytes(samples.joinpath(name).read_bytes())
    return dest


@dataclass
class StationRig:
    """One work folder: station home, simulated camera photos, town key and trust dir, town db, logs."""

    work: Path
    broker_url: str = ""
    photos: tuple[str, ...] = CHAOS_PHOTOS
    slots: int = 1  # `station init --slots`
    incubation: int | None = None  # `station init --incubation`: waited for, also in simulation
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
                  sim_images=str(self.work / "photos"), town_key=str(jwk), slots=self.slots,
                  incubation=self.incubation)
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
        self.proc = spawn(f"station-{self.starts:02d}", ["run", "--home", str(self.home.root)], self.logdir)
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
        return stop_process(self.proc, timeout)


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
        self.proc = spawn(f"town-{self.starts:02d}",
                               ["town", "listen", "--broker", self.broker_url, "--trust", str(self.trust),
                                "--db", str(self.db), "--key", str(self.key), "-v"], self.logdir)
        if not wait:
            return self
        wait_for(lambda: self.proc.poll() is not None or "connected to" in self._log(), timeout,
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
        stop_process(self.proc, timeout)


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
    out = json.loads(station_cmd("town", "show", "--db", str(db), "--json", "--trust", str(trust),
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
