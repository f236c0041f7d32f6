# The search's all-pairs run finder and the fast median give exactly what their plain forms give.
import numpy as np
import pytest

from station.assay.extent import longest_run, longest_runs
from station.assay.fast import median, quantiles, robust_sd


def test_every_rows_longest_run_at_once_is_each_rows_own():
    rng = np.random.default_rng(5)
    for _ in range(300):
        masks = rng.random((6, int(rng.integers(1, 80)))) < rng.random()
        # Runs touching a row's end, and rows of a single True, are the cases a border can get wrong.
        masks[0, :3], masks[1, -3:], masks[2] = True, True, False
        masks[2, int(rng.integers(0, masks.shape[1]))] = True
        got = longest_runs(masks, 2)
        assert [tuple(g) for g in got] == [longest_run(m, 2) for m in masks]


def test_longest_run_bridges_two_missing_rows_not_three():
    row = np.array([0, 1, 1, 0, 0, 1, 1, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 0], bool)
    assert tuple(longest_runs(row[None, :9], 2)[0]) == (1, 6) == longest_run(row[:9], 2)
    assert tuple(longest_runs(row[None], 2)[0]) == (10, 16) == longest_run(row, 2)


@pytest.mark.parametrize("n", [1, 2, 7, 8, 301])
def test_fast_median_is_numpys(n):
    x = np.random.default_rng(n).normal(size=(n, 3)).astype(np.float32)
    assert median(x) == pytest.approx(float(np.median(x)), abs=1e-6)
    assert median(x[:, 1]) == pytest.approx(float(np.median(x[:, 1])), abs=1e-6)


@pytest.mark.parametrize("n", [1, 2, 5, 300])
def test_fast_quantiles_and_robust_sd_are_numpys(n):
    x = np.random.default_rng(n).integers(0, 7, n)
    assert quantiles(x, (0.25, 0.75)) == pytest.approx(list(np.percentile(x, (25, 75))))
    y = np.random.default_rng(n).normal(size=n)
    assert robust_sd(y) == pytest.approx(1.4826 * float(np.median(np.abs(y - np.median(y)))))
