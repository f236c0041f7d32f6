# The three dialects fed bytes directly: every framing rule and fault of the protocol sheets, no port needed.
from __future__ import annotations

import struct

import pytest

from drivers.errors import Unsupported
from drivers.reader import dialects
from drivers.reader.base import Fault, Identity, Reading, Status
from drivers.reader.dialects import enzyme_print, frame_crc8, gold_csv
from drivers.reader.dialects.frame_crc8 import COUNT, GET, IDENT, crc8, frame
from drivers.reader.dialects.gold_csv import sentence
from drivers.reader.fake import Twin


def kinds(items) -> list[str]:
    return [type(i).__name__ if not isinstance(i, Fault) else f"Fault:{i.kind}" for i in items]


def test_registry_lists_the_three_and_refuses_others():
    assert dialects.names() == ("gold-csv", "enzyme-print", "frame-crc8")
    with pytest.raises(Unsupported, match="dialect 'nmea' unknown; one of gold-csv, enzyme-print, frame-crc8"):
        dialects.get("nmea")


# ---- gold-csv ------------------------------------------------------------------------------------------

GR = "GR,1207,3,IMI,S-20261201-07,48213,60114,0.802,N,20261201103105"


def test_gold_checksum_is_the_xor_of_the_body():
    raw = sentence(GR)
    ck = 0
    for b in GR.encode():
        ck ^= b
    assert raw == f"${GR}*{ck:02X}\r\n".encode()


def test_gold_result_fields_and_raw_bytes():
    s = gold_csv.DIALECT.session(None)
    raw = sentence(GR)
    [r] = s.feed(raw, 0.0)
    assert isinstance(r, Reading) and r.raw == raw
    assert (r.record, r.channel, r.item, r.sample_id, r.t_signal, r.c_signal, r.tc_ratio, r.verdict,
            r.reported_at) == (1207, 3, "IMI", "S-20261201-07", 48213, 60114, 0.802, "negative", "20261201103105")


def test_gold_noise_nuls_bad_checksums_and_cut_sentences_are_never_results():
    s = gold_csv.DIALECT.session(None)
    good = sentence(GR.replace("1207", "1208"))
    bad = Twin.corrupted(sentence(GR))
    stream = b"\x00" * 50 + b"\xff\xfe noise\r\n" + bad + b"$GR,12,3,IM" + good + b"$GR,1209" + b"x" * 300
    got = s.feed(stream, 0.0)
    readings = [g for g in got if isinstance(g, Reading)]
    assert [r.record for r in readings] == [1208]
    assert kinds(got).count("Fault:corrupt") == 2  # the bad checksum, the sentence cut by a new '$'
    assert sum(g.size for g in got if isinstance(g, Fault) and g.kind == "garbage") >= 300


def test_gold_lowercase_or_missing_checksum_and_overlong_sentences_are_corrupt():
    s = gold_csv.DIALECT.session(None)
    body = GR.encode()
    ck = 0
    for b in body:
        ck ^= b
    lower = b"$" + body + f"*{ck:02x}\r\n".encode()
    got = s.feed(lower + b"$" + body + b"\r\n" + sentence("GR," + "9" * 200), 0.0)
    assert kinds(got) == (["Fault:corrupt"] * 3 if f"{ck:02x}" != f"{ck:02X}" else ["Reading"] + ["Fault:corrupt"] * 2)


@pytest.mark.parametrize("res", ["X", ""])
def test_gold_unreadable_verdict_is_a_fault_never_negative(res):
    [f] = gold_csv.DIALECT.session(None).feed(sentence(GR.replace(",N,", f",{res},")), 0.0)
    assert isinstance(f, Fault) and f.kind == "unreadable" and f.raw


def test_gold_identity_then_replay_since_last_stored_and_gap_fill():
    s = gold_csv.DIALECT.session(None)
    assert s.start(0.0) == sentence("GQ,ID")
    assert s.tick(0.5) == b""
    assert s.tick(2.0) == sentence("GQ,ID")  # no answer: ask again
    [ident] = s.feed(sentence("GI,GR-12,SN77,2.4"), 2.1)
    assert isinstance(ident, Identity) and ident.serial == "SN77"
    assert s.identified(ident, 41) == sentence("GQ,SINCE,41")
    s.feed(sentence(GR.replace("1207", "42")), 2.2)
    assert s.tick(2.3) == b""  # 42 follows 41: no gap
    s.feed(sentence(GR.replace("1207", "45")), 2.4)
    assert s.tick(2.5) == sentence("GQ,SINCE,42")  # 43 and 44 were lost on the wire


def test_gold_reader_that_never_answers_is_asked_a_bounded_number_of_times():
    s = gold_csv.DIALECT.session(None)
    sent = [s.start(0.0)] + [s.tick(t * 0.5) for t in range(1, 40)]
    assert sum(1 for x in sent if x) == gold_csv.ID_TRIES


def test_gold_status_and_error_sentences():
    got = gold_csv.DIALECT.session(None).feed(sentence("GS,READY") + sentence("GS,ERR,E10,optics"), 0.0)
    assert isinstance(got[0], Status) and isinstance(got[1], Fault) and got[1].kind == "device"


def test_gold_twin_replays_since_with_wraparound():
    dev = gold_csv.Device(first=65534)
    for _ in range(4):
        dev.make()
    out = dev.answer(sentence("GQ,SINCE,65535"))
    got = gold_csv.DIALECT.session(None).feed(out, 0.0)
    assert [g.record for g in got if isinstance(g, Reading)] == [1, 2] and isinstance(got[-1], Status)


def test_gold_ten_megabytes_of_garbage_stays_bounded():
    s = gold_csv.DIALECT.session(None)
    chunk = bytes(range(256)) * 256  # 64 KiB with '$' and '\n' in it
    dropped = corrupt = 0
    for _ in range(160):
        for g in s.feed(chunk, 0.0):
            assert not isinstance(g, Reading)
            dropped += g.size if isinstance(g, Fault) and g.kind == "garbage" else 0
            corrupt += isinstance(g, Fault) and g.kind == "corrupt"
            assert len(getattr(g, "raw", b"")) <= gold_csv.MAX_SENTENCE + 2  # evidence is bounded too
        assert len(s._buf) <= gold_csv.MAX_SENTENCE + 2
    assert dropped > 1_000_000 and corrupt >= 160 * 255  # (nearly) every line holds a corrupt sentence
    [r] = s.feed(b"\r\n" + sentence(GR), 0.0)[-1:]
    assert isinstance(r, Reading)


# ---- enzyme-print --------------------------------------------------------------------------------------

def test_enzyme_report_any_order_full_width_colons_negative_rate_unknown_fields():
    dev = enzyme_print.Device(first=12)
    raw = dev.make(name="豇豆", sample="S-1", pct=-3.2, res="阴性", colon=" ： ",
                   order=["结果", "检测时间", "抑制率", "编号", "样品", "通道", "样品编号"], more=[("操作员", "王")])
    [r] = enzyme_print.DIALECT.session(None).feed(raw, 0.0)
    assert isinstance(r, Reading) and r.raw == raw
    assert (r.record, r.inhibition_pct, r.verdict, r.sample_name, r.sample_id, r.channel) == \
        (12, -3.2, "negative", "豇豆", "S-1", 1)
    assert r.stamp == r.reported_at == "2026-12-01 10:31:05" and r.extra == {"操作员": "王"}


@pytest.mark.parametrize(("word", "verdict"), [("阳性", "positive"), ("可疑", "suspect"), ("无效", "invalid")])
def test_enzyme_verdicts(word, verdict):
    [r] = enzyme_print.DIALECT.session(None).feed(enzyme_print.Device().make(res=word), 0.0)
    assert r.verdict == verdict


def test_enzyme_missing_result_and_unknown_verdict_are_faults_not_negatives():
    raw = enzyme_print.report([("编号", "0003"), ("抑制率", "12.0%")])
    odd = enzyme_print.report([("编号", "0004"), ("抑制率", "12.0%"), ("结果", "正常")])
    got = enzyme_print.DIALECT.session(None).feed(raw + odd, 0.0)
    assert kinds(got) == ["Fault:incomplete", "Fault:unreadable"]


def test_enzyme_header_selftest_and_noise_between_reports_are_ignored():
    dev = enzyme_print.Device()
    selftest = enzyme_print.report([("自检", "正常")], title="自检报告")
    stream = dev.hello() + b"\x00\xff\x81 junk\r\n" + selftest + dev.make() + b"\r\n\r\n" + dev.make()
    got = enzyme_print.DIALECT.session(None).feed(stream, 0.0)
    assert [g.record for g in got if isinstance(g, Reading)] == [1, 2]
    assert not [g for g in got if isinstance(g, Fault) and g.kind != "garbage"]


def test_enzyme_report_cut_by_power_loss_is_kept_as_incomplete_evidence():
    s = enzyme_print.DIALECT.session(None)
    raw = enzyme_print.Device().make()
    assert s.feed(raw[:70], 0.0) == []
    assert s.quiet(5.0) == []
    [f] = s.quiet(20.0)
    assert f.kind == "incomplete" and f.raw == raw[:70]
    s.feed(raw[:70], 30.0)
    [f] = s.close()  # unplugged mid-report
    assert f.kind == "incomplete"


def test_enzyme_split_across_reads_byte_by_byte():
    raw = enzyme_print.Device().make()
    s = enzyme_print.DIALECT.session(None)
    got = [g for i in range(len(raw)) for g in s.feed(raw[i:i + 1], 0.0)]
    assert kinds(got) == ["Reading"] and got[0].raw == raw


# ---- frame-crc8 ----------------------------------------------------------------------------------------

def test_crc8_poly_07_known_value():
    assert crc8(b"123456789") == 0xF4  # the CRC-8 (poly 0x07, init 0, no reflection) check value
    assert frame(IDENT) == bytes([0x7E, 0x01, 0x00, crc8(b"\x01\x00"), 0xAA])


def _record(rec=7, t=0x7E7E7E, c=0xAAAAAA, res=0) -> bytes:
    return frame_crc8.RECORD.pack(rec, 2, b"CBZ", b"S-9", t, c, 702, res, 26, 12, 1, 10, 31, 5)


def test_frame_with_7e_and_aa_inside_data_is_framed_by_len():
    raw = frame(GET | 0x80, _record())
    s = frame_crc8.DIALECT.session(None)
    [r] = s.feed(b"\x7e\xaa\x00" + raw, 0.0)[-1:]
    assert isinstance(r, Reading) and r.raw == raw
    assert (r.record, r.channel, r.item, r.sample_id, r.t_signal, r.c_signal, r.tc_ratio, r.reported_at) == \
        (7, 2, "CBZ", "S-9", 0x7E7E7E, 0xAAAAAA, 0.702, "2026-12-01 10:31:05")


def test_frame_bad_crc_resynchronises_on_the_next_start():
    good = frame(GET | 0x80, _record(8))
    bad = Twin.corrupted(frame(GET | 0x80, _record(7)))
    got = frame_crc8.DIALECT.session(None).feed(bad + good, 0.0)
    assert [g.record for g in got if isinstance(g, Reading)] == [8]
    assert "Fault:corrupt" in kinds(got)


def test_frame_unreadable_result_byte_is_a_fault():
    [f] = frame_crc8.DIALECT.session(None).feed(frame(GET | 0x80, _record(res=9)), 0.0)
    assert isinstance(f, Fault) and f.kind == "unreadable"


def _converse(session, device, t0=0.0, steps=60):
    """Run host session against the device twin in virtual time; returns the readings."""
    out, now = [], t0
    wire = session.start(now)
    for _ in range(steps):
        answer = device.answer(wire) if wire else b""
        for h in session.feed(answer, now):
            if isinstance(h, Identity):
                wire = session.identified(h, getattr(session, "cursor", None))
                continue
            out.append(h)
        now += 0.1
        wire = session.tick(now)
    return [r.record for r in out if isinstance(r, Reading)]


def test_frame_polls_from_the_last_stored_record_with_wraparound():
    dev = frame_crc8.Device(first=65533)
    for _ in range(5):
        dev.make()  # 65533, 65534, 65535, 1, 2
    assert _converse(frame_crc8.DIALECT.session(65534), dev) == [65535, 1, 2]
    assert _converse(frame_crc8.DIALECT.session(None), dev) == [65533, 65534, 65535, 1, 2]
    assert _converse(frame_crc8.DIALECT.session(2), dev) == []


def test_frame_silent_reader_is_retried_then_asked_slowly():
    s = frame_crc8.DIALECT.session(None)
    sent = [s.start(0.0)] + [s.tick(i * 0.1) for i in range(1, 101)]  # 10 s of silence
    n = sum(1 for x in sent if x)
    assert 3 <= n <= 10


def test_frame_count_reply_and_busy_error():
    s = frame_crc8.DIALECT.session(None)
    s.start(0.0)
    s.feed(frame(IDENT | 0x80, b"RA-8,SN1,1.3"), 0.1)
    s.identified(Identity("RA-8", "SN1", "1.3"), 4)
    assert s.tick(0.2) == frame(COUNT)
    s.feed(frame(COUNT | 0x80, struct.pack(">HH", 10, 6)), 0.3)
    assert s.tick(0.4) == frame(GET, struct.pack(">H", 5))
    s.feed(frame(0xE0, b"\x03"), 0.5)  # busy
    assert s.tick(0.9) == b""
    assert s.tick(1.6) == frame(GET, struct.pack(">H", 5))
