# The learned strip-type catalog: TOML files of [[strip_types]], and the station's own store with history.
from __future__ import annotations

import getpass
import json
import math
import tomllib
from dataclasses import fields
from pathlib import Path
from typing import Any

from station.errors import CalibrationError
from station.host.files import atomic_write
from station.protocol.wire import now_rfc3339
from station.striptypes import StripType, strip_type_from_dict

CATALOG_FILE = "catalog.json"   # in <home>/calib/, beside calibration.json; the hand-written config stays untouched


def strip_type_to_dict(st: StripType) -> dict[str, Any]:
    """A StripType as the table `strip_type_from_dict` reads back (lines as [name, position] pairs)."""
    d: dict[str, Any] = {}
    for f in fields(StripType):
        v = getattr(st, f.name)
        if f.name == "lines":
            v = [[n, p] for n, p in v]
        elif isinstance(v, tuple):
            v = list(v)
        d[f.name] = v
    return d


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        if isinstance(v, float) and not math.isfinite(v):
            raise ValueError(f"cannot write {v!r} to TOML")
        return repr(float(v)) if isinstance(v, float) else str(int(v))
    if isinstance(v, str):
        # A JSON string is a valid TOML basic string (same escapes), so quotes and backslashes are safe.
        return json.dumps(v, ensure_ascii=False)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    raise ValueError(f"cannot write {type(v).__name__} to TOML")


def dump_strip_types(entries: list[dict[str, Any]]) -> str:
    out = ["# Strip types written by `calib learn`; `station score --catalog THIS_FILE` reads them.", ""]
    for d in entries:
        out.append("[[strip_types]]")
        out += [f"{k} = {_toml_value(v)}" for k, v in d.items()]
        out.append("")
    return "\n".join(out)


def read_toml_entries(path: Path) -> list[dict[str, Any]]:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8-sig"))
    except FileNotFoundError:
        return []
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise CalibrationError(f"{path}: cannot read the strip-type catalog: {exc}") from None
    raw = data.get("strip_types", [])
    if not isinstance(raw, list) or not all(isinstance(d, dict) for d in raw):
        raise CalibrationError(f"{path}: strip_types must be an array of tables: [[strip_types]]")
    return raw


def load_catalog_file(path: str | Path) -> dict[str, StripType]:
    """Strip types of a TOML file; a bad entry is an error naming the file, the entry and the key."""
    path = Path(path)
    if not path.is_file():
        raise CalibrationError(f"{path}: no such catalog file")
    out: dict[str, StripType] = {}
    for i, d in enumerate(read_toml_entries(path)):
        try:
            st = strip_type_from_dict(d, f"{path}: strip_types[{i}]")
        except ValueError as exc:
            raise CalibrationError(str(exc)) from None
        out[st.name] = st
    return out


def write_toml_entry(path: str | Path, st: StripType) -> None:
    """Put st into a TOML catalog file, replacing an entry of the same name and keeping the others."""
    path = Path(path)
    entries = [d for d in read_toml_entries(path) if d.get("name") != st.name]
    entries.append(strip_type_to_dict(st))
    atomic_write(path, dump_strip_types(entries).encode("utf-8"))


class CatalogStore:
    """Learned strip types of a station: every version kept (results cite what they were read with), newest wins."""

    def __init__(self, home_root: Path):
        from tinydb import TinyDB

        from station.decide.calibration import AtomicJSONStorage

        self.path = Path(home_root) / "calib" / CATALOG_FILE
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = TinyDB(self.path, storage=AtomicJSONStorage)

    def add(self, st: StripType, *, by: str | None = None, source: str = "") -> dict[str, Any]:
        doc = {"name": st.name, "entry": strip_type_to_dict(st), "learned_at": now_rfc3339(),
               "by": by or getpass.getuser(), "source": source}
        self._db.insert(doc)
        return doc

    def history(self, name: str | None = None) -> list[dict[str, Any]]:
        docs = self._db.all()
        return [d for d in docs if name is None or d.get("name") == name]

    def current(self) -> dict[str, StripType]:
        out: dict[str, StripType] = {}
        for i, d in enumerate(self._db.all()):
            try:
                st = strip_type_from_dict(d.get("entry"), f"{self.path}: entry {i + 1}")
            except ValueError as exc:
                raise CalibrationError(str(exc)) from None
            out[st.name] = st
        return out

    def close(self) -> None:
        self._db.close()


def station_catalog(config_catalog: dict[str, StripType], home_root: Path) -> dict[str, StripType]:
    """What the daemon reads with: built-ins and the config's [[strip_types]], then learned ones over them."""
    path = Path(home_root) / "calib" / CATALOG_FILE
    if not path.exists():
        return dict(config_catalog)
    store = CatalogStore(home_root)
    try:
        return {**config_catalog, **store.current()}
    finally:
        store.close()


def daemon_catalog(config_catalog: dict[str, StripType], home_root: Path) -> tuple[dict[str, StripType], dict]:
    """The catalog with learned types and current calibrations applied, and the calibration in force for each."""
    from station.decide.calibration import calibrated_catalog

    return calibrated_catalog(station_catalog(config_catalog, home_root), home_root)
