# Four-parameter logistic of T/C against concentration: a robust fit (IRLS, Tukey biweight) and its inverse.
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

# Tukey's biweight tuning constant: 95 % efficiency on Gaussian noise, and a replicate more than ~4.7 robust
# SDs off the curve gets no weight at all, so one spoiled cassette cannot drag the curve.
TUKEY_C = 4.685
# A photograph reads T/C to about 0.01 at best; a smaller residual scale would turn ordinary reading noise
# into "outliers" when the curve happens to pass almost exactly through the points.
MIN_SCALE = 0.01
IRLS_ROUNDS = 12
# Replicate spread grows with the T/C: cassette-to-cassette variation is proportional to the signal, the
# reader's own noise is not. Residuals are judged in units of (fitted T/C + VAR_OFFSET), so blanks (T/C ~1.2)
# are allowed about twice the spread of the top standards (T/C ~0.2) before they count as outliers.
VAR_OFFSET = 0.3


@dataclass(frozen=True)
class Curve:
    """y = d + (a - d) / (1 + (x / c) ** b): a at zero concentration, d at saturation, c the midpoint, b the slope.

    A competitive strip has a > d and b > 0: T/C falls as the concentration rises.
    """

    a: float
    b: float
    c: float
    d: float

    def tc(self, conc: float | np.ndarray) -> float | np.ndarray:
        x = np.maximum(np.asarray(conc, dtype=float), 0.0)
        y = self.d + (self.a - self.d) / (1.0 + (x / self.c) ** self.b)
        return float(y) if np.ndim(y) == 0 else y

    def conc(self, tc: float) -> float | None:
        """The concentration that reads this T/C, or None where the curve never reaches it (outside d..a)."""
        lo, hi = min(self.a, self.d), max(self.a, self.d)
        if not lo < tc < hi:
            return None
        return float(self.c * ((self.a - self.d) / (tc - self.d) - 1.0) ** (1.0 / self.b))

    def to_json(self) -> dict[str, float]:
        return {"a": self.a, "b": self.b, "c": self.c, "d": self.d}

    @classmethod
    def from_json(cls, d: dict) -> Curve:
        return cls(a=float(d["a"]), b=float(d["b"]), c=float(d["c"]), d=float(d["d"]))


@dataclass(frozen=True)
class Fit:
    curve: Curve
    weights: np.ndarray  # final robust weight per point, 0..1
    residuals: np.ndarray  # observed - fitted
    scale: float  # robust residual SD (MAD-based) of the points
    r2: float  # weighted coefficient of determination
    rounds: int
    converged: bool


def _model(p: np.ndarray, x: np.ndarray) -> np.ndarray:
    # Fitted in (a, b, ln c, d): c stays positive and steps are scale-free across decades of concentration.
    a, b, lnc, d = p
    with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
        r = np.where(x > 0, np.exp(b * (np.log(np.where(x > 0, x, 1.0)) - lnc)), 0.0)
    return d + (a - d) / (1.0 + r)


def _jacobian(p: np.ndarray, x: np.ndarray) -> np.ndarray:
    a, b, lnc, d = p
    with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
        lx = np.log(np.where(x > 0, x, 1.0))
        r = np.where(x > 0, np.exp(np.clip(b * (lx - lnc), -60, 60)), 0.0)
    g = 1.0 / (1.0 + r)
    dg = -(a - d) * r * g * g  # d y / d (b (ln x - ln c))
    return np.column_stack([g, np.where(x > 0, dg * (lx - lnc), 0.0), np.where(x > 0, -b * dg, 0.0), 1.0 - g])


def _lm(p: np.ndarray, x: np.ndarray, y: np.ndarray, w: np.ndarray, iters: int = 200) -> tuple[np.ndarray, bool]:
    """Weighted Levenberg–Marquardt; small enough to own, so the station needs no scipy."""
    lam = 1e-3
    cost = float(np.sum(w * (y - _model(p, x)) ** 2))
    for _ in range(iters):
        r = y - _model(p, x)
        J = _jacobian(p, x)
        JTW = J.T * w
        A, g = JTW @ J, JTW @ r
        improved = False
        for _ in range(20):
            step = np.linalg.lstsq(A + lam * np.diag(np.diag(A) + 1e-12), g, rcond=None)[0]
            q = p + step
            q[1] = max(q[1], 0.05)  # the slope keeps its sign: a falling curve stays a falling curve
            new = float(np.sum(w * (y - _model(q, x)) ** 2))
            if np.isfinite(new) and new <= cost:
                improved = True
                done = cost - new <= 1e-12 * max(cost, 1e-30) or np.max(np.abs(step)) < 1e-10
                p, cost, lam = q, new, max(lam / 3, 1e-9)
                if done:
                    return p, True
                break
            lam *= 4
        if not improved:
            return p, True  # no downhill step left: a minimum to working precision
    return p, False


def _start(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    pos = x > 0
    a = float(np.median(y[~pos])) if np.any(~pos) else float(np.max(y))
    top = float(np.max(x))
    d = float(np.median(y[x == top]))
    d = d - 0.1 * abs(a - d)
    mid = 0.5 * (a + d)
    levels = np.unique(x[pos])
    means = np.array([np.median(y[x == v]) for v in levels])
    c = float(levels[np.argmin(np.abs(means - mid))])
    return np.array([a, 1.0, math.log(c), d])


def fit_4pl(conc: np.ndarray | list[float], tc: np.ndarray | list[float]) -> Fit:
    """Robust 4PL fit: iteratively reweighted least squares with Tukey's biweight on MAD-scaled residuals.

    Blanks (concentration 0) are fitted as they are: the curve there is exactly a.
    """
    x, y = np.asarray(conc, dtype=float), np.asarray(tc, dtype=float)
    if x.shape != y.shape or x.ndim != 1 or len(x) < 5:
        raise ValueError("a 4PL needs at least 5 points of (concentration, T/C)")
    p, w = _start(x, y), np.ones_like(y)
    converged, rounds, scale = False, 0, MIN_SCALE
    n_free = max(len(x) - 4, 1)
    for k in range(1, IRLS_ROUNDS + 1):
        rounds = k
        spread = _model(p, x).clip(0.0) + VAR_OFFSET
        p, converged = _lm(p, x, y, w / spread ** 2)
        fitted = _model(p, x)
        spread = fitted.clip(0.0) + VAR_OFFSET
        rel = (y - fitted) / spread
        # MAD of the standardised residuals, corrected for the four fitted parameters (else it runs small).
        mad = 1.4826 * float(np.median(np.abs(rel - np.median(rel)))) * math.sqrt(len(x) / n_free)
        scale = max(mad, MIN_SCALE / (float(np.median(spread))))
        u = rel / (TUKEY_C * scale)
        new_w = np.where(np.abs(u) < 1, (1 - u * u) ** 2, 0.0)
        if np.max(np.abs(new_w - w)) < 1e-4:
            w = new_w
            break
        w = new_w
    res = y - _model(p, x)
    scale = scale * float(np.median(_model(p, x).clip(0.0) + VAR_OFFSET))  # back to T/C units, a typical point
    ybar = float(np.sum(w * y) / np.sum(w))
    ss_tot = float(np.sum(w * (y - ybar) ** 2))
    r2 = 1.0 - float(np.sum(w * res ** 2)) / ss_tot if ss_tot > 0 else 0.0
    curve = Curve(a=float(p[0]), b=float(p[1]), c=float(math.exp(p[2])), d=float(p[3]))
    return Fit(curve=curve, weights=w, residuals=res, scale=scale, r2=r2, rounds=rounds, converged=converged)
