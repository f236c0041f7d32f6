# Calibration store: TinyDB document set behind an atomic storage (temp file, fsync, rename, fsync dir).
from __future__ import annotations

import json
import uuid
from dataclasses import asdict, dataclass
from dataclasses import fields as dataclass_fields
from pathlib import Path

from tinydb import TinyDB
from tinydb.storages import Storage

from station.errors import CalibrationError
from station.host.files import atomic_write
from station.protocol.wire import now_rfc3339

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
    id: str
    strip_type: str
    cutoff: float
    lot: str | None
    by: str
    note: str
    created_at: str


class CalibrationStore:
    def __init__(self, home_root: Path):
        self.path = Path(home_root) / "calib" / CALIB_FILE
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = TinyDB(self.path, storage=AtomicJSONStorage)

    def add(self, strip_type: str, cutoff: float, *, lot: str | None, by: str, note: str = "") -> Calibration:
        if isinstance(cutoff, bool) or not 0 < cutoff < 10:
            raise CalibrationError(f"cutoff {cutoff} outside 0..10 (a T/C ratio)")
        cal = Calibration(id=uuid.uuid4().hex[:12], strip_type=strip_type, cutoff=float(cutoff), lot=lot, by=by,
                          note=note, created_at=now_rfc3339())
        self._db.insert(asdict(cal))
        return cal

    def history(self, strip_type: str | None = None) -> list[Calibration]:
        # Every document is checked, not only the matching ones: a damaged file is damaged for every strip type.
        found = [self._calibration(d) for d in self._db.all()]
        return found if strip_type is None else [c for c in found if c.strip_type == strip_type]

    def _calibration(self, doc: dict) -> Calibration:
        """One stored calibration, checked field by field: a hand-edited file must not pass `true` as cutoff 1."""
        where = f"{self.path}: calibration {str(doc.get('id'))[:40]!r}"
        fields = {f.name: f.type for f in dataclass_fields(Calibration)}
        if set(doc) != set(fields):
            raise CalibrationError(f"{where}: fields {sorted(map(str, doc))[:10]}, expected {sorted(fields)}")
        for name in ("id", "strip_type", "by", "note", "created_at"):
            if not isinstance(doc[name], str):
                raise CalibrationError(f"{where}: {name} must be text, got {type(doc[name]).__name__}")
        if doc["lot"] is not None and not isinstance(doc["lot"], str):
            raise CalibrationError(f"{where}: lot must be text or null, got {type(doc['lot']).__name__}")
        cutoff = doc["cutoff"]
        if isinstance(cutoff, bool) or not isinstance(cutoff, int | float) or not 0 < cutoff < 10:
            raise CalibrationError(f"{where}: cutoff {str(cutoff)[:40]} must be a number in 0..10 (a T/C ratio)")
        return Calibration(**{**doc, "cutoff": float(cutoff)})

    def current(self, strip_type: str) -> Calibration | None:
        """The newest calibration wins; history is kept because past results cite calibrations by id."""
        found = self.history(strip_type)
        return found[-1] if found else None

    def close(self) -> None:
        self._db.close()


def calibrated_catalog(catalog: dict, home_root: Path) -> tuple[dict, dict[str, str]]:
    """The strip-type catalog with each type's current calibrated cutoff, and which calibration id applied."""
    from dataclasses import replace

    store = CalibrationStore(home_root)
    try:
        out, ids = dict(catalog), {}
        for name, st in catalog.items():
            cal = store.current(name)
            if cal:
                out[name] = replace(st, cutoff=cal.cutoff)
                ids[name] = cal.id
        return out, ids
    finally:
        store.close()
