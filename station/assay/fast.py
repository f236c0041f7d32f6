# Order statistics without numpy's per-call overhead: the window search and the baseline take thousands a photo.
from __future__ import annotations

import numpy as np


def median(x: np.ndarray) -> float:
    """np.median of a NaN-free array."""
    v = x.ravel()
    k = v.size // 2
    if v.size % 2:
        return float(np.partition(v, k)[k])
    part = np.partition(v, (k - 1, k))
    return 0.5 * (float(part[k - 1]) + float(part[k]))


def robust_sd(x: np.ndarray) -> float:
    """The standard deviation a normal sample would have, from its median absolute deviation (lines and
    outliers leave it alone)."""
    return 1.4826 * median(np.abs(x - median(x)))


def quantiles(x: np.ndarray, qs: tuple[float, ...]) -> list[float]:
    """np.percentile's linear quantiles (qs as fractions) of a NaN-free, non-empty array."""
    v = np.sort(x.ravel())
    if v.size == 1:
        return [float(v[0])] * len(qs)
    out = []
    for q in qs:
        i = q * (v.size - 1)
        k = min(int(i), v.size - 2)
        out.append(float(v[k] + (i - k) * (v[k + 1] - v[k])))
    return out
