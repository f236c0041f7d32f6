# Crash safety: a real child process appends and acks in a tight loop and is SIGKILLed at random moments.
from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import textwrap
import time

from station.journal import Journal, verify_chain

CHILD = textwrap.dedent(
    """
    import sys
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from station.journal import Journal
    from station.protocol.result import RESULT_TYP, build_result_payload
    from station.protocol.signing import sign_jws

    key = Ed25519PrivateKey.generate()
    j = Journal(sys.argv[1])
    pad = "x" * 600  # brings the signed message to ~1.5 KB, like a real record with its reading

    def make(verdict, sample):
        def build(seq, prev):
            p = build_result_payload(
                seq=seq, prev=prev, station_path="d/t/v/st-9", station_id="st-9",
                boot={"counter": int(sys.argv[2]), "monotonic_s": 1.0}, read_at="2026-11-24T00:00:00Z",
                clock_synced=False, sample={"id": sample, "producer": None, "note": pad},
                strip={"type": "p", "analyte": "a", "lot": None, "slot": 0},
                reading={"tc_ratio": 0.5, "c_area": 1.0, "t_area": 0.5, "c_peak": 0.1, "t_peak": 0.05, "snr": 9.0},
                verdict=verdict, quality=[], calibration={"id": None, "cutoff": 0.6}, image_sha256=None,
                source="camera")
            return sign_jws(p, key, "st-9/1", RESULT_TYP)
        return build

    print("ready", flush=True)
    i = 0
    while True:
        i += 1
        verdict = "positive" if i % 11 == 0 else "negative"
        e = j.append(make(verdict, f"S-{i}"), verdict=verdict, sample_id=f"S-{i}", image_path=None)
        print("seq", e.seq, flush=True)
        if i % 7 == 0:
            j.mark_published(range(max(1, e.seq - 6), e.seq + 1))
            j.mark_acked(e.seq - 3)
            print("ack", e.seq - 3, flush=True)
    """
)

ROUNDS = 10


def test_sigkill_loses_no_committed_result(tmp_path):
    path = tmp_path / "journal.sqlite"
    rng = random.Random(int.from_bytes(os.urandom(4), "big"))
    committed: set[int] = set()
    max_ack = 0
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    for round_no in range(1, ROUNDS + 1):
        child = subprocess.Popen(
            [sys.executable, "-c", CHILD, str(path), str(round_no)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
        )
        assert child.stdout.readline() == b"ready\n", child.stderr.read().decode()
        # Opening (with its integrity check) takes longer as the journal grows: start the clock at the first commit.
        first = child.stdout.readline()
        assert first.startswith(b"seq "), child.stderr.read().decode()
        time.sleep(rng.uniform(0.005, 0.25))  # lands anywhere inside append, commit, ack
        os.kill(child.pid, signal.SIGKILL)
        out, err = child.communicate(timeout=10)
        assert child.returncode == -signal.SIGKILL, err.decode()
        reported = []
        # Unbuffered print() writes "seq", " ", N and "\n" separately: a kill can cut the last line short.
        lines = out.decode().splitlines(keepends=True)
        if lines and not lines[-1].endswith("\n"):
            lines.pop()
        for line in [first.decode().strip(), *lines]:
            kind, value = line.split()
            if kind == "seq":
                reported.append(int(value))
            else:
                max_ack = max(max_ack, int(value))
        committed.update(reported)
        assert reported, f"round {round_no}: child committed nothing before the kill"

        with Journal(path) as j:  # integrity_check and tail chain check run here
            stats = j.stats()
            present = {e.seq for e in j.entries(limit=10**6)}
            assert committed <= present, f"round {round_no}: lost {sorted(committed - present)[:10]}"
            # At most the one append whose "seq" line the kill cut off may exist unreported.
            assert stats.last_seq <= max(committed) + 1
            assert present == set(range(1, stats.last_seq + 1))
            assert stats.acked_seq >= max_ack
            assert [e.seq for e in j.unacked(limit=10**6)] == list(range(stats.acked_seq + 1, stats.last_seq + 1))
            assert verify_chain(j) == []
    print(f"{ROUNDS} kills, {len(committed)} committed results, last acked {max_ack}")
    assert len(committed) > ROUNDS * 5
