# Issue 8, defect 10: what a hostile tester typed or sent gets a one-line error, never a traceback or a closed socket.
from __future__ import annotations

import json
import os
import socket
import struct
import subprocess
import sys
import threading
import zlib
from pathlib import Path

import pytest
from stationkit import eventually, send_press

from station.control import request
from station.decode import MAX_PIXELS, decode_image, image_size
from station.errors import ControlError, ImageError
from station.lab.rig import StationRig

SAMPLES = Path(__file__).resolve().parent.parent / "station" / "lab" / "samples"


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "DEBUG": ""})


def one_line(done: subprocess.CompletedProcess, *needles: str) -> str:
    err = done.stderr.strip()
    assert done.returncode != 0 and "Traceback" not in err and len(err.splitlines()) == 1, err
    for n in needles:
        assert n in err, err
    return err


def png_header(width: int, height: int) -> bytes:
    """A real PNG of the given size whose pixel data is tiny (one zlib stream of zero rows)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    raw = zlib.compress(b"\x00" * (1 + 3 * width), 9)  # one row; a decoder would allocate all of them first
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", raw) + chunk(b"IEND", b""))


def jpeg_claiming(width: int, height: int) -> bytes:
    """A real JPEG with its frame header rewritten to claim another size."""
    data = bytearray((SAMPLES / "negative.jpg").read_bytes())
    i = 2
    while data[i + 1] not in (0xC0, 0xC1, 0xC2):
        i += 2 + struct.unpack(">H", data[i + 2:i + 4])[0]
    data[i + 5:i + 9] = struct.pack(">HH", height, width)
    return bytes(data)


# ---- image size cap ------------------------------------------------------------------------------------------

def test_the_header_size_matches_what_opencv_decodes():
    for jpg in sorted(SAMPLES.glob("*.jpg")):
        data = jpg.read_bytes()
        h, w = decode_image(data, jpg.name).shape[:2]
        assert image_size(data, jpg.name) == (w, h)


@pytest.mark.parametrize("data", [png_header(30000, 30000), jpeg_claiming(30000, 30000)], ids=["png", "jpeg"])
def test_an_oversized_image_is_refused_before_decoding(data):
    with pytest.raises(ImageError, match=r"30000×30000 pixels is more than the 24 MP"):
        decode_image(data, "huge")
    assert 30000 * 30000 > MAX_PIXELS


def test_station_score_refuses_a_huge_png_and_a_bad_debug_dir_in_one_line(tmp_path):
    huge = tmp_path / "huge.png"
    huge.write_bytes(png_header(30000, 30000))
    done = run("-m", "station", "score", str(huge))
    assert done.returncode == 1 and "30000×30000 pixels" in done.stdout and "Traceback" not in done.stderr
    (tmp_path / "afile").write_text("x")
    for bad in ("afile", "afile/sub"):
        one_line(run("-m", "station", "score", str(SAMPLES / "negative.jpg"), "--debug-dir",
                     str(tmp_path / bad)), "--debug-dir", bad)


def test_station_score_debug_dir_with_a_one_pixel_high_photograph(tmp_path):
    import cv2
    import numpy as np

    thin = tmp_path / "thin.png"
    cv2.imwrite(str(thin), np.full((1, 4000, 3), 200, np.uint8))
    done = run("-m", "station", "score", str(thin), "--debug-dir", str(tmp_path / "dbg"))
    assert "Traceback" not in done.stderr and "too small" in done.stdout, done.stderr


# ---- calibration.json ---------------------------------------------------------------------------------------

def good_doc(**change: object) -> dict:
    doc = {"id": "abc123", "strip_type": "pesticide-generic", "cutoff": 0.72, "lot": None, "by": "tech",
           "note": "", "created_at": "2026-01-01T00:00:00.000Z"}
    return {**doc, **change}


@pytest.mark.parametrize("content", [
    "[1, 2]",
    '{"_default": []}',
    json.dumps({"_default": {"1": good_doc(cutoff=True)}}),
    json.dumps({"_default": {"1": good_doc(cutoff="0.7")}}),
    json.dumps({"_default": {"1": good_doc(cutoff=-1)}}),
    json.dumps({"_default": {"1": {"cutoff": 0.7}}}),
    json.dumps({"_default": {"1": good_doc(strip_type=["x"])}}),
    "[" * 60000,
], ids=["list", "table-list", "cutoff-true", "cutoff-text", "cutoff-negative", "fields-missing", "type-list",
        "deep"])
def test_a_malformed_calibration_file_is_one_line_in_calib_and_station_run(tmp_path, content):
    rig = StationRig(tmp_path, photos=("negative.jpg",))
    calib = rig.home.root / "calib" / "calibration.json"
    calib.parent.mkdir(exist_ok=True)
    calib.write_text(content)
    one_line(run("-m", "calib.cli", "--home", str(rig.home.root), "show"), "calibration.json")
    one_line(run("-m", "station", "run", "--home", str(rig.home.root)), "calibration.json")
    assert calib.read_text() == content  # a damaged file is evidence: left exactly as it was


def test_calib_set_refuses_a_non_finite_cutoff(tmp_path):
    rig = StationRig(tmp_path, photos=("negative.jpg",))
    for bad in ("nan", "inf", "0"):
        one_line(run("-m", "calib.cli", "--home", str(rig.home.root), "set", "--strip-type", "pesticide-generic",
                     "--cutoff", bad), "cutoff")


# ---- the control socket ----------------------------------------------------------------------------------------

def raw(sock: Path, payload: bytes) -> bytes:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(30)
        s.connect(str(sock))
        s.sendall(payload)
        buf = b""
        while not buf.endswith(b"\n"):
            chunk = s.recv(65536)
            if not chunk:
                break
            buf += chunk
    return buf


@pytest.fixture
def daemon(tmp_path):
    rig = StationRig(tmp_path, photos=("negative.jpg",))
    d = rig.daemon().start()
    yield rig, d
    d.kill()


def test_odd_requests_get_a_one_line_reply(daemon):
    rig, d = daemon
    sock = rig.home.control_socket
    for payload, needle in [
        (b'{"cmd":"press","strip_type":["x"]}\n', "strip type"),
        (b"[" * 60000 + b"\n", "nested too deeply"),
        (b'{"cmd":"press","sample":5}\n', "sample id"),
        (b'{"cmd":"press","wait":"no"}\n', "wait"),
        (b'{"cmd":["status"]}\n', "unknown command"),
        (b'"status"\n', "JSON object"),
        (b"\xff\xfe\n", "bad request"),
    ]:
        reply = raw(sock, payload)
        assert reply.endswith(b"\n") and reply.count(b"\n") == 1, (payload[:40], reply)
        answer = json.loads(reply)
        assert answer["ok"] is False and needle in answer["error"], (payload[:40], answer)
    assert request(sock, {"cmd": "status"})["ok"] and d.running


def test_a_flood_of_idle_clients_gets_status_a_one_line_answer(daemon):
    """Clients that connect and say nothing, as fast as they can, while the technician asks for the status:
    `station status` must get the status or a one-line "try again", never a BlockingIOError."""
    rig, d = daemon
    held: list[socket.socket] = []
    stop = threading.Event()

    def flood() -> None:
        while not stop.is_set() and len(held) < 3000:
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.settimeout(5)
            try:
                s.connect(str(rig.home.control_socket))
                held.append(s)
            except OSError:
                s.close()

    flooder = threading.Thread(target=flood)
    flooder.start()
    answers: list[object] = []
    try:
        for _ in range(5):
            try:
                answers.append(request(rig.home.control_socket, {"cmd": "status"}, timeout=20))
            except ControlError as exc:
                answers.append(exc)
    finally:
        stop.set()
        flooder.join()
        for s in held:
            s.close()
    assert all(isinstance(a, ControlError) and "try again" in str(a) or isinstance(a, dict) for a in answers), answers
    # The slots held by the flood free as the server sees each connection close.
    eventually(lambda: request(rig.home.control_socket, {"cmd": "status"}).get("ok"), 20,
               "the status once the flood ends")
    assert d.running


def test_press_no_wait_is_told_busy_not_queued_while_a_sample_incubates(tmp_path):
    rig = StationRig(tmp_path, photos=("negative.jpg",))
    cfg = rig.home.config.read_text()
    rig.home.config.write_text(cfg.replace("wait_incubation = false", "wait_incubation = true"))
    d = rig.daemon().start()
    try:
        first = send_press(rig.home.control_socket)  # incubates for the strip type's 600 s
        done = run("-m", "station", "press", "--home", str(rig.home.root), "--no-wait", "--json")
        reply = json.loads(done.stdout)
        assert done.returncode == 1 and reply["ok"] is False and "busy" in reply["error"], reply
        assert "queued" not in reply
        first.close()
    finally:
        d.kill()
