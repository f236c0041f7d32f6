# Green-channel absorbance profile along the membrane and its robust (non-flat) membrane baseline.
from __future__ import annotations

import numpy as np

from station.assay.window import Window


def _srgb_to_linear_lut() -> np.ndarray:
    x = np.arange(256, dtype=np.float64) / 255.0
    lin = np.where(x <= 0.04045, x / 12.92, ((x + 0.055) / 1.055) ** 2.4)
    # Code 0 would be infinite absorbance; half a code step keeps the log finite.
    lin[0] = 0.5 / 255.0 / 12.92
    return lin.astype(np.float32)


SRGB_TO_LINEAR = _srgb_to_linear_lut()


def membrane_crop(patch: np.ndarray, win: Window, inset_x: float = 0.12, inset_y: float = 0.015) -> np.ndarray:
    """The membrane's central part (away from the recess-wall shadows), BGR uint8."""
    w, h = win.x1 - win.x0, win.y1 - win.y0
    xa, xb = int(round(win.x0 + inset_x * w)), int(round(win.x1 - inset_x * w))
    ya, yb = int(round(win.y0 + inset_y * h)), int(round(win.y1 - inset_y * h))
    return patch[ya:yb, xa:xb]


def absorbance_profile(crop: np.ndarray) -> np.ndarray:
    """-log10 of the mean linear green intensity per row, reordered so index 0 is the sample-well end."""
    lin = SRGB_TO_LINEAR[crop[:, :, 1]]
    rows = lin.mean(axis=1)
    return (-np.log10(np.maximum(rows, 1e-4)))[::-1].astype(np.float64)


def robust_baseline(y: np.ndarray, exclude: np.ndarray, degree: int = 3, iterations: int = 6) -> np.ndarray:
    """Polynomial membrane background fitted around the lines.

    Lines only ever add absorbance, so points well above the current fit are dropped on each pass
    (an asymmetric fit); `exclude` marks samples known to sit on a line.
    """
    n = len(y)
    x = np.linspace(-1.0, 1.0, n)
    keep = ~exclude
    fit = np.full(n, float(np.median(y)))
    for _ in range(iterations):
        if keep.sum() < degree + 3:
            break
        coef = np.polyfit(x[keep], y[keep], degree)
        fit = np.polyval(coef, x)
        r = y - fit
        s = 1.4826 * float(np.median(np.abs(r[keep] - np.median(r[keep])))) + 1e-6
        keep = ~exclude & (r < 2.5 * s)
    return fit
