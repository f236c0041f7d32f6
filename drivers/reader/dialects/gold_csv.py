# gold-csv: pushed "$GR,…*CK" ASCII sentences with an XOR checksum; identity and replay-since-N on request.
"""Sheet: ../shared/protocols/gold-csv.md. A result can arrive unasked at any time, also inside a replay,
so the session is one parser with no request state beyond "identity asked at t"."""
from __future__ import annotations

import re
from dataclasses import dataclass

from drivers.reader.base import Fault, Heard, Identity, Reading, Status

MAX_SENTENCE = 200  # the sheet: longer is corrupt
ID_RETRY_S = 1.5  # the reader answers within 500 ms
ID_TRIES = 3
_VERDICTS = {"N": "negative", "P": "positive", "I": "invalid"}
_ITEM = re.compile(r"[A-Z0-9]{2,8}")
_SAMPLE = re.compile(r"[A-Za-z0-9_-]{0,20}")
_TC = re.compile(r"\d+\.\d{3}")


def checksum(body: bytes) -> int:
    ck = 0
    for b in body:
        ck ^= b
    return ck


def sentence(body: str) -> bytes:
    raw = body.encode("ascii")
    return b"$" + raw + b"*%02X\r\n" % checksum(raw)


def _check(segment: bytes) -> str | None:
    """The body of a well-formed sentence ($…*CK, CR LF already stripped), or None if corrupt."""
    if len(segment) > MAX_SENTENCE or len(segment) < 4 or segment[-3:-2] != b"*":
        return None
    body, ck = segment[1:-3], segment[-2:]
    try:
        if int(ck, 16) != checksum(body) or ck.upper() != ck:
            return None
        return body.decode("ascii")
    except (ValueError, UnicodeDecodeError):
        return None


def _int(text: str, lo: int, hi: int) -> int | None:
    return int(text) if text.isdigit() and lo <= int(text) <= hi else None


def parse_result(body: str, raw: bytes) -> Reading | Fault:
    f = body.split(",")
    if len(f) != 10:
        return Fault("unreadable", f"$GR with {len(f) - 1} fields, expected 9", raw)
    _, rec, ch, item, sample, t, c, tc, res, when = f
    record, channel = _int(rec, 1, 65535), _int(ch, 1, 12)
    if record is None:
        return Fault("unreadable", f"$GR record number {rec!r} not 1-65535", raw)
    if res not in _VERDICTS:
        # Never default to negative: a record without a verdict is evidence of a fault, not a result.
        return Fault("unreadable", f"$GR {record}: verdict {res!r} not N, P or I", raw)
    tv, cv = _int(t, 0, 999999), _int(c, 0, 999999)
    if channel is None or not _ITEM.fullmatch(item) or not _SAMPLE.fullmatch(sample) or tv is None \
            or cv is None or not _TC.fullmatch(tc):
        return Fault("unreadable", f"$GR {record}: a field is outside the sheet's format", raw)
    return Reading(record=record, raw=raw, verdict=_VERDICTS[res], item=item, sample_id=sample or None,
                   channel=channel, tc_ratio=float(tc), t_signal=tv, c_signal=cv, reported_at=when)


class GoldSession:
    def __init__(self, last_record: int | None):
        self.last_record = last_record
        self._buf = bytearray()
        self._asked_at: float | None = None
        self._tries = 0
        self._known = False
        self._out = b""  # a gap-filling replay request, sent on the next tick

    def start(self, now: float) -> bytes:
        self._asked_at, self._tries = now, 1
        return sentence("GQ,ID")

    def identified(self, ident: Identity, last_record: int | None) -> bytes:
        # Asked again after every $GI (also one sent unasked at power-up): a replay is harmless, dupes are ignored.
        self._known = True
        self.last_record = last_record or 0  # 0: nothing stored yet, record 1 is the next expected
        return sentence(f"GQ,SINCE,{last_record or 0}")

    def tick(self, now: float) -> bytes:
        if self._out:
            out, self._out = self._out, b""
            return out
        if self._known or self._asked_at is None or now - self._asked_at < ID_RETRY_S:
            return b""
        if self._tries >= ID_TRIES:
            self._asked_at = None  # a reader that never answers: stop asking, keep listening for pushes
            return b""
        self._asked_at, self._tries = now, self._tries + 1
        return sentence("GQ,ID")

    def feed(self, data: bytes, now: float) -> list[Heard]:
        self._buf += data
        out: list[Heard] = []
        while True:
            nl = self._buf.find(b"\n")
            if nl < 0:
                break
            line = bytes(self._buf[:nl + 1])
            del self._buf[:nl + 1]
            self._line(line, out)
        if len(self._buf) > MAX_SENTENCE + 2:
            # No newline within a sentence's length: keep only a possible start, count the rest as garbage.
            start = self._buf.rfind(b"$")
            keep = self._buf[start:] if start >= 0 and len(self._buf) - start <= MAX_SENTENCE else b""
            n = len(self._buf) - len(keep)
            out.append(Fault("garbage", f"{n} bytes without a sentence end", size=n))
            self._buf = bytearray(keep)
        return out

    def _line(self, line: bytes, out: list[Heard]) -> None:
        parts = line.split(b"$")
        if parts[0].strip(b"\r\n"):
            out.append(Fault("garbage", f"{len(parts[0])} bytes before a sentence", size=len(parts[0])))
        for i, part in enumerate(parts[1:], 1):
            seg = b"$" + part
            last = i == len(parts) - 1
            if not last:  # a sentence cut short by the next '$'
                out.append(Fault("corrupt", "sentence cut short", seg[:MAX_SENTENCE + 2]))
                continue
            raw = seg
            body = _check(seg.rstrip(b"\r\n"))
            if body is None:
                out.append(Fault("corrupt", "bad checksum or framing", raw[:MAX_SENTENCE + 2]))
                continue
            heard = self._sentence(body, raw)
            if isinstance(heard, Reading):
                self._gap(heard.record)
            out.append(heard)

    def _gap(self, rec: int) -> None:
        """A pushed record that skips numbers: the ones between were lost on the wire (noise, a cut
        sentence); the reader still holds them, so ask for a replay since the last one heard."""
        last = self.last_record
        if last is not None and rec != next_record(last) and after(rec, last) and rec != last:
            self._out = sentence(f"GQ,SINCE,{last}")
        if last is None or after(rec, last):
            self.last_record = rec

    def _sentence(self, body: str, raw: bytes) -> Heard:
        kind = body.split(",", 1)[0]
        if kind == "GR":
            return parse_result(body, raw)
        if kind == "GI":
            f = body.split(",")
            if len(f) != 4:
                return Fault("unreadable", "$GI with the wrong field count", raw)
            return Identity(f[1], f[2], f[3], raw)
        if body.startswith("GS,ERR"):
            return Fault("device", f"reader reports {body[3:]}", raw)
        return Status(body)


@dataclass(frozen=True)
class GoldCsv:
    name: str = "gold-csv"
    baud: int = 9600
    two_way: bool = True

    def session(self, last_record: int | None) -> GoldSession:
        return GoldSession(last_record)


DIALECT = GoldCsv()


def next_record(rec: int) -> int:
    return 1 if rec >= 65535 else rec + 1


def after(rec: int, since: int) -> bool:
    """Is rec newer than since, within the reader's 500-record memory, taking wrap-around into account?"""
    return 0 < (rec - since) % 65535 <= 500 or since == 0


class Device:
    """The instrument side, for the pty twin: keeps the last 500 records, answers ID, SINCE and LAST."""

    def __init__(self, serial: str = "GR0001", model: str = "GR-12", firmware: str = "2.4", first: int = 1):
        self.ident = sentence(f"GI,{model},{serial},{firmware}")
        self.records: list[tuple[int, bytes]] = []
        self.rec = first - 1
        self._buf = bytearray()

    def hello(self) -> bytes:
        return self.ident  # sent at power-up

    def make(self, *, ch: int = 1, item: str = "IMI", sample: str = "", t: int = 48213, c: int = 60114,
             res: str = "N", when: str = "20261201103105") -> bytes:
        self.rec = next_record(self.rec)
        tc = f"{t / c:.3f}" if c else "0.000"
        raw = sentence(f"GR,{self.rec},{ch},{item},{sample},{t},{c},{tc},{res},{when}")
        self.records = [*self.records[-499:], (self.rec, raw)]
        return raw  # pushed unasked

    def answer(self, data: bytes) -> bytes:
        self._buf += data
        out = b""
        while b"\n" in self._buf:
            line, _, rest = bytes(self._buf).partition(b"\n")
            self._buf = bytearray(rest)
            body = _check(line.rstrip(b"\r")[line.rfind(b"$"):]) if b"$" in line else None
            if body == "GQ,ID":
                out += self.ident
            elif body == "GQ,LAST" and self.records:
                out += self.records[-1][1]
            elif body and body.startswith("GQ,SINCE,") and body[9:].isdigit():
                since = int(body[9:])
                out += b"".join(raw for rec, raw in self.records if after(rec, since)) + sentence("GS,END")
        del self._buf[:-MAX_SENTENCE]  # ignore what it does not understand, in bounded memory
        return out
