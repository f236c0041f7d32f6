# Green-channel absorbance profile along the membrane and its robust (non-flat) membrane baseline.
from __future__ import annotations

from collections.abc import Callable

import cv2
import numpy as np

from station.assay.fast import median, robust_sd
from station.assay.window import Window


def _srgb_to_linear_lut() -> np.ndarray:
    x = np.arange(256, dtype=np.float64) / 255.0
    lin = np.where(x <= 0.04045, x / 12.92, ((x + 0.055) / 1.055) ** 2.4)
    # Code 0 would be infinite absorbance; half a code step keeps the log finite.
    lin[0] = 0.5 / 255.0 / 12.92
    return lin.astype(np.float32)


SRGB_TO_LINEAR = _srgb_to_linear_lut()


def membrane_crop(patch: np.ndarray, win: Window, inset_x: float = 0.08, inset_y: float = 0.015) -> np.ndarray:
    """The membrane's central part (away from the recess-wall shadows), BGR uint8."""
    w, h = win.x1 - win.x0, win.y1 - win.y0
    xa, xb = int(round(win.x0 + inset_x * w)), int(round(win.x1 - inset_x * w))
    ya, yb = int(round(win.y0 + inset_y * h)), int(round(win.y1 - inset_y * h))
    return patch[ya:yb, xa:xb]


# Relative absorbance of colloidal gold in the camera's blue, green and red channels (peak ~525 nm).
GOLD_K_BGR = np.array([0.50, 1.00, 0.12])
# BT.601 luma, which is exactly the Y plane a JPEG stores at full resolution and with its finest tables.
LUMA_W_BGR = np.array([0.114, 0.587, 0.299])


def _srgb_encode(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return np.where(x <= 0.0031308, 12.92 * x, 1.055 * np.power(x, 1 / 2.4) - 0.055)


def _srgb_decode(v: np.ndarray) -> np.ndarray:
    v = np.clip(v, 0.0, 1.0)
    return np.where(v <= 0.04045, v / 12.92, ((v + 0.055) / 1.055) ** 2.4)


def absorbance_profile(crop: np.ndarray) -> np.ndarray:
    """-log10 of the mean linearised luma per row, reordered so index 0 is the sample-well end.

    Luma rather than the decoded green plane: JPEG keeps chroma at half resolution with coarse
    quantisation, and the decoded green inherits those errors (they doubled the repeatability CV);
    luma carries the same gold signal (60 % green-weighted) without them. `luma_to_green` turns the
    net luma absorbance back into green absorbance.
    """
    y = cv2.cvtColor(crop, cv2.COLOR_BGR2GRAY)
    rows = SRGB_TO_LINEAR[y].mean(axis=1)
    return (-np.log10(np.maximum(rows, 1e-4)))[::-1].astype(np.float64)


def luma_to_green(crop: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
    """Map net luma absorbance to green absorbance for gold on this membrane.

    Built from the membrane's own channel levels and gold's spectral shape: the luma a gold layer of
    green absorbance A leaves is computed exactly (sRGB encode, BT.601 mix, decode), then inverted.
    Small signals scale by a constant; strong lines are de-compressed (red light passes gold).
    """
    lin = SRGB_TO_LINEAR[crop.reshape(-1, 3)]
    m = np.median(lin, axis=0).astype(np.float64)
    a = np.linspace(0.0, 3.0, 301)
    seen = m[None, :] * np.power(10.0, -a[:, None] * GOLD_K_BGR[None, :])
    luma = _srgb_decode(_srgb_encode(seen) @ LUMA_W_BGR)
    f = -np.log10(np.maximum(luma, 1e-6) / max(float(luma[0]), 1e-6))
    slope = max((f[1] - f[0]) / (a[1] - a[0]), 1e-3)

    def convert(net: np.ndarray) -> np.ndarray:
        # Below the background (noise) the small-signal scale applies; above, the exact inverse.
        return np.where(net <= 0, net / slope, np.interp(net, f, a))

    return convert


# What the highest power's coefficient costs, per fitted sample, against the squared residuals (x in [-1, 1]).
TOP_POWER_COST = 0.2


def robust_baseline(y: np.ndarray, exclude: np.ndarray, degree: int = 3, iterations: int = 6) -> np.ndarray:
    """Polynomial membrane background fitted around the lines.

    Lines only ever add absorbance, so points well above the current fit are dropped on each pass
    (an asymmetric fit), and at the window's ends points well below it too; `exclude` marks samples known
    to sit on a line. The highest power is held back a little (a ridge on its coefficient): under a line,
    where the fit has no samples, a free cubic swings with the noise of each photograph (with a baseline
    that did not swing, the repeatability CV fell by a quarter); a background that does bend keeps most of
    its cubic.
    """
    n = len(y)
    # Powers of x in [-1, 1] are well scaled: least squares on them needs none of np.polyfit's rescaling.
    basis = np.vander(np.linspace(-1.0, 1.0, n), degree + 1)
    ridge = np.eye(1, degree + 1)           # np.vander puts the highest power first
    # The few samples a line near the window's end leaves past it are the rim's shade and the edge's blur:
    # no anchor for the fit there (carried on straight past its outermost samples instead).
    exclude = exclude.copy()
    short = max(3, round(0.06 * n))
    for side in (slice(None), slice(None, None, -1)):
        free = ~exclude[side]
        run = n if free.all() else int(np.argmin(free))
        if run < short:
            exclude[side][:run] = True
    keep = ~exclude
    # Lines only add absorbance, so a sample far below the fit is no membrane either; at the window's very
    # end it is a light rim blurred in, and kept it would bend the fit down under the nearer line.
    ends = np.zeros(n, bool)
    m = max(2, round(0.03 * n))
    ends[:m] = ends[-m:] = True
    fit = np.full(n, median(y))
    for _ in range(iterations):
        if keep.sum() < degree + 3:
            break
        a = np.vstack([basis[keep], TOP_POWER_COST * np.sqrt(keep.sum()) * ridge])
        fit = _held(basis @ np.linalg.lstsq(a, np.append(y[keep], 0.0), rcond=None)[0], keep)
        r = y - fit
        s = robust_sd(r[keep]) + 1e-6
        kept = ~exclude & (r < 2.5 * s) & ~(ends & (r < -4.0 * s))
        if np.array_equal(kept, keep):
            break           # the next pass would fit the same points again
        keep = kept
    return fit


def _held(fit: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """fit, carried on straight past the outermost samples it rests on: a cubic swings beyond its data (a line
    near the window's end leaves none past it)."""
    idx = np.flatnonzero(keep)
    a, b = int(idx[0]), int(idx[-1])
    out = fit.copy()
    if a > 0:
        out[:a] = fit[a] + (fit[a] - fit[a + 1]) * np.arange(a, 0, -1)
    if b < len(fit) - 1:
        out[b + 1:] = fit[b] + (fit[b] - fit[b - 1]) * np.arange(1, len(fit) - b)
    return out
