# Clock: persisted boot counter, NTP sync detection through a real timedatectl process, RFC 3339 stamps.
from __future__ import annotations

import os
import re
import stat
import threading
from datetime import UTC, datetime, timedelta

import pytest

from station.errors import ClockStateError
from station.host import clock
from station.host.clock import BOOT_COUNTER_FILE, SYNC_OVERRIDE_ENV, ask_timedatectl, boot_counter, clock_synced
from station.lab.rig import wait_for
from station.protocol.wire import now_rfc3339


def test_boot_counter_increments_and_persists(tmp_path):
    state = tmp_path / "state"
    assert [boot_counter(state) for _ in range(3)] == [1, 2, 3]
    assert (state / BOOT_COUNTER_FILE).read_text() == "3\n"
    assert os.listdir(state) == [BOOT_COUNTER_FILE]  # no temp files left behind


@pytest.mark.parametrize("content", [b"", b"-1\n", b"seven\n", b"\xff\xfe"])
def test_damaged_boot_counter_is_an_error_not_a_reset(tmp_path, content):
    (tmp_path / BOOT_COUNTER_FILE).write_bytes(content)
    with pytest.raises(ClockStateError, match=BOOT_COUNTER_FILE):
        boot_counter(tmp_path)
    assert (tmp_path / BOOT_COUNTER_FILE).read_bytes() == content


def fake_timedatectl(bin_dir, body: str):
    bin_dir.mkdir(exist_ok=True)
    exe = bin_dir / "timedatectl"
    exe.write_text(f"#!/bin/sh\n{body}\n")
    exe.chmod(exe.stat().st_mode | stat.S_IXUSR)


@pytest.mark.parametrize(
    "body, expected",
    [
        ('[ "$*" = "show -p NTPSynchronized --value" ] && echo yes', True),
        ("echo no", False),
        ("echo yes; exit 1", False),  # a failing timedatectl is not trusted even if it printed yes
        ("echo maybe", False),
    ],
)
def test_clock_synced_reads_timedatectl(tmp_path, monkeypatch, body, expected):
    monkeypatch.delenv(SYNC_OVERRIDE_ENV, raising=False)
    fake_timedatectl(tmp_path / "bin", body)
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))
    assert ask_timedatectl() is expected


def test_clock_unsynced_without_timedatectl(tmp_path, monkeypatch):
    monkeypatch.delenv(SYNC_OVERRIDE_ENV, raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))
    assert ask_timedatectl() is False


def test_clock_synced_never_waits_for_a_hung_timedatectl(tmp_path, monkeypatch):
    """Issue 8: the loop's status path called timedatectl with a 3 s timeout; now it answers from a cache."""
    monkeypatch.delenv(SYNC_OVERRIDE_ENV, raising=False)
    monkeypatch.setattr(clock, "_cache", clock._SyncCache())
    go = tmp_path / "go"
    fake_timedatectl(tmp_path / "bin", f'while [ ! -f "{go}" ]; do sleep 0.05; done; echo yes')
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}:/usr/bin:/bin")
    answers: list[bool] = []
    caller = threading.Thread(target=lambda: answers.append(clock_synced()))
    caller.start()
    caller.join(timeout=2.0)  # a blocking call would still be inside timedatectl, which waits for `go`
    assert not caller.is_alive() and answers == [False]  # unknown until timedatectl answers: not synced
    go.touch()
    wait_for(clock_synced, 10, "the cached answer of timedatectl")


def test_override_env(tmp_path, monkeypatch):
    fake_timedatectl(tmp_path / "bin", "echo no")
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))
    monkeypatch.setenv(SYNC_OVERRIDE_ENV, "1")
    assert clock_synced() is True
    monkeypatch.setenv(SYNC_OVERRIDE_ENV, "0")
    assert clock_synced() is False
    monkeypatch.setenv(SYNC_OVERRIDE_ENV, "yes")
    with pytest.raises(ClockStateError, match=SYNC_OVERRIDE_ENV):
        clock_synced()


def test_now_rfc3339_is_utc_with_z():
    stamp = now_rfc3339()
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z", stamp), stamp
    parsed = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    assert abs(datetime.now(UTC) - parsed) < timedelta(seconds=5)


def test_now_rfc3339_of_a_given_unix_time():
    assert now_rfc3339(0) == "1970-01-01T00:00:00.000Z"
    assert now_rfc3339(1795000881.1234) == "2026-11-18T11:21:21.123Z"
