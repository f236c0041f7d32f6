# Standards → T/C per concentration → robust 4PL → LOD, T/C at the legal limit, recommended cutoff and its error rates.
from __future__ import annotations

import csv
import hashlib
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from station.decide.fourpl import Curve, Fit, fit_4pl
from station.errors import CalibrationError, SeriesRefused
from station.striptypes import StripType

MIN_LEVELS = 4  # concentrations above zero: a 4PL has four parameters
MIN_REPLICATES = 3
Z95 = 1.645  # one-sided 95 %: the cutoff lets at most ~5 % of samples at the limit read negative
DOWNWEIGHT_REPORTED = 0.1  # a biweight below this is a replicate more than ~3.9 robust SDs off the curve


@dataclass(frozen=True)
class Standard:
    photo: str  # as written in the series file
    concentration: float
    line: int


@dataclass
class Replicate:
    photo: str
    slot: int
    concentration: float
    tc: float
    image_sha256: str = ""
    weight: float = 1.0


@dataclass
class Analysis:
    limit: float
    unit: str
    fit: Fit
    replicates: list[Replicate]
    blank_mean: float
    blank_sd: float
    lod: float
    lod_tc: float
    tc_at_limit: float
    sd_at_limit: float
    cutoff: float
    false_negative: float  # expected share of samples exactly at the limit that read negative
    false_positive: float  # expected share of blanks that read positive
    top: float
    top_tc: float
    warnings: list[str] = field(default_factory=list)

    @property
    def curve(self) -> Curve:
        return self.fit.curve

    @property
    def downweighted(self) -> list[Replicate]:
        return [r for r in self.replicates if r.weight < DOWNWEIGHT_REPORTED]

    def to_json(self) -> dict[str, Any]:
        rnd = _round
        return {
            "limit": self.limit, "unit": self.unit, "tc_at_limit": rnd(self.tc_at_limit), "lod": rnd(self.lod),
            "lod_tc": rnd(self.lod_tc), "cutoff": rnd(self.cutoff), "curve": {k: rnd(v) for k, v in
                                                                             self.curve.to_json().items()},
            "blank_mean": rnd(self.blank_mean), "blank_sd": rnd(self.blank_sd), "sd_at_limit": rnd(self.sd_at_limit),
            "false_negative_at_limit": rnd(self.false_negative), "false_positive_blank": rnd(self.false_positive),
            "range": {"lod": rnd(self.lod), "top": self.top, "top_tc": rnd(self.top_tc)},
            "fit": {"r2": rnd(self.fit.r2), "residual_sd": rnd(self.fit.scale), "points": len(self.replicates),
                    "levels": len({r.concentration for r in self.replicates}), "irls_rounds": self.fit.rounds,
                    "converged": self.fit.converged},
            "downweighted": [{"photo": r.photo, "slot": r.slot, "concentration": r.concentration,
                              "tc": rnd(r.tc), "weight": rnd(r.weight)} for r in self.downweighted],
            "replicates": [{"photo": r.photo, "slot": r.slot, "concentration": r.concentration, "tc": rnd(r.tc),
                            "weight": rnd(r.weight), "image_sha256": r.image_sha256} for r in self.replicates],
            "warnings": list(self.warnings),
        }


def _round(v: float) -> float:
    return float(f"{v:.5g}")


def read_series(path: Path) -> list[Standard]:
    """The series file: CSV with the header `photo,concentration`, photo paths relative to the file."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise CalibrationError(f"{path}: cannot read the series ({exc.strerror or exc})") from None
    rows = list(csv.reader(text.splitlines()))
    if not rows or [c.strip().lower() for c in rows[0]] != ["photo", "concentration"]:
        raise CalibrationError(f"{path}:1: the header must be exactly 'photo,concentration'")
    out = []
    for n, row in enumerate(rows[1:], start=2):
        if not row or not "".join(row).strip() or row[0].lstrip().startswith("#"):
            continue
        if len(row) != 2 or not row[0].strip():
            raise CalibrationError(f"{path}:{n}: need 'photo,concentration', got {','.join(row)!r}")
        try:
            conc = float(row[1])
        except ValueError:
            raise CalibrationError(f"{path}:{n}: concentration {row[1]!r} is not a number") from None
        if not math.isfinite(conc) or conc < 0:
            raise CalibrationError(f"{path}:{n}: concentration {conc} must be 0 (blank) or positive")
        out.append(Standard(row[0].strip(), conc, n))
    if not out:
        raise CalibrationError(f"{path}: no standards listed")
    return out


def measure(series_file: Path, standards: list[Standard], st: StripType) -> list[Replicate]:
    """Read every photograph with the station's own reader; each cassette on it is one replicate."""
    import cv2

    from station.decide.verdict import read_photo

    out: list[Replicate] = []
    for s in standards:
        path = (series_file.parent / s.photo)
        data = path.read_bytes() if path.is_file() else b""
        bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR) if data else None
        if bgr is None:
            raise CalibrationError(f"{series_file}:{s.line}: {path}: not a readable photograph")
        strips = read_photo(bgr, st).strips
        if not strips:
            raise SeriesRefused(f"{s.photo}: no cassette found on the photograph")
        for strip in strips:
            if strip.tc_ratio is None:
                raise SeriesRefused(f"{s.photo} slot {strip.slot}: unreadable ({strip.reason or strip.verdict}); "
                                    "photograph it again or drop it from the series")
            out.append(Replicate(s.photo, strip.slot, s.concentration, float(strip.tc_ratio),
                                 hashlib.sha256(data).hexdigest()))
    return out


def _levels(reps: list[Replicate]) -> dict[float, list[float]]:
    levels: dict[float, list[float]] = {}
    for r in reps:
        levels.setdefault(r.concentration, []).append(r.tc)
    return dict(sorted(levels.items()))


def _phi(z: float) -> float:
    return 0.5 * (1.0 + math.erf(z / math.sqrt(2.0)))


def _check_shape(levels: dict[float, list[float]], limit: float) -> None:
    """Refuse, with the reason, what no curve fitted to it could make trustworthy."""
    if 0.0 not in levels:
        raise SeriesRefused("no blanks: the series needs concentration 0 (≥ 3 replicates) for the LOD")
    nonzero = [c for c in levels if c > 0]
    if len(nonzero) < MIN_LEVELS:
        raise SeriesRefused(f"too few levels: {len(nonzero)} concentrations above zero, at least {MIN_LEVELS} "
                            "needed (e.g. 0, ¼, ½, 1, 2, 4 × the limit)")
    thin = [f"{c:g} ({len(v)})" for c, v in levels.items() if len(v) < MIN_REPLICATES]
    if thin:
        raise SeriesRefused(f"too few replicates at {', '.join(thin)}: at least {MIN_REPLICATES} per level")
    if not min(nonzero) <= limit <= max(nonzero):
        raise SeriesRefused(f"the series ({min(nonzero):g}..{max(nonzero):g}) does not bracket the limit {limit:g}")
    concs = list(levels)
    med = [float(np.median(v)) for v in levels.values()]
    spread = float(np.median([np.median(np.abs(np.array(v) - np.median(v))) for v in levels.values()])) * 1.4826
    tol = max(0.03, 3 * spread)
    for i in range(1, len(med)):
        if med[i] > med[i - 1] + tol:
            raise SeriesRefused(f"non-monotonic: median T/C rises from {med[i - 1]:.3f} at {concs[i - 1]:g} to "
                                f"{med[i]:.3f} at {concs[i]:g}; a competitive strip's T/C falls with concentration "
                                "(mislabelled standards?)")
    if med[0] - med[-1] < max(0.1, 6 * spread):
        raise SeriesRefused(f"no response: median T/C {med[0]:.3f} at blank and {med[-1]:.3f} at {concs[-1]:g}")


def analyse(reps: list[Replicate], limit: float, unit: str = "", st: StripType | None = None) -> Analysis:
    """The whole calibration from replicate T/C readings; raises SeriesRefused with the reason when it cannot."""
    if st is not None and st.format != "competitive":
        raise SeriesRefused(f"strip type {st.name!r} is {st.format}: calibration from standards is for "
                            "competitive strips (T/C falls as the concentration rises)")
    if not math.isfinite(limit) or limit <= 0:
        raise SeriesRefused(f"limit {limit} must be a positive concentration")
    levels = _levels(reps)
    _check_shape(levels, limit)
    x = np.array([r.concentration for r in reps])
    y = np.array([r.tc for r in reps])
    fit = fit_4pl(x, y)
    cv = fit.curve
    if not fit.converged or not (cv.a > cv.d and cv.b > 0):
        raise SeriesRefused(f"the 4PL fit failed (a={cv.a:.3g}, b={cv.b:.3g}, d={cv.d:.3g}, converged "
                            f"{fit.converged}): T/C must fall with concentration")
    for r, w in zip(reps, fit.weights, strict=True):
        r.weight = float(w)
    kept = {c: [r.tc for r in reps if r.concentration == c and r.weight >= DOWNWEIGHT_REPORTED] for c in levels}
    # Every blank counts, spoiled or not: the LOD is about how blanks scatter, and leaving one out would hide it.
    blanks = [r.tc for r in reps if r.concentration == 0.0]
    blank_mean = float(np.mean(blanks))
    blank_sd = float(np.std(blanks, ddof=1)) if len(blanks) > 1 else fit.scale
    blank_sd = max(blank_sd, 1e-3)
    lod_tc = blank_mean - 3 * blank_sd
    lod = cv.conc(lod_tc)
    if lod is None:
        where = "below the curve's floor" if lod_tc <= cv.d else "above the curve at zero"
        raise SeriesRefused(f"LOD undefined: blank mean − 3 SD = {lod_tc:.3f} is {where} "
                            f"(d={cv.d:.3f}, a={cv.a:.3f})")
    if lod > limit:
        raise SeriesRefused(f"LOD {lod:.4g} {unit} above the limit {limit:g} {unit}: the strip cannot tell a sample "
                            "at the limit from a blank".replace("  ", " "))
    # Replicate spread near the limit: pooled within-level SD over the levels above zero (3 replicates alone
    # would give a poor SD); what a sample at the limit may read either side of the curve.
    groups = [v for c, v in kept.items() if c > 0 and len(v) > 1]
    dof = sum(len(v) - 1 for v in groups)
    pooled = math.sqrt(sum(float(np.sum((np.array(v) - np.mean(v)) ** 2)) for v in groups) / dof) if dof else 0.0
    sd_limit = max(pooled, 1e-3)
    tc_limit = float(cv.tc(limit))
    warnings: list[str] = []
    cutoff = tc_limit + Z95 * sd_limit
    if cutoff > blank_mean - Z95 * blank_sd:
        # Not separable at 5 % / 5 %: split the difference in SD units, and say so.
        cutoff = (tc_limit * blank_sd + blank_mean * sd_limit) / (blank_sd + sd_limit)
        warnings.append("the limit and the blanks overlap: the cutoff balances both error rates; consider a "
                        "more sensitive strip lot")
    fn = 1.0 - _phi((cutoff - tc_limit) / sd_limit)
    fp = _phi((cutoff - blank_mean) / blank_sd)
    top = max(levels)
    if fit.r2 < 0.95:
        warnings.append(f"weak fit: R² {fit.r2:.3f}")
    return Analysis(limit=limit, unit=unit, fit=fit, replicates=reps, blank_mean=blank_mean, blank_sd=blank_sd,
                    lod=float(lod), lod_tc=float(lod_tc), tc_at_limit=tc_limit, sd_at_limit=sd_limit, cutoff=cutoff,
                    false_negative=fn, false_positive=fp, top=float(top), top_tc=float(cv.tc(top)),
                    warnings=warnings)


def write_series_file(folder: Path, rows: list[tuple[str, float]], name: str = "series.csv") -> Path:
    """The series file the guided run leaves behind, in the form `calib standards fit --series` reads."""
    from station.host.files import atomic_write

    path = folder / name
    atomic_write(path, ("photo,concentration\n" + "".join(f"{p},{c:g}\n" for p, c in rows)).encode("utf-8"))
    return path


def series_record(series_file: Path, analysis: Analysis) -> dict[str, Any]:
    """What a calibration keeps of the series it came from: the file, its hash and every replicate read."""
    data = series_file.read_bytes()
    return {"file": str(series_file), "sha256": hashlib.sha256(data).hexdigest(),
            "replicates": analysis.to_json()["replicates"]}
