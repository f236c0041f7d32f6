# Daily control cards per lot: Levey–Jennings statistics, Westgard 1-3s (reject) / 2-2s (warn), and the lot block.
from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from tinydb import Query, TinyDB

from station.decide.calibration import AtomicJSONStorage
from station.errors import CalibrationError, QCError
from station.protocol.wire import now_rfc3339

QC_FILE = "qc.json"
# The target mean and SD come from the lot's first control cards, as a lab sets up a Levey–Jennings chart;
# until there are this many the lot is being established and nothing is judged.
BASELINE_N = 10


@dataclass(frozen=True)
class ControlReading:
    at: str  # RFC 3339
    tc: float


@dataclass(frozen=True)
class Judged:
    reading: ControlReading
    z: float | None  # SDs from the target mean; None while the baseline is being established
    rule: str | None  # "1-3s" (reject) | "2-2s" (warn) | None
    baseline: bool


@dataclass(frozen=True)
class QCState:
    lot: str
    mean: float | None
    sd: float | None
    judged: list[Judged]

    @property
    def latest(self) -> Judged | None:
        return self.judged[-1] if self.judged else None

    @property
    def blocked(self) -> str | None:
        """Why the lot may not be used, or None. Like a failed control card: a rejected latest control blocks the
        lot until a fresh control card reads in control."""
        j = self.latest
        if j is None or j.rule != "1-3s":
            return None
        return (f"lot {self.lot} blocked by QC: control card at {j.reading.at} read T/C {j.reading.tc:.3f}, "
                f"{j.z:+.1f} SD from the target {self.mean:.3f} (Westgard 1-3s); run a fresh control card")

    @property
    def warning(self) -> str | None:
        j = self.latest
        if j is None or j.rule != "2-2s":
            return None
        return f"lot {self.lot}: two control cards in a row beyond 2 SD on the same side (Westgard 2-2s)"


def westgard(readings: list[ControlReading], lot: str = "", baseline_n: int = BASELINE_N) -> QCState:
    """Judge each control reading after the baseline against the baseline's mean and SD, in time order."""
    ordered = sorted(readings, key=lambda r: _when(r.at))
    if len(ordered) < baseline_n:
        return QCState(lot, None, None, [Judged(r, None, None, True) for r in ordered])
    base = [r.tc for r in ordered[:baseline_n]]
    mean = sum(base) / len(base)
    sd = math.sqrt(sum((v - mean) ** 2 for v in base) / (len(base) - 1))
    sd = max(sd, 1e-6)
    out = [Judged(r, (r.tc - mean) / sd, None, True) for r in ordered[:baseline_n]]
    prev_z: float | None = None
    for r in ordered[baseline_n:]:
        z = (r.tc - mean) / sd
        rule = None
        if abs(z) > 3:
            rule = "1-3s"
        elif prev_z is not None and abs(z) > 2 and abs(prev_z) > 2 and (z > 0) == (prev_z > 0):
            rule = "2-2s"
        out.append(Judged(r, z, rule, False))
        prev_z = z
    return QCState(lot, mean, sd, out)


def _when(at: str) -> datetime:
    return datetime.fromisoformat(at.replace("Z", "+00:00"))


class QCStore:
    """Control readings per lot, in the same atomic TinyDB file format as the calibrations."""

    def __init__(self, home_root: Path):
        self.path = Path(home_root) / "calib" / QC_FILE
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = TinyDB(self.path, storage=AtomicJSONStorage)

    def add(self, lot: str, tc: float, at: str | None = None) -> ControlReading:
        if not lot or not isinstance(lot, str):
            raise QCError("a control reading needs its lot")
        if not isinstance(tc, int | float) or not math.isfinite(tc) or not 0 <= tc < 10:
            raise QCError(f"control T/C {tc!r} outside 0..10")
        at = at or now_rfc3339()
        try:
            _when(at)
        except ValueError:
            raise QCError(f"time {at!r} is not RFC 3339 (e.g. 2026-12-01T08:00:00Z)") from None
        self._db.insert({"lot": lot, "tc": float(tc), "at": at})
        return ControlReading(at, float(tc))

    def readings(self, lot: str) -> list[ControlReading]:
        return [ControlReading(d["at"], float(d["tc"])) for d in self._db.search(Query().lot == lot)]

    def lots(self) -> list[str]:
        return sorted({d["lot"] for d in self._db.all()})

    def state(self, lot: str) -> QCState:
        return westgard(self.readings(lot), lot)

    def close(self) -> None:
        self._db.close()


def lot_blocked(home_root: Path, lot: str | None) -> str | None:
    """For the daemon: why samples on this lot are refused, or None. Read fresh each time, so a control card
    added with `calib qc add` takes effect without a restart. An unreadable QC file blocks: in control cannot
    be shown."""
    if not lot:
        return None
    try:
        store = QCStore(home_root)
        try:
            return store.state(lot).blocked
        finally:
            store.close()
    except (CalibrationError, QCError, OSError, ValueError, KeyError, TypeError) as exc:
        return f"lot {lot}: QC record unreadable ({exc}); fix or restore {Path(home_root) / 'calib' / QC_FILE}"
