# Strict TOML station config → frozen dataclasses; unknown keys and out-of-range values name file, line and limits.
from __future__ import annotations

import dataclasses
import math
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from drivers.registry import names as driver_names
from station.errors import ConfigError
from station.scans import ScannerConfig

CONFIG_NAME = "station.toml"
_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")


def _bounds(lo: float | None = None, hi: float | None = None, choices: tuple = (), doc: str = "",
            required: bool = False) -> dict:
    # required: a key whose default would silently change behaviour (offline, dead button, no incubation),
    # so a file cut short before it must be refused rather than filled in.
    return {"lo": lo, "hi": hi, "choices": choices, "doc": doc, "required": required}


_REQ = {"required": True}
MAX_SHOWN = 60  # an error quotes at most this much of a value: a pasted megabyte must not fill the log


def _clip(name: str) -> str:
    return name if len(name) <= MAX_SHOWN else f"{name[:MAX_SHOWN]}…"


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= MAX_SHOWN else f"{text[:MAX_SHOWN]}… ({len(text)} characters)"


@dataclass(frozen=True)
class StationIdentity:
    id: str = field(default="", metadata=_bounds(doc="station id, e.g. st-0001", required=True))
    grid: str = field(default="", metadata=_bounds(doc="district/town/village", required=True))
    key_file: str = field(default="keys/station.key", metadata=_bounds(doc="Ed25519 signing key (PEM)"))
    key_serial: int = field(default=1, metadata=_bounds(1, 1_000_000))

    @property
    def station_id(self) -> str:
        return self.id

    @property
    def path(self) -> str:
        return f"{self.grid}/{self.id}"

    @property
    def kid(self) -> str:
        return f"{self.id}/{self.key_serial}"


@dataclass(frozen=True)
class BrokerConfig:
    url: str = field(default="", metadata=_bounds(doc='mqtt://HOST:PORT or mqtts://HOST:PORT; "" = offline',
                                                 required=True))
    ca_file: str = ""
    cert_file: str = ""
    key_file: str = ""
    keepalive_s: int = field(default=30, metadata=_bounds(5, 600))
    max_payload_bytes: int = field(default=131072, metadata=_bounds(4096, 250_000))
    client_id: str = ""
    checkpoint_every: int = field(default=50, metadata=_bounds(1, 100_000))


@dataclass(frozen=True)
class TownConfig:
    trust_key: str = field(default="trust/town.jwk", metadata=_bounds(doc="town public key (JWK) for acks/commands"))


@dataclass(frozen=True)
class CameraConfig:
    # The real camera unless the simulation is asked for by name (gpiozero #600 in reverse).
    driver: str = field(default="v4l2", metadata=_bounds(choices=driver_names("camera"), required=True))
    folder: str = field(default="sim-images", metadata=_bounds(doc="photographs the simulated camera serves"))
    device: str = field(default="/dev/video0", metadata=_bounds(doc="V4L2 device path or index"))
    width: int = field(default=1640, metadata=_bounds(320, 4656))
    height: int = field(default=1232, metadata=_bounds(240, 3496))
    warmup_frames: int = field(default=5, metadata=_bounds(0, 60))
    jpeg_quality: int = field(default=92, metadata=_bounds(75, 100))
    # picamera2 only: fixed for the station's light box, so photographs compare (docs/pi.md, "Camera settings").
    exposure_us: int = field(default=10000, metadata=_bounds(100, 1_000_000))
    analogue_gain: float = field(default=1.0, metadata=_bounds(1.0, 16.0))
    red_gain: float = field(default=1.6, metadata=_bounds(0.1, 8.0, doc="white balance: red colour gain"))
    blue_gain: float = field(default=1.9, metadata=_bounds(0.1, 8.0, doc="white balance: blue colour gain"))
    lens_position: float = field(default=6.0, metadata=_bounds(0.0, 15.0, doc="focus in dioptres (1/m)"))


@dataclass(frozen=True)
class GpioConfig:
    pin_factory: str = field(default="", metadata=_bounds(choices=("mock", "lgpio", "rpigpio", "native"), doc=(
        'unset: gpiozero\'s own default; $GPIOZERO_PIN_FACTORY wins when set; "mock" simulates'), required=True))
    button_pin: int = field(default=17, metadata=_bounds(0, 27))
    green_led_pin: int = field(default=22, metadata=_bounds(0, 27))
    amber_led_pin: int = field(default=23, metadata=_bounds(0, 27))
    red_led_pin: int = field(default=27, metadata=_bounds(0, 27))
    buzzer_pin: int = field(default=24, metadata=_bounds(0, 27))
    debounce_ms: int = field(default=50, metadata=_bounds(0, 1000))


@dataclass(frozen=True)
class AssayConfig:
    strip_type: str = field(default="pesticide-generic", metadata=_bounds(doc="name in the strip-type catalog",
                                                                          required=True))
    wait_incubation: bool = field(default=False, metadata=_REQ)
    retakes: int = field(default=1, metadata=_bounds(0, 5, doc="extra photographs when a gate asks for a retake"))


@dataclass(frozen=True)
class StorageConfig:
    warn_pct: float = field(default=80.0, metadata=_bounds(10, 99))
    refuse_pct: float = field(default=95.0, metadata=_bounds(10, 99.9, required=True))


@dataclass(frozen=True)
class TrayConfig:
    # One slot is today's station: every cassette in view is one press. More slots split the photograph into
    # equal regions along its long side, slot 1 on the left, each with its own incubation deadline.
    slots: int = field(default=1, metadata=_bounds(1, 8, doc="tray positions, each with its own timer"))
    incubation_s: int = field(default=-1, metadata=_bounds(-1, 7200, doc=(
        "-1: each strip type's own incubation_s; otherwise this for every strip type (training and tests)")))


@dataclass(frozen=True)
class PrinterConfig:
    device: str = field(default="", metadata=_bounds(doc='"" = no printer; escpos-serial:PORT[@BAUD] | '
                                                     'escpos-usb:VID:PID | escpos-file:PATH | fake:PATH'))
    width_dots: int = field(default=384, metadata=_bounds(choices=(384, 576), doc="58 mm paper: 384; 80 mm: 576"))


@dataclass(frozen=True)
class ReceiptConfig:
    verify_url: str = field(default="", metadata=_bounds(doc="the town's receipt page, e.g. https://town.example/r"))
    operator: str = field(default="", metadata=_bounds(doc="name printed as 检测员"))
    certificate: bool = True  # print the 承诺达标合格证 prefill when the rules allow it


_TABLES: dict[str, type] = {
    "station": StationIdentity,
    "broker": BrokerConfig,
    "town": TownConfig,
    "camera": CameraConfig,
    "gpio": GpioConfig,
    "assay": AssayConfig,
    "storage": StorageConfig,
}
# Tables a config written before them may lack: their defaults are exactly the station as it was.
_OPTIONAL_TABLES: dict[str, type] = {"tray": TrayConfig, "printer": PrinterConfig, "receipt": ReceiptConfig}

_OPTIONAL = ("strip_types", "readers", "scanner")  # parsed apart (lists, or a table of its own parser)


@dataclass(frozen=True)
class StationConfig:
    home: Path
    source: Path
    station: StationIdentity
    broker: BrokerConfig
    town: TownConfig
    camera: CameraConfig
    gpio: GpioConfig
    assay: AssayConfig
    storage: StorageConfig
    tray: TrayConfig = TrayConfig()
    strip_types: dict = field(default_factory=dict)
    readers: tuple = ()  # station.readers.ReaderConfig, one per [[readers]] table
    scanner: ScannerConfig = field(default_factory=ScannerConfig)  # [scanner] is optional: none when absent
    printer: PrinterConfig = field(default_factory=PrinterConfig)
    receipt: ReceiptConfig = field(default_factory=ReceiptConfig)

    def resolve(self, path: str) -> Path:
        """Config paths are relative to the station home."""
        p = Path(path).expanduser()
        return p if p.is_absolute() else self.home / p

    @property
    def strip_type(self):
        return self.strip_types[self.assay.strip_type]


def _line_of(text: str, table: str | None, key: str) -> int | None:
    """tomllib keeps no positions; find the line so the operator can go straight to it."""
    lines = text.splitlines()
    start = 0
    if table:
        header = re.compile(rf"^\s*\[\[?\s*{re.escape(table)}\s*\]\]?\s*(#.*)?$")
        for i, line in enumerate(lines):
            if header.match(line):
                start = i
                if not key:
                    return i + 1
                break
    pat = re.compile(rf"^\s*\"?{re.escape(key)}\"?\s*=")
    for i in range(start, len(lines)):
        if pat.match(lines[i]):
            return i + 1
    return None


def _check_value(path: str, text: str, table: str, f: dataclasses.Field, value: Any) -> Any:
    key = f"{table}.{f.name}"
    line = _line_of(text, table, f.name)
    want = f.type if isinstance(f.type, type) else {"str": str, "int": int, "float": float, "bool": bool}[f.type]
    if want is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, want) or (want is int and isinstance(value, bool)):
        raise ConfigError(path, key, f"must be {want.__name__}, got {type(value).__name__} {_show(value)}", line)
    if want is float and not math.isfinite(value):
        # nan compares false with every bound, so it would slip through the range check below.
        raise ConfigError(path, key, f"{value} is not a finite number", line)
    meta = f.metadata
    if meta.get("choices") and value not in meta["choices"]:
        raise ConfigError(path, key, f"{_show(value)} not allowed; one of {', '.join(map(str, meta['choices']))}", line)
    lo, hi = meta.get("lo"), meta.get("hi")
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        raise ConfigError(path, key, f"{value} out of range {lo}..{hi}", line)
    return value


def _build(path: str, text: str, table: str, cls: type, data: Any) -> Any:
    if not isinstance(data, dict):
        raise ConfigError(path, table, "must be a table, e.g. [" + table + "]", _line_of(text, None, table))
    known = {f.name: f for f in dataclasses.fields(cls)}
    for key in data:
        if key not in known:
            raise ConfigError(path, f"{table}.{_clip(key)}", f"unknown key; allowed: "
                              f"{', '.join(known)}", _line_of(text, table, key))
    missing = [k for k, f in known.items() if f.metadata.get("required") and k not in data]
    if missing:
        raise ConfigError(path, table, f"missing required key{'s' * (len(missing) > 1)} {', '.join(missing)} "
                          "(was the file cut short? `station init` writes a complete one)",
                          _line_of(text, table, ""))
    return cls(**{k: _check_value(path, text, table, known[k], v) for k, v in data.items()})


def _check_identity(path: str, text: str, ident: StationIdentity) -> None:
    if not _ID_RE.match(ident.id):
        raise ConfigError(path, "station.id", f"{_show(ident.id)} must be 1-63 letters, digits, '-', '_' or '.'",
                          _line_of(text, "station", "id"))
    parts = ident.grid.split("/")
    if len(parts) != 3 or not all(_ID_RE.match(p) for p in parts):
        raise ConfigError(path, "station.grid", f"{_show(ident.grid)} must be district/town/village",
                          _line_of(text, "station", "grid"))


def _check_printer(path: str, text: str, parts: dict) -> None:
    from drivers.errors import Unsupported
    from drivers.printer.base import parse_spec  # pure: no printer library is imported

    printer, receipt = parts.get("printer"), parts.get("receipt")
    if printer and printer.device:
        try:
            parse_spec(printer.device)
        except Unsupported as exc:
            raise ConfigError(path, "printer.device", exc.message, _line_of(text, "printer", "device")) from None
    if receipt and receipt.verify_url and not re.fullmatch(r"https?://[^\s?#]+", receipt.verify_url):
        raise ConfigError(path, "receipt.verify_url", f"{_show(receipt.verify_url)} must be an http(s) URL without "
                          "? or #, e.g. https://town.example/r", _line_of(text, "receipt", "verify_url"))


def parse_config(text: str, *, path: str = CONFIG_NAME, home: Path | None = None) -> StationConfig:
    from station.striptypes import BUILTIN_STRIP_TYPES, strip_type_from_dict

    # Windows Notepad saves UTF-8 with a byte-order mark, which tomllib refuses; it carries no meaning here.
    text = text.removeprefix("\ufeff")
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        m = re.search(r"line (\d+)", str(exc))
        raise ConfigError(path, "", f"not valid TOML: {exc}", int(m.group(1)) if m else None) from None
    for key in data:
        if key not in _TABLES and key not in _OPTIONAL_TABLES and key not in _OPTIONAL:
            allowed = ", ".join([*_TABLES, *_OPTIONAL_TABLES, *_OPTIONAL])
            raise ConfigError(path, _clip(key), f"unknown table; allowed: {allowed}",
                              _line_of(text, None, key) or _line_of(text, key, ""))
    absent = [name for name in _TABLES if name not in data]
    if absent:
        raise ConfigError(path, "", f"missing table{'s' * (len(absent) > 1)} {', '.join(f'[{t}]' for t in absent)}"
                          " (was the file cut short? `station init` writes a complete one)")
    parts = {name: _build(path, text, name, cls, data[name]) for name, cls in _TABLES.items()}
    parts |= {name: _build(path, text, name, cls, data[name]) for name, cls in _OPTIONAL_TABLES.items()
              if name in data}
    _check_printer(path, text, parts)
    _check_identity(path, text, parts["station"])
    storage = parts["storage"]
    if storage.warn_pct >= storage.refuse_pct:
        raise ConfigError(path, "storage.warn_pct", f"{storage.warn_pct} must be below refuse_pct "
                          f"{storage.refuse_pct}", _line_of(text, "storage", "warn_pct"))
    catalog = dict(BUILTIN_STRIP_TYPES)
    raw_types = data.get("strip_types", [])
    if not isinstance(raw_types, list):
        raise ConfigError(path, "strip_types", "must be an array of tables: [[strip_types]]")
    for i, raw in enumerate(raw_types):
        where = f"{path}: strip_types[{i}]"
        try:
            st = strip_type_from_dict(raw, where)
        except ValueError as exc:
            raise ConfigError(path, f"strip_types[{i}]", str(exc).removeprefix(where + ": ")) from None
        catalog[st.name] = st
    if parts["assay"].strip_type not in catalog:
        raise ConfigError(path, "assay.strip_type", f"{_show(parts['assay'].strip_type)} not in the catalog; known: "
                          f"{', '.join(sorted(catalog))}", _line_of(text, "assay", "strip_type"))
    from station.readers import parse_readers
    from station.scans import parse_scanner

    readers = parse_readers(path, data.get("readers"), text)
    scanner = parse_scanner(path, data.get("scanner"), text)
    home = home if home is not None else Path(path).resolve().parent
    return StationConfig(home=home, source=Path(path), strip_types=catalog, readers=readers, scanner=scanner,
                         **parts)


def load_config(home: Path) -> StationConfig:
    path = Path(home) / CONFIG_NAME
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(str(path), "", "no config file here; create one with `station init`") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(str(path), "", f"cannot read: {exc}") from None
    return parse_config(text, path=str(path), home=Path(home).resolve())
