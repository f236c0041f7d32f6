# The cassette lot in use per strip type (`station lot set`): an atomic JSON file with its history, and expiry.
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import date
from pathlib import Path

from station.errors import LotError, StationError
from station.host.files import atomic_write
from station.protocol.wire import now_rfc3339

LOTS_FILE = "lots.json"
# Short enough that "qc:<strip type>:<lot>:<control>" fits the record's 128-character sample id.
LOT_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,39}\Z")


@dataclass(frozen=True)
class Lot:
    strip_type: str
    lot: str
    expires: str | None  # YYYY-MM-DD, the last day the lot may be used
    set_at: str

    def expired_on(self, today: date) -> bool:
        return self.expires is not None and today > date.fromisoformat(self.expires)


def lots_path(home_root: Path) -> Path:
    return Path(home_root) / "calib" / LOTS_FILE


def check_lot(lot: str, expires: str | None) -> None:
    if not isinstance(lot, str) or not LOT_RE.match(lot):
        raise LotError(f"lot {str(lot)[:60]!r}: 1-40 letters, digits, '.', '_' or '-', starting with a letter "
                       "or digit (e.g. L2026-12)")
    if expires is not None:
        try:
            if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", expires):
                raise ValueError
            date.fromisoformat(expires)
        except ValueError:
            raise LotError(f"--expires {expires!r}: expected a date YYYY-MM-DD, e.g. 2027-03-31") from None


def _load(path: Path) -> dict:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {"current": {}, "history": []}
    except OSError as exc:
        raise LotError(f"{path}: cannot read the lot file ({exc.strerror or exc})") from None
    try:
        data = json.loads(text)
        if not (isinstance(data, dict) and isinstance(data.get("current"), dict)
                and isinstance(data.get("history"), list)):
            raise ValueError("not {current: {...}, history: [...]}")
        for name, d in data["current"].items():
            check_lot(d["lot"], d.get("expires"))
            if not isinstance(d["set_at"], str) or not isinstance(name, str):
                raise ValueError(f"entry {name!r} malformed")
    except (ValueError, KeyError, TypeError, AttributeError, LotError, RecursionError) as exc:
        raise LotError(f"{path}: damaged lot file ({str(exc)[:120]}); set the lots again with `station lot set`"
                       ) from None
    return data


def current(home_root: Path) -> dict[str, Lot]:
    """Strip type -> the lot in use. Read fresh by the daemon, so `station lot set` needs no restart."""
    data = _load(lots_path(home_root))
    return {name: Lot(name, d["lot"], d.get("expires"), d["set_at"]) for name, d in data["current"].items()}


def history(home_root: Path) -> list[dict]:
    return list(_load(lots_path(home_root))["history"])


def set_lot(home_root: Path, strip_type: str, lot: str | None, expires: str | None = None) -> Lot | None:
    """Put `lot` in use for `strip_type` (None: no lot, so no QC gate); every change is kept in the history."""
    if lot is not None:
        check_lot(lot, expires)
    path = lots_path(home_root)
    data = _load(path)
    at = now_rfc3339()
    if lot is None:
        data["current"].pop(strip_type, None)
    else:
        data["current"][strip_type] = {"lot": lot, "expires": expires, "set_at": at}
    data["history"].append({"strip_type": strip_type, "lot": lot, "expires": expires, "at": at})
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        atomic_write(path, json.dumps(data, indent=1, sort_keys=True, ensure_ascii=False).encode("utf-8"))
    except StationError as exc:
        raise LotError(str(exc)) from None
    return None if lot is None else Lot(strip_type, lot, expires, at)


def expiry_refusal(lot: Lot, today: date, clock_synced: bool) -> str | None:
    """An expired lot is refused. An unsynced clock is no reason alone: a Pi without an RTC restarts from the
    time it last saved, which is behind the true time, so a date past the expiry is past it in truth too."""
    if not lot.expired_on(today):
        return None
    clock = "" if clock_synced else " (by this station's clock, which is NOT synced)"
    return (f"lot {lot.lot} of {lot.strip_type} expired on {lot.expires}; today is {today.isoformat()}{clock}: "
            f"use a fresh lot and set it with `station lot set {lot.strip_type} LOT --expires YYYY-MM-DD`")
