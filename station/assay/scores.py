# Result types of one photograph: per-cassette StripScore and the ImageScore that `station score --json` prints.
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class LineReading:
    name: str
    expected: float      # expected position (window fraction from the well end)
    position: float      # where the peak was found (or expected, if none)
    peak: float          # net peak absorbance (green)
    area: float          # integrated net absorbance, A·% of window length
    snr: float           # peak / profile noise
    found: bool


@dataclass
class StripScore:
    slot: int
    center: tuple[float, float]
    angle: float
    size: tuple[float, float]                 # (width, length) in image px
    quality: list[str] = field(default_factory=list)
    verdict: str = "retake"
    tc_ratio: float | None = None
    control_line: bool = False
    lines: list[LineReading] = field(default_factory=list)
    tc_ratios: dict[str, float | None] = field(default_factory=dict)
    line_verdicts: dict[str, str] = field(default_factory=dict)
    noise: float | None = None
    blur_px: float | None = None
    qr: str | None = None
    reason: str | None = None
    # Geometry and profile for the debug rendering; not part of the JSON.
    box: np.ndarray | None = None             # 4x2 cassette corners, image px
    window_poly: np.ndarray | None = None      # 4x2 membrane corners, image px
    line_points: list[tuple[str, np.ndarray]] = field(default_factory=list)
    profile: np.ndarray | None = None         # raw absorbance along the window, well end first
    baseline: np.ndarray | None = None

    def _line(self, name: str) -> LineReading | None:
        return next((ln for ln in self.lines if ln.name == name), None)

    def to_json(self) -> dict[str, Any]:
        c = self._line("C")
        tests = [ln for ln in self.lines if ln.name != "C"]
        t = tests[0] if tests else None

        def r(v: float | None, nd: int = 4) -> float | None:
            return None if v is None else round(float(v), nd)

        return {
            "slot": self.slot,
            "center": [round(self.center[0], 1), round(self.center[1], 1)],
            "tc_ratio": r(self.tc_ratio),
            "control_line": self.control_line,
            "quality": list(self.quality),
            "verdict": self.verdict,
            "reason": self.reason,
            "angle": round(self.angle, 2),
            "size": [round(self.size[0], 1), round(self.size[1], 1)],
            "c_area": r(c.area) if c else None,
            "t_area": r(t.area) if t else None,
            "c_peak": r(c.peak) if c else None,
            "t_peak": r(t.peak) if t else None,
            "c_snr": r(c.snr, 1) if c else None,
            "t_snr": r(t.snr, 1) if t else None,
            "tc_ratios": {k: r(v) for k, v in self.tc_ratios.items()},
            "line_verdicts": dict(self.line_verdicts),
            "lines": [{"name": ln.name, "position": r(ln.position), "peak": r(ln.peak), "area": r(ln.area),
                       "snr": r(ln.snr, 1), "found": ln.found} for ln in self.lines],
            "noise": r(self.noise, 5),
            "blur_px": r(self.blur_px, 2),
            "qr": self.qr,
        }


@dataclass
class ImageScore:
    strips: list[StripScore]
    strip_type: str
    error: str | None = None
    reason: str | None = None                 # why nothing was read, when strips is empty
    qr_codes: list[dict[str, Any]] = field(default_factory=list)
    size: tuple[int, int] | None = None       # (width, height)

    def to_json(self, image: str | None = None) -> dict[str, Any]:
        return {
            "image": image,
            "strips": [s.to_json() for s in self.strips],
            "error": self.error,
            "reason": self.reason,
            "strip_type": self.strip_type,
            "qr_codes": self.qr_codes,
        }
