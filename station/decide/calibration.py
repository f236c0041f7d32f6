# Calibrations per strip type × lot: an atomic TinyDB store with history, applied to the catalog and cited by results.
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from tinydb import Query, TinyDB
from tinydb.storages import Storage

from station.decide.fourpl import Curve
from station.errors import CalibrationError
from station.host.files import atomic_write
from station.protocol.wire import canonical_json, now_rfc3339

CALIB_FILE = "calibration.json"


class AtomicJSONStorage(Storage):
    """TinyDB rewrites the whole file on each write; a power cut must leave the old or the new file, never half."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def read(self) -> dict | None:
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        try:
            data = json.loads(text) if text.strip() else None
        except (ValueError, RecursionError) as exc:
            raise CalibrationError(f"{self.path}: damaged calibration file ({exc}); restore it from a backup") from None
        # TinyDB's own layout: {table: {doc_id: {...}}}; anything else would crash it far from here.
        if data is not None and not (isinstance(data, dict) and all(
                isinstance(t, dict) and all(k.isdigit() and isinstance(d, dict) for k, d in t.items())
                for t in data.values())):
            raise CalibrationError(f"{self.path}: damaged calibration file (not TinyDB's {{table: {{id: {{...}}}}}} "
                                   "layout); restore it from a backup")
        return data

    def write(self, data: dict) -> None:
        atomic_write(self.path, json.dumps(data, indent=1, sort_keys=True).encode("utf-8"))

    def close(self) -> None:
        pass


@dataclass(frozen=True)
class Calibration:
    """One accepted calibration. Its id is a hash of everything else, so a copy can be checked against it."""

    id: str
    strip_type: str
    cutoff: float
    lot: str | None
    by: str
    reason: str
    created_at: str
    source: str = "typed"  # typed (calib set) | standards (a fitted series)
    unit: str | None = None
    limit: float | None = None  # the legal limit the cutoff was set for, in `unit`
    curve: dict[str, float] | None = None  # 4PL {a, b, c, d} of T/C against concentration
    lod: float | None = None  # concentration at blank mean - 3 SD of T/C
    lod_tc: float | None = None  # that T/C: a reading above it is below the LOD
    top: float | None = None  # highest standard: above it a concentration is extrapolated
    top_tc: float | None = None
    figures: dict[str, Any] = field(default_factory=dict)  # fit statistics, rates, blank mean/SD
    series: dict[str, Any] = field(default_factory=dict)  # the file, its hash and every replicate read

    def body(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("id")
        return d

    @property
    def fitted(self) -> Curve | None:
        return Curve.from_json(self.curve) if self.curve else None


def content_id(body: dict[str, Any]) -> str:
    """64 bits of SHA-256 over the canonical JSON of the calibration: short to cite, checkable by anyone."""
    return hashlib.sha256(canonical_json(body)).hexdigest()[:16]


def make_calibration(**kw: Any) -> Calibration:
    """A new calibration stamped now, its id computed from its content."""
    kw.setdefault("created_at", now_rfc3339())
    cutoff = kw.get("cutoff")
    if isinstance(cutoff, bool) or not isinstance(cutoff, int | float) or not 0 < cutoff < 10:
        raise CalibrationError(f"cutoff {cutoff!r} outside 0..10 (a T/C ratio)")
    draft = Calibration(id="", **kw)
    return replace(draft, id=content_id(draft.body()))


def from_doc(doc: dict[str, Any], where: str = "calibration") -> Calibration:
    """A stored or imported calibration; older stores wrote `note` and a random id, both still read."""
    d = dict(doc)
    if "note" in d:
        d.setdefault("reason", d.pop("note"))
    known = {f.name for f in fields(Calibration)}
    unknown = sorted(set(d) - known)
    if unknown:
        raise CalibrationError(f"{where}: unknown fields {', '.join(unknown)[:200]}")
    # Checked field by field: a hand-edited file must not pass `true` as cutoff 1 or a list as a lot.
    for name in ("id", "strip_type", "by", "reason", "created_at", "source"):
        if name in d and not isinstance(d[name], str):
            raise CalibrationError(f"{where}: {name} must be text, got {type(d[name]).__name__}")
    for name in ("lot", "unit"):
        if d.get(name) is not None and not isinstance(d[name], str):
            raise CalibrationError(f"{where}: {name} must be text or null, got {type(d[name]).__name__}")
    cutoff = d.get("cutoff")
    if isinstance(cutoff, bool) or not isinstance(cutoff, int | float) or not 0 < cutoff < 10:
        raise CalibrationError(f"{where}: cutoff {str(cutoff)[:40]} must be a number in 0..10 (a T/C ratio)")
    for name in ("curve", "figures", "series"):
        if d.get(name) is not None and not isinstance(d[name], dict):
            raise CalibrationError(f"{where}: {name} must be a table, got {type(d[name]).__name__}")
    try:
        return Calibration(**d)
    except TypeError as exc:
        raise CalibrationError(f"{where}: {exc}") from None


def check_id(cal: Calibration, where: str = "calibration") -> None:
    """An imported calibration must hash to its id: an edited cutoff or curve would otherwise pass as the original."""
    if content_id(cal.body()) != cal.id:
        raise CalibrationError(f"{where}: id {cal.id} does not match its content (changed after it was made)")


class CalibrationStore:
    def __init__(self, home_root: Path):
        self.path = Path(home_root) / "calib" / CALIB_FILE
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = TinyDB(self.path, storage=AtomicJSONStorage)

    def add(self, strip_type: str, cutoff: float, *, lot: str | None, by: str, note: str = "") -> Calibration:
        """A typed cutoff (`calib set`): kept for strip types nobody has run standards for yet."""
        return self.accept(make_calibration(strip_type=strip_type, cutoff=float(cutoff), lot=lot, by=by,
                                            reason=note))

    def accept(self, cal: Calibration) -> Calibration:
        """Store it as the newest for its strip type. One insert is one atomic rewrite of the file; the same
        content twice (an import of what is already here) keeps the one copy and its place in history."""
        check_id(cal)
        if not self._db.contains(Query().id == cal.id):
            self._db.insert({"id": cal.id, **cal.body()})
        return cal

    def history(self, strip_type: str | None = None, lot: str | None = None) -> list[Calibration]:
        docs = [from_doc(d, f"{self.path}") for d in self._db.all()]
        return [c for c in docs if (strip_type is None or c.strip_type == strip_type) and (lot is None or c.lot == lot)]

    def get(self, ident: str) -> Calibration:
        """By id or a unique prefix of one, as a technician types it."""
        found = [c for c in self.history() if c.id.startswith(ident)]
        if len(found) != 1:
            what = "no calibration" if not found else f"{len(found)} calibrations"
            raise CalibrationError(f"{what} with id {ident!r} in {self.path}")
        return found[0]

    def current(self, strip_type: str) -> Calibration | None:
        """The newest accepted calibration wins, and its lot is the lot in use; history stays for citations."""
        found = self.history(strip_type)
        return found[-1] if found else None

    def close(self) -> None:
        self._db.close()


def calibrated_catalog(catalog: dict, home_root: Path) -> tuple[dict, dict[str, Calibration]]:
    """The strip-type catalog with each type's current calibrated cutoff, and the calibration that applied."""
    store = CalibrationStore(home_root)
    try:
        out, applied = dict(catalog), {}
        for name, st in catalog.items():
            cal = store.current(name)
            if cal:
                out[name] = replace(st, cutoff=cal.cutoff)
                applied[name] = cal
        return out, applied
    finally:
        store.close()


def record_calibration(cal: Calibration | None, cutoff: float) -> dict[str, Any]:
    """The result record's `calibration`: which one decided the verdict, and for which lot."""
    if cal is None:
        return {"id": None, "cutoff": cutoff}
    out: dict[str, Any] = {"id": cal.id, "cutoff": cutoff, "lot": cal.lot}
    if cal.unit:
        out["unit"] = cal.unit
    return out


def estimate(cal: Calibration | None, tc: float | None) -> dict[str, Any] | None:
    """Semi-quantitative reading from the fitted curve; the verdict still comes from the cutoff alone.

    Below the LOD the concentration is not given (null): the curve is too flat there for a number to mean
    anything. Above the highest standard the number is an extrapolation and flagged as such.
    """
    curve = cal.fitted if cal else None
    if curve is None or tc is None or cal.lod_tc is None or cal.top_tc is None:
        return None
    below = tc >= cal.lod_tc
    above = tc < cal.top_tc
    conc = None if below else curve.conc(float(tc))
    return {"concentration": None if conc is None else float(f"{conc:.4g}"), "unit": cal.unit or "",
            "below_lod": bool(below), "above_range": bool(above), "lod": cal.lod, "range_top": cal.top}
