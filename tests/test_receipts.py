# Receipts end to end below the daemon: journaled record → worker → fake printer's ESC/POS bytes → pixels → QR.
from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import numpy as np
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from station.certificate import refusal
from station.config import parse_config
from station.home import printer_tables, render_config
from station.journal import Journal
from station.lab.escpos_decode import decode, read_qr
from station.printing import Printing
from station.protocol.result import RESULT_TYP, build_result_payload
from station.protocol.signing import sign_jws
from station.receipt import Line, load_texts, qr_text
from station.receipt_render import font, render_lines

KEY = Ed25519PrivateKey.generate()
VERIFY = "https://town.example/r"


def make(verdict: str, sample: str, producer: str | None, analyte: str = "carbofuran", extra: dict | None = None):
    def build(seq: int, prev: str) -> bytes:
        payload = build_result_payload(
            seq=seq, prev=prev, station_path="d/t/v/st-1", station_id="st-1",
            boot={"counter": 1, "monotonic_s": 10.0}, read_at="2026-11-24T00:00:00Z", clock_synced=True,
            sample={"id": sample, "producer": producer},
            strip={"type": "pesticide-generic", "analyte": analyte, "lot": None, "slot": 0},
            reading={"tc_ratio": 0.9, "c_area": 1.0, "t_area": 0.9, "c_peak": 0.2, "t_peak": 0.18, "snr": 30.0},
            verdict=verdict, quality=[], calibration={"id": None, "cutoff": 0.6}, image_sha256=None,
            source="camera")
        payload.update(extra or {})
        return sign_jws(payload, KEY, "st-1/1", RESULT_TYP)

    return build


@pytest.fixture
def rig(tmp_path):
    out = tmp_path / "paper.bin"
    text = render_config(station="st-1", grid="d/t/v") + printer_tables(f"fake:{out}", verify_url=VERIFY)
    text = text.replace('operator = ""', 'operator = "王芳"')
    cfg = parse_config(text, home=tmp_path)
    journal = Journal(tmp_path / "journal.sqlite")
    printing = Printing(cfg, journal.path, tmp_path / "prints.json")
    printing.start(after_seq=0)
    yield journal, printing, out, tmp_path
    printing.close()
    journal.close()


def commit(journal: Journal, printing: Printing, verdict: str, sample: str, producer: str | None, **kw):
    entry = journal.append(make(verdict, sample, producer, **kw), verdict=verdict, sample_id=sample, image_path=None)
    printing.committed()
    return entry


def job_of(printing: Printing, seq: int, timeout: float = 20.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = printing.log.jobs.get(str(seq))
        if job:
            return job
        time.sleep(0.02)
    raise AssertionError(f"no print job for seq {seq} within {timeout} s")


def test_receipt_bytes_decode_to_the_qr_of_the_published_message(rig):
    journal, printing, out, _ = rig
    entry = commit(journal, printing, "negative", "S-1", None)
    assert job_of(printing, entry.seq)["status"] == "printed"
    paper = decode(out.read_bytes())
    assert paper.cuts == 1 and len(paper.images) == 1
    img = paper.images[0]
    assert img.width == 384
    # The QR read back from the printed dots carries the SHA-256 of the exact bytes the publisher sends.
    h = hashlib.sha256(entry.message).hexdigest()[:16]
    assert read_qr(img) == f"{VERIFY}/st-1/{entry.seq}?h={h}"
    assert read_qr(img) == qr_text(VERIFY, "st-1", entry.seq, entry.msg_hash)


def test_town_receipt_page_accepts_the_printed_hash(rig):
    """The town's own check (station/town/dashboard.receipt) says "match" for the h the paper carries."""
    import sqlite3

    from station.town import dashboard

    journal, printing, out, tmp = rig
    entry = commit(journal, printing, "positive", "S-2", None)
    job_of(printing, entry.seq)
    text = read_qr(decode(out.read_bytes()).images[0])
    h = text.rsplit("h=", 1)[1]
    db = sqlite3.connect(":memory:")
    db.row_factory = sqlite3.Row
    db.execute("CREATE TABLE results (station, seq, kind, message, msg_hash, prev, received_at)")
    db.execute("INSERT INTO results VALUES (?,?,?,?,?,?,?)", ("d/t/v/st-1", entry.seq, "result", entry.message,
                                                              hashlib.sha256(entry.message).hexdigest(), entry.prev,
                                                              "2026-11-24T00:00:01Z"))
    assert dashboard.receipt(db, "st-1", entry.seq, h, None)[0] == "match"
    assert dashboard.receipt(db, "st-1", entry.seq, "0" * 16, None)[0] == "mismatch"


def test_cjk_glyphs_render_from_the_bundled_font():
    face = font(22)
    missing = face.getmask("\ue000")  # private use: no font has it, so this is the .notdef box
    for ch in "阴性阳无效可疑请复检承诺达标合格证：≤":
        mask = face.getmask(ch)
        assert mask.size[0] > 0 and bytes(mask) != bytes(missing), f"{ch!r} has no glyph in the bundled font"
    img = render_lines([Line("结论：阴性 ≤0.5", "big")], 384)
    dark = int((np.asarray(img) < 128).sum())
    assert dark > 300, f"only {dark} black pixels: the text did not render"


def test_unplugged_mid_job_loses_nothing_and_reprints(rig):
    journal, printing, out, _ = rig
    switch = out.with_name(out.name + ".fault")
    switch.write_text("fail-after 700")
    entry = commit(journal, printing, "negative", "S-3", None)
    job = job_of(printing, entry.seq)
    assert job["status"] == "failed" and "unplugged after 700" in job["error"]
    assert out.stat().st_size == 700                    # the half receipt that came out
    assert journal.get(entry.seq).message == entry.message   # the result itself is untouched
    assert json.loads((out.parent / "prints.json").read_text())["jobs"][str(entry.seq)]["status"] == "failed"
    assert entry.seq in printing.status()["failed"]
    switch.unlink()                                      # plugged back in
    reply = printing.reprint(entry.seq)
    assert reply["ok"] and reply["attempts"] == 2
    paper = decode(out.read_bytes()[700:])
    assert read_qr(paper.images[0]) == qr_text(VERIFY, "st-1", entry.seq, entry.msg_hash)
    assert printing.reprint(999)["error"].startswith("no result with seq 999")


def test_paper_out_is_reported_and_the_next_result_still_prints(rig):
    journal, printing, out, _ = rig
    switch = out.with_name(out.name + ".fault")
    switch.write_text("paper-out")
    first = commit(journal, printing, "negative", "S-4", None)
    assert "paper out" in job_of(printing, first.seq)["error"]
    switch.unlink()
    second = commit(journal, printing, "negative", "S-5", None)
    assert job_of(printing, second.seq)["status"] == "printed"


def _height(out: Path, start: int) -> int:
    return decode(out.read_bytes()[start:]).images[0].height


def test_certificate_only_for_a_known_producer_whose_sample_is_negative(rig):
    journal, printing, out, _ = rig
    cases = [("negative", "P-0042", True), ("positive", "P-0042", False), ("invalid", "P-0042", False),
             ("suspect", "P-0042", False), ("negative", None, False)]
    heights = {}
    for i, (verdict, producer, expect) in enumerate(cases):
        start = out.stat().st_size if out.exists() else 0
        entry = commit(journal, printing, verdict, f"C-{i}", producer)
        job = job_of(printing, entry.seq)
        assert job["status"] == "printed"
        assert job["certificate"] is expect, (verdict, producer)
        heights[(verdict, producer)] = _height(out, start)
    # The certificate is really on the paper: that slip is much longer than the same receipt without it.
    assert heights[("negative", "P-0042")] > heights[("negative", None)] + 300


def test_certificate_waits_for_every_required_analyte_and_any_retest():
    texts = load_texts()
    assert texts["certificate"]["basis"] == "委托检测合格"

    def rec(seq, analyte, verdict, producer="P-1", **extra):
        return {"seq": seq, "sample": {"id": "S", "producer": producer}, "strip": {"analyte": analyte},
                "verdict": verdict, **extra}

    both = lambda body: {"carbofuran", "imidacloprid"}  # noqa: E731 - a plan asking for two analytes
    a = rec(1, "carbofuran", "negative")
    assert refusal(a, [a]) is None
    assert refusal(a, [a], both) == "imidacloprid not tested yet"
    b = rec(2, "imidacloprid", "negative")
    assert refusal(b, [a, b], both) is None
    assert refusal(b, [rec(1, "carbofuran", "positive"), b], both) == "carbofuran is positive"
    disputed = rec(3, "carbofuran", "negative", retest={"of": "st-1:1", "round": 2, "status": "disputed"})
    assert "awaits its re-test" in refusal(disputed, [rec(1, "carbofuran", "positive"), disputed])
    settled = rec(4, "carbofuran", "negative", retest={"of": "st-1:1", "round": 3, "status": "resolved_negative"})
    assert refusal(settled, [rec(1, "carbofuran", "positive"), disputed, settled]) is None
    assert refusal(rec(5, "carbofuran", "negative", kind="qc"), []) == "not a sample result"
    assert "producer unknown" in refusal(rec(6, "carbofuran", "negative", producer=None), [])
    # Another analyte of the same sample positive and not yet re-tested blocks it even if not required.
    c = rec(7, "carbofuran", "negative")
    assert refusal(c, [c, rec(8, "imidacloprid", "positive")]) == "imidacloprid is positive"


def test_init_printer_and_bad_specs_are_named(tmp_path):
    from station.config import load_config
    from station.errors import ConfigError
    from station.home import Home, init_home

    home = Home(tmp_path / "st")
    init_home(home, station="st-1", grid="d/t/v", printer="escpos-serial:/dev/ttyUSB0@19200",
              verify_url="https://town.example/r")
    cfg = load_config(home.root)
    assert (cfg.printer.device, cfg.printer.width_dots) == ("escpos-serial:/dev/ttyUSB0@19200", 384)
    assert cfg.receipt.verify_url == "https://town.example/r"
    base = render_config(station="st-1", grid="d/t/v")
    for table, problem in [('[printer]\ndevice = "lp0"', "expected one of escpos-serial"),
                           ('[printer]\ndevice = "escpos-usb:zz:1"', "VID:PID in hex"),
                           ('[printer]\ndevice = "escpos-serial:/dev/ttyS0@12"', "baud"),
                           ("[printer]\nwidth_dots = 500", "one of 384, 576"),
                           ('[receipt]\nverify_url = "https://x/r?h=1"', "without ? or #"),
                           ("[receipt]\npaper = 1", "unknown key")]:
        with pytest.raises(ConfigError, match=problem.replace("?", r"\?")) as got:
            parse_config(base + table)
        assert got.value.line is not None, table
    assert parse_config(base).printer.device == ""  # homes made before receipts load unchanged


def test_escpos_serial_driver_sends_the_raster_over_a_real_pty():
    import os
    import pty
    import threading
    import tty

    from PIL import Image, ImageDraw

    from drivers.errors import DeviceNotFound
    from drivers.printer.base import parse_spec
    from drivers.printer.escpos import EscposPrinter

    master, slave = pty.openpty()
    tty.setraw(slave)
    got = bytearray()

    def printer_end() -> None:
        while True:
            try:
                chunk = os.read(master, 65536)
            except OSError:
                return
            if not chunk:
                return
            got.extend(chunk)

    threading.Thread(target=printer_end, daemon=True).start()
    img = Image.new("1", (384, 40), 1)
    ImageDraw.Draw(img).rectangle((10, 10, 99, 29), fill=0)
    p = EscposPrinter(parse_spec(f"escpos-serial:{os.ttyname(slave)}@115200"), 384)
    try:
        p.probe()
        p.print_image(img)
        p.cut()
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and not got.endswith(b"\x1dV\x00"):
            time.sleep(0.02)
    finally:
        p.close()
        os.close(slave)
    paper = decode(bytes(got))
    assert paper.cuts == 1
    dark = np.asarray(paper.images[0]) == 0
    assert dark.sum() == 90 * 20 and dark[10:30, 10:100].all()
    with pytest.raises(DeviceNotFound, match="printer escpos-serial:/dev/nonexistent@9600: cannot open"):
        EscposPrinter(parse_spec("escpos-serial:/dev/nonexistent"), 384).probe()


def test_several_cards_of_one_sample_in_one_press_share_the_certificate_rule(rig):
    from station.certificate import base_sample
    from station.journal import Pending

    assert [base_sample(s) for s in ("S/0", "S/12", "S", "A/B", "/3", None)] == ["S", "S", "S", "A/B", "/3", None]
    journal, printing, _, _ = rig

    def press(sample: str, verdicts: tuple[str, ...]) -> list:
        """One photograph of several cards: one transaction, one notice, as the Recorder commits them."""
        ids = [f"{sample}/{k}" for k in range(len(verdicts))]
        items = [Pending(make(v, i, "P-7"), v, i, None) for v, i in zip(verdicts, ids, strict=True)]
        entries = journal.append_many(items)
        printing.committed()
        return [job_of(printing, e.seq)["certificate"] for e in entries]

    assert press("A", ("negative", "negative")) == [True, True]
    assert press("B", ("negative", "positive")) == [False, False]  # B/0's slip must not certify sample B
    assert press("C", ("positive", "negative")) == [False, False]  # nor a later negative card hide the positive
    body = {"seq": 9, "sample": {"id": "D/1", "producer": "P"}, "strip": {"analyte": "x"}, "verdict": "negative"}
    other = {**body, "seq": 8, "sample": {"id": "D/0", "producer": "P"}, "verdict": "positive"}
    assert refusal(body, [other, body]) == "x is positive"
