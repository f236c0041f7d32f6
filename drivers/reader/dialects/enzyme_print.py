# enzyme-print: a one-way GB18030 printer stream; report blocks between separator lines of 20+ '-'.
"""Sheet: ../shared/protocols/enzyme-print.md. The tester never reads, so the session only parses: a
block is a report when it names a report field; a report missing 编号, 抑制率 or 结果, or cut off (no
closing separator before the link drops or goes quiet), is evidence of a fault, never a result."""
from __future__ import annotations

import re
from dataclasses import dataclass

from drivers.reader.base import Fault, Heard, Identity, Reading

ENCODING = "gb18030"
MAX_LINE = 512
MAX_REPORT = 8192  # a real report is ~250 bytes; anything this long is noise, not a report
QUIET_S = 10.0  # a tester prints a whole report in well under a second
_SEP = re.compile(rb"^-{20,}\s*$")
_FIELD = re.compile(r"^\s*([^:：]+?)\s*[:：]\s*(.*?)\s*$")
_VERDICTS = {"阴性": "negative", "阳性": "positive", "可疑": "suspect", "无效": "invalid"}
REPORT_FIELDS = ("编号", "通道", "样品", "样品编号", "抑制率", "结果", "检测时间")
_PCT = re.compile(r"^(-?\d+(?:\.\d+)?)\s*%?$")


def parse_report(lines: list[str], raw: bytes) -> Reading | Fault | None:
    """None: a block that is not a report (a header, a self-test); else the Reading or the Fault it is."""
    fields: dict[str, str] = {}
    extra: dict[str, str] = {}
    for line in lines:
        m = _FIELD.match(line)
        if not m:
            continue  # the title (first line) and any text without a colon
        name, value = m.group(1), m.group(2)
        (fields if name in REPORT_FIELDS else extra)[name] = value
    if not fields:
        return None
    missing = [k for k in ("编号", "抑制率", "结果") if k not in fields]
    if missing:
        return Fault("incomplete", f"report without {', '.join(missing)}", raw)
    rec, pct, res = fields["编号"], _PCT.match(fields["抑制率"]), fields["结果"]
    if not rec.isdigit() or not 0 < int(rec) < 10**9:
        return Fault("unreadable", f"编号 {rec!r} is not a report number", raw)
    if res not in _VERDICTS:
        return Fault("unreadable", f"report {int(rec)}: 结果 {res!r} not 阴性, 阳性, 可疑 or 无效", raw)
    if not pct:
        return Fault("unreadable", f"report {int(rec)}: 抑制率 {fields['抑制率']!r} not a percentage", raw)
    ch = fields.get("通道", "")
    when = fields.get("检测时间")
    return Reading(record=int(rec), raw=raw, verdict=_VERDICTS[res], sample_id=fields.get("样品编号") or None,
                   sample_name=fields.get("样品") or None, channel=int(ch) if ch.isdigit() else None,
                   inhibition_pct=float(pct.group(1)), reported_at=when, stamp=when or "", extra=extra)


class EnzymeSession:
    def __init__(self, last_record: int | None):
        self._line = bytearray()
        self._block: list[bytes] | None = None  # lines since the last separator, raw
        self._raw = bytearray()
        self._last_byte = 0.0

    def start(self, now: float) -> bytes:
        return b""  # one way: nothing to ask

    def identified(self, ident: Identity, last_record: int | None) -> bytes:
        return b""

    def tick(self, now: float) -> bytes:
        return b""

    def quiet(self, now: float) -> list[Heard]:
        """A report left open with the line silent this long was cut (power loss); the reader calls this."""
        if self._block is not None and now - self._last_byte > QUIET_S:
            return self.close()
        return []

    def close(self) -> list[Heard]:
        """The link dropped: whatever report was open is incomplete."""
        out: list[Heard] = []
        if self._line and self._block is not None:
            self._block.append(bytes(self._line))
            self._raw += self._line
        self._line.clear()
        if self._block is not None:
            got = parse_report(_decode(self._block), bytes(self._raw))
            if got is not None:
                out.append(got if isinstance(got, Fault) else
                           Fault("incomplete", "report cut off before its closing separator", bytes(self._raw)))
        self._block, self._raw = None, bytearray()
        return out

    def feed(self, data: bytes, now: float) -> list[Heard]:
        self._last_byte = now
        out: list[Heard] = []
        for b in _split(data):
            self._line += b
            if not self._line.endswith(b"\n"):
                if len(self._line) > MAX_LINE:
                    n = len(self._line)
                    out.append(Fault("garbage", f"{n} bytes without a line end", size=n))
                    self._line.clear()
                continue
            line = bytes(self._line)
            self._line.clear()
            if _SEP.match(line.strip(b"\r\n\0 ")):
                if self._block:
                    got = parse_report(_decode(self._block), bytes(self._raw) + line)
                    if got is not None:
                        out.append(got)
                self._block, self._raw = [], bytearray(line)  # a separator closes one block and opens the next
            elif self._block is not None:
                self._block.append(line)
                self._raw += line
                if len(self._raw) > MAX_REPORT:
                    out.append(Fault("garbage", f"block over {MAX_REPORT} bytes without a separator",
                                     size=len(self._raw)))
                    self._block, self._raw = None, bytearray()
        return out


def _split(data: bytes) -> list[bytes]:
    """Pieces each ending at a newline (the last may not), so lines can be bounded as they grow."""
    parts = data.split(b"\n")
    return [p + b"\n" for p in parts[:-1]] + ([parts[-1]] if parts[-1] else [])


def _decode(block: list[bytes]) -> list[str]:
    return [ln.replace(b"\0", b"").decode(ENCODING, "replace").strip("\r\n") for ln in block]


@dataclass(frozen=True)
class EnzymePrint:
    name: str = "enzyme-print"
    baud: int = 9600
    two_way: bool = False

    def session(self, last_record: int | None) -> EnzymeSession:
        return EnzymeSession(last_record)


DIALECT = EnzymePrint()
SEPARATOR = "-" * 32


def report(fields: list[tuple[str, str]], title: str = "农药残留检测报告", colon: str = ": ") -> bytes:
    lines = [SEPARATOR, title, *(f"{k}{colon}{v}" for k, v in fields), SEPARATOR]
    return "".join(ln + "\r\n" for ln in lines).encode(ENCODING)


class Device:
    """The tester side, for the pty twin: prints each report once; it never reads."""

    def __init__(self, first: int = 1):
        self.rec = first - 1
        self.printed: list[bytes] = []

    def hello(self) -> bytes:
        return "   农药残留快速检测仪 V3.1\r\n".encode(ENCODING)  # printed header at power-up

    def make(self, *, ch: int = 1, name: str = "青菜", sample: str = "", pct: float = 12.5, res: str = "阴性",
             when: str = "2026-12-01 10:31:05", colon: str = ": ", order: list[str] | None = None,
             more: list[tuple[str, str]] = ()) -> bytes:
        self.rec += 1
        fields = {"编号": f"{self.rec:04d}", "通道": str(ch), "样品": name, "抑制率": f"{pct:.1f}%",
                  "结果": res, "检测时间": when}
        if sample:
            fields["样品编号"] = sample
        keys = order or list(fields)
        raw = report([(k, fields[k]) for k in keys if k in fields] + list(more), colon=colon)
        self.printed.append(raw)
        return raw

    def print_again(self) -> bytes:
        return self.printed[-1]

    def answer(self, data: bytes) -> bytes:
        return b""
