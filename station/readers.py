# The [[readers]] config tables: one serial instrument each; strict, with file:line errors like config.py.
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from station.errors import ConfigError

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
_KEYS = ("name", "dialect", "port", "baud", "strip_type", "analyte", "items")
BAUDS = (1200, 2400, 4800, 9600, 19200, 38400, 57600, 115200, 230400)


@dataclass(frozen=True)
class ReaderConfig:
    name: str  # the instrument's name in records and status, e.g. "gold-1"
    dialect: str  # drivers.reader.dialects name
    port: str  # normally /dev/serial/by-id/…; pyserial URLs work too
    baud: int  # the sheet's default when not given
    strip_type: str = ""  # the record's strip.type; default: the dialect name
    analyte: str = ""  # analyte when the instrument names no item (enzyme-print); default per dialect
    items: dict[str, str] = field(default_factory=dict)  # item code → analyte; unknown codes kept as sent


def _nth_line(text: str, index: int, key: str) -> int | None:
    """The line of key in the index-th [[readers]] table (or of its header), for the error message."""
    lines = text.splitlines()
    headers = [i for i, ln in enumerate(lines) if re.match(r"^\s*\[\[\s*readers\s*\]\]", ln)]
    if index >= len(headers):
        return None
    start = headers[index]
    end = next((i for i, ln in enumerate(lines) if i > start and re.match(r"^\s*\[", ln)), len(lines))
    pat = re.compile(rf"^\s*{re.escape(key)}\s*=")
    return next((i + 1 for i in range(start, end) if pat.match(lines[i])), start + 1)


def parse_readers(path: str, raw: Any, text: str) -> tuple[ReaderConfig, ...]:
    """raw is data.get("readers"); text is the file, so that each error names its line."""
    from drivers.reader import dialects

    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise ConfigError(path, "readers", "must be an array of tables: [[readers]]")
    out: list[ReaderConfig] = []
    for i, t in enumerate(raw):
        where = f"readers[{i}]"

        def line_of(_table: str, key: str, i: int = i) -> int | None:
            return _nth_line(text, i, key)

        if not isinstance(t, dict):
            raise ConfigError(path, where, "must be a table")
        for key in t:
            if key not in _KEYS:
                raise ConfigError(path, f"{where}.{key}", f"unknown key; allowed: {', '.join(_KEYS)}",
                                  line_of("readers", key))
        for key in ("name", "dialect", "port"):
            if not isinstance(t.get(key), str) or not t[key]:
                raise ConfigError(path, f"{where}.{key}", "is required (text)", line_of("readers", key))
        if not _NAME.match(t["name"]):
            raise ConfigError(path, f"{where}.name", f"{t['name']!r} must be 1-63 letters, digits, '-', '_' or '.'",
                              line_of("readers", "name"))
        if t["name"] in {r.name for r in out}:
            raise ConfigError(path, f"{where}.name", f"{t['name']!r} is used by another [[readers]] table",
                              line_of("readers", "name"))
        if t["dialect"] not in dialects.names():
            raise ConfigError(path, f"{where}.dialect", f"{t['dialect']!r} unknown; known: "
                              f"{', '.join(dialects.names())}", line_of("readers", "dialect"))
        baud = t.get("baud", dialects.get(t["dialect"]).baud)
        if isinstance(baud, bool) or baud not in BAUDS:
            raise ConfigError(path, f"{where}.baud", f"{baud!r} not allowed; one of {', '.join(map(str, BAUDS))}",
                              line_of("readers", "baud"))
        items = t.get("items", {})
        if not isinstance(items, dict) or not all(isinstance(k, str) and isinstance(v, str) and v
                                                  for k, v in items.items()):
            raise ConfigError(path, f"{where}.items", 'must be a table of item code = "analyte name"',
                              line_of("readers", "items"))
        for key in ("strip_type", "analyte"):
            if not isinstance(t.get(key, ""), str) or len(t.get(key, "")) > 64:
                raise ConfigError(path, f"{where}.{key}", "must be text of at most 64 characters",
                                  line_of("readers", key))
        out.append(ReaderConfig(t["name"], t["dialect"], t["port"], baud, t.get("strip_type", ""),
                                t.get("analyte", ""), dict(items)))
    return tuple(out)


def parse_reader_arg(text: str) -> tuple[str, str, int | None]:
    """`--reader DIALECT:PORT[@BAUD]` → (dialect, port, baud or None); pyserial URLs keep their colons."""
    dialect, sep, rest = text.partition(":")
    if not sep or not rest:
        raise ConfigError("--reader", text, "must be DIALECT:PORT[@BAUD], e.g. gold-csv:/dev/serial/by-id/usb-…")
    port, at, baud = rest.rpartition("@") if "@" in rest else (rest, "", "")
    if at and not baud.isdigit():
        raise ConfigError("--reader", text, f"baud {baud!r} is not a number")
    return dialect, port, int(baud) if at else None
