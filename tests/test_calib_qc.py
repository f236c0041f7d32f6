# QC control cards: Westgard 1-3s rejects and blocks the lot, 2-2s warns, a fresh in-control card releases it.
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from station.decide.qc import BASELINE_N, ControlReading, QCStore, lot_blocked, westgard

BASE = [0.62, 0.60, 0.61, 0.63, 0.59, 0.61, 0.62, 0.60, 0.61, 0.61]  # mean 0.61, SD ~0.0115


def stamp(i: int) -> str:
    return f"2026-12-{1 + i // 24:02d}T{i % 24:02d}:00:00Z"


def readings(values):
    return [ControlReading(stamp(i), v) for i, v in enumerate(values)]


def test_baseline_sets_the_target_and_nothing_is_judged_before_it():
    early = westgard(readings(BASE[:5] + [2.0]), "L1")
    assert early.mean is None and early.blocked is None and all(j.rule is None for j in early.judged)
    st = westgard(readings(BASE), "L1")
    assert st.mean == pytest.approx(np.mean(BASE)) and st.sd == pytest.approx(np.std(BASE, ddof=1))
    assert len(BASE) == BASELINE_N and st.blocked is None


def test_one_reading_beyond_3sd_rejects_and_blocks_until_a_card_reads_in_control():
    st = westgard(readings(BASE + [0.611, 0.61 - 3.5 * 0.0115]), "L1")
    assert st.latest.rule == "1-3s" and st.latest.z < -3
    assert "lot L1 blocked by QC" in st.blocked and "1-3s" in st.blocked
    released = westgard(readings(BASE + [0.611, 0.61 - 3.5 * 0.0115, 0.612]), "L1")
    assert released.blocked is None and released.judged[-2].rule == "1-3s"


def test_two_in_a_row_beyond_2sd_same_side_warns_but_does_not_block():
    st = westgard(readings(BASE + [0.61 + 2.4 * 0.0115, 0.61 + 2.6 * 0.0115]), "L1")
    assert st.latest.rule == "2-2s" and st.blocked is None and "2-2s" in st.warning
    opposite = westgard(readings(BASE + [0.61 + 2.4 * 0.0115, 0.61 - 2.6 * 0.0115]), "L1")
    assert opposite.latest.rule is None and opposite.warning is None


def test_readings_are_judged_in_time_order_not_entry_order():
    rs = readings(BASE + [0.5, 0.61])
    st = westgard([rs[-1], rs[-2], *rs[:-2]], "L1")  # entered late, out of order
    assert st.latest.reading.tc == 0.61 and st.blocked is None


def test_store_and_lot_blocked_for_the_daemon(tmp_path):
    store = QCStore(tmp_path)
    for i, v in enumerate(BASE):
        store.add("L1", v, stamp(i))
    store.add("L2", 0.9, stamp(0))
    assert lot_blocked(tmp_path, "L1") is None
    store.add("L1", 0.40, stamp(20))
    store.close()
    assert "1-3s" in lot_blocked(tmp_path, "L1")
    assert lot_blocked(tmp_path, "L2") is None and lot_blocked(tmp_path, None) is None
    (tmp_path / "calib" / "qc.json").write_text("{not json")
    assert "QC record unreadable" in lot_blocked(tmp_path, "L1")  # in control cannot be shown: blocked


@pytest.mark.parametrize("tc, at, problem", [(-1, None, "outside 0..10"), (float("nan"), None, "outside"),
                                             (0.5, "yesterday", "not RFC 3339")])
def test_bad_control_readings_are_refused_with_the_value(tmp_path, tc, at, problem):
    from station.errors import QCError

    with pytest.raises(QCError, match=problem):
        QCStore(tmp_path).add("L1", tc, at)


def test_cli_add_show_and_levey_jennings_chart(tmp_path):
    def calib(*args):
        return subprocess.run([sys.executable, "-m", "calib.cli", "--home", str(tmp_path), "qc", *args],
                              capture_output=True, text=True, timeout=60)

    store = QCStore(tmp_path)  # the baseline straight into the store the CLI writes; the rest through the CLI
    for i, v in enumerate(BASE):
        store.add("L7", v, stamp(i))
    store.close()
    for i, v in enumerate([0.63, 0.61 + 2.3 * 0.0115, 0.61 + 2.5 * 0.0115, 0.60, 0.655], start=len(BASE)):
        done = calib("add", "--lot", "L7", "--tc", str(v), "--at", stamp(i))
        assert done.returncode == 0, done.stderr
    assert "1-3s" in done.stdout and "blocked" in done.stdout
    shown = json.loads(calib("show", "--lot", "L7", "--json").stdout)
    assert [h["rule"] for h in shown["hits"]] == ["2-2s", "1-3s"] and "blocked" in shown["blocked"]
    done = calib("chart", "--lot", "L7", "--out", str(tmp_path / "lj.png"))
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "lj.png").read_bytes()[:4] == b"\x89PNG"
    bad = calib("add", "--lot", "L7", "--tc", "0.6", "--at", "noon")
    assert bad.returncode == 2 and "not RFC 3339" in bad.stderr
