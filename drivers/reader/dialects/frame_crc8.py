# frame-crc8: polled binary 7E CMD LEN DATA CRC AA frames; framed by LEN and checked, never by start/end bytes.
"""Sheet: ../shared/protocols/frame-crc8.md. The reader never speaks unasked: the session polls COUNT
and fetches every record after the last stored one, one GET at a time, retrying a silent reader."""
from __future__ import annotations

import struct
from dataclasses import dataclass

from drivers.reader.base import Fault, Heard, Identity, Reading, Status

START, END = 0x7E, 0xAA
IDENT, COUNT, GET = 0x01, 0x02, 0x03
ERROR = 0xE0
MAX_DATA = 250
POLL_S = 2.0  # COUNT every few seconds
ANSWER_S = 0.6  # the reader answers within 300 ms
BUSY_S = 1.0
RECORD = struct.Struct(">HB8s20sIIHB6B4x")  # 52 bytes
_VERDICTS = {0: "negative", 1: "positive", 2: "invalid"}


def crc8(data: bytes) -> int:
    crc = 0
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = ((crc << 1) ^ 0x07) & 0xFF if crc & 0x80 else (crc << 1) & 0xFF
    return crc


def frame(cmd: int, data: bytes = b"") -> bytes:
    body = bytes([cmd, len(data)]) + data
    return bytes([START]) + body + bytes([crc8(body), END])


class Framer:
    """Cuts frames out of a byte stream; on a bad CRC or end byte it resynchronises on the next 0x7E."""

    def __init__(self) -> None:
        self._buf = bytearray()

    def feed(self, data: bytes) -> list[tuple[int, bytes, bytes] | Fault]:
        self._buf += data
        out: list[tuple[int, bytes, bytes] | Fault] = []
        while True:
            start = self._buf.find(START)
            if start < 0:
                if self._buf:
                    n = len(self._buf)
                    out.append(Fault("garbage", f"{n} bytes outside any frame", size=n))
                self._buf.clear()
                return out
            if start:
                out.append(Fault("garbage", f"{start} bytes outside any frame", size=start))
                del self._buf[:start]
            if len(self._buf) < 3:
                return out
            n = self._buf[2]
            if n > MAX_DATA:
                out.append(Fault("corrupt", f"LEN {n} over {MAX_DATA}", bytes(self._buf[:3])))
                del self._buf[:1]
                continue
            if len(self._buf) < n + 5:
                # A false start (0x7E inside DATA) with a long LEN would wait for bytes that may never come
                # (the reader answers once, then waits): a complete, valid frame further on wins.
                later = self._valid_after(1)
                if later < 0:
                    return out
                out.append(Fault("corrupt", "false frame start", bytes(self._buf[:later])))
                del self._buf[:later]
                continue
            cand = bytes(self._buf[:n + 5])
            if cand[-1] != END or crc8(cand[1:n + 3]) != cand[n + 3]:
                out.append(Fault("corrupt", "bad CRC or end byte", cand))
                del self._buf[:1]  # the real start may be inside this candidate
                continue
            del self._buf[:n + 5]
            out.append((cand[1], cand[3:n + 3], cand))

    def _valid_after(self, frm: int) -> int:
        i = self._buf.find(START, frm)
        while i >= 0:
            if _valid_at(self._buf, i):
                return i
            i = self._buf.find(START, i + 1)
        return -1


def _valid_at(buf: bytearray, i: int) -> bool:
    if i + 3 > len(buf) or buf[i] != START or buf[i + 2] > MAX_DATA:
        return False
    n = buf[i + 2]
    return i + n + 5 <= len(buf) and buf[i + n + 4] == END and crc8(buf[i + 1:i + n + 3]) == buf[i + n + 3]


def next_record(rec: int) -> int:
    return 1 if rec >= 65535 else rec + 1


def distance(frm: int, to: int) -> int:
    """How many records after frm is to, in the 1..65535 wrapping space."""
    return (to - frm) % 65535


def decode_record(data: bytes, raw: bytes) -> Reading | Fault:
    if len(data) != RECORD.size:
        return Fault("unreadable", f"record of {len(data)} bytes, expected {RECORD.size}", raw)
    rec, ch, item, sample, t, c, tc, res, yy, mo, dd, hh, mi, ss = RECORD.unpack(data)
    if res not in _VERDICTS:
        return Fault("unreadable", f"record {rec}: result byte {res} not 0, 1 or 2", raw)
    try:
        item_s = item.rstrip(b"\0").decode("ascii")
        sample_s = sample.rstrip(b"\0").decode("ascii")
    except UnicodeDecodeError:
        return Fault("unreadable", f"record {rec}: item or sample id not ASCII", raw)
    when = f"{2000 + yy:04d}-{mo:02d}-{dd:02d} {hh:02d}:{mi:02d}:{ss:02d}"
    return Reading(record=rec, raw=raw, verdict=_VERDICTS[res], item=item_s or None, sample_id=sample_s or None,
                   channel=ch, tc_ratio=tc / 1000, t_signal=t, c_signal=c, reported_at=when)


class FrameSession:
    def __init__(self, last_record: int | None):
        self.cursor = last_record  # the newest record stored from this reader; None: fetch all it keeps
        self._framer = Framer()
        self._pending: tuple[bytes, float] | None = None  # request sent and when
        self._next_poll = 0.0
        self._want: int | None = None  # record to GET next
        self._newest = 0
        self._known = False
        self._tries = 0

    def _send(self, req: bytes, now: float) -> bytes:
        self._pending = (req, now)
        return req

    def start(self, now: float) -> bytes:
        return self._send(frame(IDENT), now)

    def identified(self, ident: Identity, last_record: int | None) -> bytes:
        self._known, self.cursor = True, last_record
        return b""  # tick() polls COUNT right away

    def tick(self, now: float) -> bytes:
        if self._pending:
            req, at = self._pending
            if now - at < ANSWER_S:
                return b""
            self._tries += 1  # a silent reader: ask again, slower after a few tries
            if self._tries < 3 or now - at >= POLL_S:
                return self._send(req, now)
            return b""
        if not self._known:
            return self._send(frame(IDENT), now)
        if self._want is not None:
            return self._send(frame(GET, struct.pack(">H", self._want)), now)
        if now >= self._next_poll:
            self._next_poll = now + POLL_S
            return self._send(frame(COUNT), now)
        return b""

    def feed(self, data: bytes, now: float) -> list[Heard]:
        out: list[Heard] = []
        for item in self._framer.feed(data):
            if isinstance(item, Fault):
                out.append(item)
                continue
            cmd, body, raw = item
            self._pending, self._tries = None, 0
            out.extend(self._reply(cmd, body, raw, now))
        return out

    def _reply(self, cmd: int, body: bytes, raw: bytes, now: float) -> list[Heard]:
        if cmd == IDENT | 0x80:
            parts = body.decode("ascii", "replace").split(",")
            return [Identity(*parts[:3], raw) if len(parts) == 3 else Fault("unreadable", "IDENT reply", raw)]
        if cmd == COUNT | 0x80 and len(body) == 4:
            stored, newest = struct.unpack(">HH", body)
            self._plan(stored, newest)
            return []
        if cmd == GET | 0x80:
            reading = decode_record(body, raw)
            rec = reading.record if isinstance(reading, Reading) else self._want
            self._advance(rec)
            return [reading]
        if cmd == ERROR and len(body) == 1:
            if body[0] == 0x03:  # busy: ask again in 1 s
                self._pending = (self._pending_req(), now - ANSWER_S + BUSY_S)
            elif body[0] == 0x01 and self._want is not None:
                self._advance(self._want)  # gone from the reader's memory: nothing to fetch, move on
            return [Status(f"reader error {body[0]:#04x}")]
        return [Fault("unreadable", f"unexpected reply {cmd:#04x}", raw)]

    def _pending_req(self) -> bytes:
        return frame(GET, struct.pack(">H", self._want)) if self._want is not None else frame(COUNT)

    def _plan(self, stored: int, newest: int) -> None:
        self._newest = newest
        if newest == 0 or stored == 0 or self.cursor == newest:
            self._want = None
            return
        oldest = (newest - stored) % 65535 + 1
        if self.cursor is None or distance(self.cursor, newest) > stored:
            self._want = oldest  # first contact, or more were made than it keeps: fetch all it has
        else:
            self._want = next_record(self.cursor)

    def _advance(self, rec: int | None) -> None:
        if rec is None:
            return
        self.cursor = rec
        self._want = None if rec == self._newest else next_record(rec)


@dataclass(frozen=True)
class FrameCrc8:
    name: str = "frame-crc8"
    baud: int = 115200
    two_way: bool = True

    def session(self, last_record: int | None) -> FrameSession:
        return FrameSession(last_record)


DIALECT = FrameCrc8()


class Device:
    """The instrument side, for the pty twin: keeps the newest 500 records and answers IDENT, COUNT, GET."""

    def __init__(self, serial: str = "FR0001", model: str = "RA-8", firmware: str = "1.3", first: int = 1):
        self.ident = f"{model},{serial},{firmware}".encode("ascii")
        self.records: dict[int, bytes] = {}
        self.order: list[int] = []
        self.rec = first - 1
        self._framer = Framer()

    def hello(self) -> bytes:
        return b""  # never speaks unasked

    def make(self, *, ch: int = 1, item: str = "CBZ", sample: str = "", t: int = 40000, c: int = 60000,
             res: int = 0, when: tuple[int, ...] = (26, 12, 1, 10, 31, 5)) -> bytes:
        self.rec = next_record(self.rec)
        tc = round(t * 1000 / c) if c else 0
        self.records[self.rec] = RECORD.pack(self.rec, ch, item.encode(), sample.encode(), t, c, min(tc, 65535),
                                             res, *when)
        self.order = [*self.order[-499:], self.rec]
        self.records = {r: self.records[r] for r in self.order}
        return b""

    def answer(self, data: bytes) -> bytes:
        out = b""
        for item in self._framer.feed(data):
            if isinstance(item, Fault):
                if item.kind == "corrupt":
                    out += frame(ERROR, b"\x02")
                continue
            cmd, body, _ = item
            if cmd == IDENT:
                out += frame(IDENT | 0x80, self.ident)
            elif cmd == COUNT:
                out += frame(COUNT | 0x80, struct.pack(">HH", len(self.order), self.order[-1] if self.order else 0))
            elif cmd == GET and len(body) == 2:
                rec = struct.unpack(">H", body)[0]
                out += frame(GET | 0x80, self.records[rec]) if rec in self.records else frame(ERROR, b"\x01")
        return out
