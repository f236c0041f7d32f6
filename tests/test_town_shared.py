# Two `station town listen --share` processes on one MQTT 5 shared subscription (a real Mosquitto) and one real
# PostgreSQL, fed by the station's own publisher draining its journal: nothing lost, nothing stored twice, the
# chain whole — also when one listener is SIGKILLed mid-stream and the other carries on.
from __future__ import annotations

import subprocess
import sys
import time

import psycopg
import townpg

from station.config import BrokerConfig
from station.journal import Journal
from station.publisher import Publisher, PublisherSettings

pg_server, pg_url = townpg.pg_server, townpg.pg_url   # the private PostgreSQL's fixtures

N = 400


def _listener(kit, broker, db: str, name: str) -> tuple[subprocess.Popen, object]:
    log = open(kit.tmp / f"{name}.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "station", "town", "listen", "--broker", broker.url,
                             "--trust", str(kit.trust_dir), "--db", db, "--key", str(kit.tmp / "town.key"),
                             "--share", "towns", "--resend-after", "2", "-v"], stderr=log)
    return proc, log


def _wait_log(path, text: str, proc: subprocess.Popen, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while text not in path.read_text(errors="replace"):
        assert proc.poll() is None, path.read_text()[-2000:]
        assert time.monotonic() < deadline, f"{path}: no {text!r} in {timeout} s"
        time.sleep(0.05)


def _stored(path) -> int:
    return sum(" stored " in line for line in path.read_text(errors="replace").splitlines())


def _run(kit, broker, db: str, kill_after: int | None) -> tuple[Journal, list[int]]:
    town_jwk = kit.tmp / "town-pub.jwk"
    town_jwk.write_text(subprocess.run([sys.executable, "-m", "station", "town", "pubkey", "--key",
                                        str(kit.tmp / "town.key")], check=True, capture_output=True,
                                       text=True).stdout)
    procs = [_listener(kit, broker, db, f"town-{i}") for i in range(2)]
    for i, (p, _) in enumerate(procs):
        _wait_log(kit.tmp / f"town-{i}.log", "subscribed $share/towns/", p)
    j = Journal(kit.tmp / "journal.sqlite")
    kit.fill(j, N)
    settings = PublisherSettings.from_config(BrokerConfig(url=broker.url, keepalive_s=10), kit.ident,
                                             kit.tmp / "journal.sqlite", town_jwk, max_inflight=50,
                                             max_ahead=100, ack_stall_s=3.0)
    pub = Publisher(settings, kit.key, on_event=lambda ev: None)
    pub.start()
    killed = False
    try:
        deadline = time.monotonic() + 120
        while j.acked_seq() < N:
            if kill_after is not None and not killed and _stored(kit.tmp / "town-0.log") >= kill_after:
                procs[0][0].kill()             # SIGKILL: no goodbye, whatever it held in memory is gone
                procs[0][0].wait(10)
                killed = True
            assert procs[1][0].poll() is None, (kit.tmp / "town-1.log").read_text()[-2000:]
            assert time.monotonic() < deadline, f"town acked {j.acked_seq()} of {N} in 120 s"
            time.sleep(0.05)
        assert killed or kill_after is None
    finally:
        pub.stop()
        for p, log in procs:
            if p.poll() is None:
                p.terminate()
                p.wait(15)
            log.close()
    return j, [_stored(kit.tmp / f"town-{i}.log") for i in range(2)]


def _held(db: str, path: str) -> tuple[list[int], int, dict]:
    with psycopg.connect(db) as c:
        seqs = [r[0] for r in c.execute("SELECT seq FROM results WHERE station=%s ORDER BY seq", (path,))]
        contiguous = c.execute("SELECT contiguous FROM stations WHERE station=%s", (path,)).fetchone()[0]
        counters = dict(c.execute("SELECT name, n FROM counters WHERE station=%s", (path,)).fetchall())
        refusals = c.execute("SELECT code, detail FROM refusals").fetchall()
    assert refusals == []
    return seqs, contiguous, counters


def test_two_listeners_share_one_subscription_and_one_postgresql(station_kit, local_broker, pg_url):
    j, stored_by = _run(station_kit, local_broker, pg_url, kill_after=None)
    seqs, contiguous, counters = _held(pg_url, station_kit.ident.path)
    assert seqs == list(range(1, N + 1)) and contiguous == N
    assert counters["stored"] == N
    assert all(n > 0 for n in stored_by), f"the broker gave one listener everything: {stored_by}"
    assert sum(stored_by) == N       # each message stored by exactly one of them
    # the station's ack is the town's signed word on the database, whichever listener built it
    assert j.acked_seq() == N


def test_a_listener_killed_mid_stream_loses_nothing_and_the_other_carries_on(station_kit, local_broker, pg_url):
    j, stored_by = _run(station_kit, local_broker, pg_url, kill_after=N // 5)
    seqs, contiguous, counters = _held(pg_url, station_kit.ident.path)
    assert seqs == list(range(1, N + 1)) and contiguous == N and counters["stored"] == N
    assert stored_by[0] >= N // 5 and stored_by[1] > 0
    assert j.acked_seq() == N
