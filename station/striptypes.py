# Strip types: what a cassette looks like and how its lines are read (the `[[strip_types]]` catalog).
from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

FORMATS = ("competitive", "sandwich")
GEOMETRIES = ("nominal", "learned")


@dataclass(frozen=True)
class StripType:
    """One kind of colloidal-gold cassette.

    Line positions are fractions along the result window measured from the sample-well end (0.0) to
    the far end (1.0); the control line C is the farthest one. Geometry is expressed as fractions of
    the cassette: x across its width, y down its length from the far (top) end, so the sample well is
    near y = 1. Line areas are in absorbance x percent of window length ("A·%"), which does not
    depend on the camera's resolution.
    """

    name: str
    analyte: str
    format: str = "competitive"
    lines: tuple[tuple[str, float], ...] = (("T", 0.35), ("C", 0.70))
    cutoff: float = 0.80
    t_threshold: float = 0.25
    incubation_s: int = 600
    # How long after incubation_s a card may still be read: later, its lines have moved on (a competitive T
    # line fades, a sandwich T line keeps darkening) and the reading is no longer a finding about the sample.
    read_window_s: int = 600
    aspect: float = 0.30
    window: tuple[float, float, float, float] = (0.33, 0.24, 0.67, 0.48)
    well: tuple[float, float, float] = (0.50, 0.80, 0.28)
    line_sigma: float = 0.022
    position_tolerance: float = 0.06
    c_min_peak: float = 0.03
    c_min_snr: float = 6.0
    low_signal_peak: float = 0.10
    # "nominal": the geometry is a maker's typical layout, a hint only; "learned": measured on this brand
    # by `calib learn`, so a window or lines seen elsewhere mean a wrong strip type and a retake.
    geometry: str = "nominal"
    description: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        where = f"strip type {self.name!r}"
        if self.format not in FORMATS:
            raise ValueError(f"{where}: format must be one of {', '.join(FORMATS)}, not {self.format!r}")
        if self.geometry not in GEOMETRIES:
            raise ValueError(f"{where}: geometry must be one of {', '.join(GEOMETRIES)}, not {self.geometry!r}")
        names = [n for n, _ in self.lines]
        if "C" not in names:
            raise ValueError(f"{where}: lines must include the control line 'C'")
        if len(set(names)) != len(names):
            raise ValueError(f"{where}: line names must be unique, got {names}")
        if len(names) < 2:
            raise ValueError(f"{where}: lines need C and at least one test line")
        positions = dict(self.lines)
        for n, p in self.lines:
            if not 0.05 <= p <= 0.95:
                raise ValueError(f"{where}: line {n} position {p} outside 0.05..0.95")
        if positions["C"] != max(positions.values()):
            raise ValueError(f"{where}: C must be the line farthest from the sample well")
        ordered = sorted(positions.values())
        gaps = [b - a for a, b in zip(ordered, ordered[1:], strict=False)]
        if min(gaps) < 6 * self.line_sigma:
            raise ValueError(f"{where}: lines closer than 6 line widths cannot be separated")
        x0, y0, x1, y1 = self.window
        if not (0 <= x0 < x1 <= 1 and 0 <= y0 < y1 <= 1):
            raise ValueError(f"{where}: window must be x0 < x1, y0 < y1 inside 0..1, got {self.window}")
        if not 0.1 <= self.aspect <= 0.6:
            raise ValueError(f"{where}: aspect (width/length) {self.aspect} outside 0.1..0.6")
        if not 0 < self.cutoff < 10:
            raise ValueError(f"{where}: cutoff {self.cutoff} outside 0..10")
        if not 0.005 <= self.line_sigma <= 0.08:
            raise ValueError(f"{where}: line_sigma {self.line_sigma} outside 0.005..0.08")
        if not 0 < self.t_threshold:
            raise ValueError(f"{where}: t_threshold must be positive")
        if not 0 <= self.incubation_s <= 7200:
            raise ValueError(f"{where}: incubation_s {self.incubation_s} outside 0..7200")
        if not 1 <= self.read_window_s <= 7200:
            raise ValueError(f"{where}: read_window_s {self.read_window_s} outside 1..7200")

    @property
    def test_lines(self) -> tuple[tuple[str, float], ...]:
        return tuple((n, p) for n, p in self.lines if n != "C")

    @property
    def c_position(self) -> float:
        return dict(self.lines)["C"]


BUILTIN_STRIP_TYPES: dict[str, StripType] = {
    st.name: st
    for st in (
        StripType(
            name="pesticide-generic",
            analyte="imidacloprid",
            description="generic competitive pesticide card (imidacloprid class)",
        ),
        StripType(
            name="clenbuterol",
            analyte="clenbuterol",
            lines=(("T", 0.38), ("C", 0.72)),
            cutoff=0.75,
            incubation_s=300,
            description="veterinary-drug competitive card (beta-agonist, clenbuterol)",
        ),
        StripType(
            name="pesticide-3in1",
            analyte="carbofuran,imidacloprid,carbendazim",
            lines=(("T1", 0.22), ("T2", 0.42), ("T3", 0.62), ("C", 0.84)),
            cutoff=0.80,
            description="3-in-1 competitive card: three test lines and one control line",
        ),
        StripType(
            name="sandwich-generic",
            analyte="generic antigen",
            format="sandwich",
            cutoff=1.0,
            t_threshold=0.25,
            incubation_s=900,
            description="sandwich-format card: a visible T line means positive",
        ),
    )
}

DEFAULT_STRIP_TYPE = "pesticide-generic"


def _coerce_lines(value: Any, where: str) -> tuple[tuple[str, float], ...]:
    # TOML gives either [[name, pos], ...] or [{name=..., position=...}, ...]; accept both.
    if not isinstance(value, (list, tuple)) or not value:
        raise ValueError(f"{where}: lines must be a non-empty list of [name, position] or tables")
    out: list[tuple[str, float]] = []
    for item in value:
        if isinstance(item, dict):
            extra = set(item) - {"name", "position"}
            if extra:
                raise ValueError(f"{where}: lines: unknown key {sorted(extra)[0]!r} (allowed: name, position)")
            name, pos = item.get("name"), item.get("position")
        elif isinstance(item, (list, tuple)) and len(item) == 2:
            name, pos = item
        else:
            raise ValueError(f"{where}: lines: each entry must be [name, position], got {item!r}")
        if not isinstance(name, str) or not isinstance(pos, (int, float)) or isinstance(pos, bool):
            raise ValueError(f"{where}: lines: entry {item!r} needs a string name and a numeric position")
        out.append((name, float(pos)))
    return tuple(out)


def _coerce_tuple(value: Any, n: int, key: str, where: str) -> tuple[float, ...]:
    if not isinstance(value, (list, tuple)) or len(value) != n:
        raise ValueError(f"{where}: {key} must be a list of {n} numbers")
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
        raise ValueError(f"{where}: {key} must contain numbers only")
    return tuple(float(v) for v in value)


def strip_type_from_dict(d: dict[str, Any], where: str) -> StripType:
    """Build a StripType from a config table; unknown keys and bad values raise ValueError naming them."""
    allowed = [f.name for f in fields(StripType)]
    if not isinstance(d, dict):
        raise ValueError(f"{where}: strip type must be a table")
    for key in d:
        if key not in allowed:
            raise ValueError(f"{where}: unknown key {key!r} (allowed: {', '.join(allowed)})")
    for key in ("name", "analyte"):
        if not isinstance(d.get(key), str) or not d[key]:
            raise ValueError(f"{where}: {key} is required and must be a non-empty string")
    kw: dict[str, Any] = {}
    for f in fields(StripType):
        if f.name not in d:
            continue
        v = d[f.name]
        if f.name == "lines":
            v = _coerce_lines(v, where)
        elif f.name == "window":
            v = _coerce_tuple(v, 4, "window", where)
        elif f.name == "well":
            v = _coerce_tuple(v, 3, "well", where)
        elif f.name in ("name", "analyte", "format", "description", "geometry"):
            if not isinstance(v, str):
                raise ValueError(f"{where}: {f.name} must be a string")
        elif f.name in ("incubation_s", "read_window_s"):
            if not isinstance(v, int) or isinstance(v, bool):
                raise ValueError(f"{where}: {f.name} must be an integer number of seconds")
        else:
            if not isinstance(v, (int, float)) or isinstance(v, bool):
                raise ValueError(f"{where}: {f.name} must be a number")
            v = float(v)
        kw[f.name] = v
    try:
        return StripType(**kw)
    except ValueError as exc:
        raise ValueError(f"{where}: {exc}") from None
