# Scanned codes: the [scanner] config table, and whether a code names a sample or a producer.
"""A code matching one of `[scanner] producer_patterns` (re.search) is a producer information card
(主体信息卡) and sets `sample.producer`; any other code is the sample's id. A pattern with a group gives
the producer id as its first group, so a card whose QR holds a URL can yield just the id in it."""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from station.errors import ConfigError

# Cards printed with the county's producer-id prefix (ZT…). An enterprise's 18-character unified social credit
# code (统一社会信用代码, GB 32100) is not a default: an 18-digit sample-sheet number would match it too;
# docs/technician.md gives the pattern for stations whose cards carry it.
DEFAULT_PRODUCER_PATTERNS = (r"^ZT[0-9A-Za-z-]{2,}$",)
_KEYS = ("device", "producer_patterns")
MAX_PATTERNS = 32


@dataclass(frozen=True)
class ScannerConfig:
    device: str = ""  # serial:PORT[@BAUD] | hid:EVDEV_PATH | fake:FILE | "" or "none"
    producer_patterns: tuple[str, ...] = DEFAULT_PRODUCER_PATTERNS

    @property
    def driver(self) -> str:
        return self.spec[0]

    @property
    def target(self) -> str:
        return self.spec[1]

    @property
    def spec(self) -> tuple[str, str]:
        from drivers.registry import names
        from drivers.scanner.base import split_spec

        return split_spec(self.device, names("scanner"))


def classify_code(code: str, patterns: tuple[str, ...] | list[str]) -> tuple[str, str]:
    """("producer", id) when code matches a producer pattern, else ("sample", code)."""
    for pattern in patterns:
        m = re.search(pattern, code)
        if m:
            return "producer", (m.group(1) if m.re.groups and m.group(1) else code)
    return "sample", code


def accept_scan(code: str, patterns: tuple[str, ...] | list[str]) -> tuple[str, str] | str:
    """classify_code's answer, or why the value cannot go into a record (the sample-id rules of record.py)."""
    from station.record import bad_sample_id

    kind, value = classify_code(code, patterns)
    problem = bad_sample_id(value)
    return f"{kind} {value[:40]!r}: {problem}" if problem else (kind, value)


def parse_scanner(path: str, raw: Any, text: str) -> ScannerConfig:
    """raw is data.get("scanner"); absent means no scanner, so homes made before it keep loading."""
    from drivers.errors import Unsupported
    from station.config import _line_of, _show

    if raw is None:
        return ScannerConfig()
    if not isinstance(raw, dict):
        raise ConfigError(path, "scanner", "must be a table, e.g. [scanner]", _line_of(text, None, "scanner"))
    for key in raw:
        if key not in _KEYS:
            raise ConfigError(path, f"scanner.{key[:60]}", f"unknown key; allowed: {', '.join(_KEYS)}",
                              _line_of(text, "scanner", key))
    device = raw.get("device", "")
    line = _line_of(text, "scanner", "device")
    if not isinstance(device, str):
        raise ConfigError(path, "scanner.device", f"must be str, got {type(device).__name__} {_show(device)}", line)
    cfg = ScannerConfig(device=device)
    try:
        cfg.spec  # noqa: B018 - checked now, so a typo stops the start, not the first scan
    except Unsupported as exc:
        raise ConfigError(path, "scanner.device", exc.message, line) from None
    patterns = raw.get("producer_patterns", list(DEFAULT_PRODUCER_PATTERNS))
    line = _line_of(text, "scanner", "producer_patterns")
    if not isinstance(patterns, list) or not all(isinstance(p, str) for p in patterns) \
            or len(patterns) > MAX_PATTERNS:
        raise ConfigError(path, "scanner.producer_patterns", f"must be a list of at most {MAX_PATTERNS} regular "
                          f"expressions (strings), got {_show(patterns)}", line)
    for p in patterns:
        try:
            re.compile(p)
        except re.error as exc:
            raise ConfigError(path, "scanner.producer_patterns", f"{_show(p)} is not a valid regular expression: "
                              f"{exc}", line) from None
    return ScannerConfig(device=device, producer_patterns=tuple(patterns))
