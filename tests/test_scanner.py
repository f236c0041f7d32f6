# The barcode scanner drivers: line framing, the US key map, the serial driver on a pty twin, config and doctor.
from __future__ import annotations

import os
import queue
import time
from pathlib import Path

import pytest

from drivers import registry
from drivers.scanner.base import MAX_CODE_BYTES, LineFramer, decode_code, port_baud, split_spec
from drivers.scanner.fake import FakeScanner, ScannerTwin
from drivers.scanner.keymap import US, KeyDecoder, decode_keys
from drivers.scanner.serial import SerialScanner
from station.config import parse_config
from station.errors import ConfigError
from station.home import render_config, scanner_table
from station.scans import DEFAULT_PRODUCER_PATTERNS, accept_scan, classify_code


# ---- framing: bytes → codes ---------------------------------------------------------------------------------
@pytest.mark.parametrize("ending", [b"\r", b"\n", b"\r\n"])
def test_each_line_ending_gives_one_code_per_line(ending):
    f = LineFramer()
    assert f.feed(b"S-001" + ending + b"S-002" + ending) == ["S-001", "S-002"]
    assert f.dropped == 0


def test_a_code_split_over_reads_and_cr_lf_split_between_them():
    f = LineFramer()
    assert f.feed(b"S-0") == []
    assert f.feed(b"01\r") == ["S-001"]
    assert f.feed(b"\nS-002\r") == ["S-002"]  # the LF after the CR is not an empty code


def test_chinese_in_utf8_and_gb18030_both_decode():
    text = "样品-青菜-甲01"
    f = LineFramer()
    assert f.feed(text.encode("utf-8") + b"\r\n" + text.encode("gb18030") + b"\r\n") == [text, text]


def test_garbage_lines_are_dropped_and_counted_never_raised():
    f = LineFramer()
    assert f.feed(b"\x00\x01\x02\x1b[0m\r\n\xff\xfe\x80\r\n" + os.urandom(300).replace(b"\r", b"").replace(b"\n", b"")
                  + b"\r\nS-OK\r\n")[-1] == "S-OK"
    assert f.dropped >= 2


def test_an_endless_line_is_bounded_and_the_next_code_survives():
    f = LineFramer()
    for _ in range(20):
        assert f.feed(b"A" * 1000) == []
    assert len(f._buf) <= MAX_CODE_BYTES
    assert f.feed(b"still the long one\r\nS-NEXT\r\n") == ["S-NEXT"]
    assert f.dropped == 1


def test_a_half_line_before_a_reconnect_is_not_glued_to_the_next_code():
    f = LineFramer()
    f.feed(b"S-HAL")
    f.reset()
    assert f.feed(b"S-002\r") == ["S-002"] and f.dropped == 1


def test_decode_code_refuses_blank_and_control_text():
    assert decode_code(b"  ") is None and decode_code(b"a\tb") is None and decode_code(b" S-1 ") == "S-1"


# ---- keyboard wedge: key events → codes ---------------------------------------------------------------------
SHIFT, ENTER, KPENTER = 42, 28, 96


def keys(text: str) -> list[tuple[int, int]]:
    """The events a US-layout wedge scanner sends for text, shift pressed around shifted characters."""
    rev = {}
    for code, (plain, shifted) in US.items():
        rev.setdefault(plain, (code, False))
        rev.setdefault(shifted, (code, True))
    out = []
    for ch in text:
        code, shifted = rev[ch]
        out += ([(SHIFT, 1)] if shifted else []) + [(code, 1), (code, 0)] + ([(SHIFT, 0)] if shifted else [])
    return out


def test_shifted_and_plain_characters_and_enter():
    text = "ZT-00123_ab:Q?{}|~!@#$%^&*()+\"<> x/y.z;'`=[]\\,"
    codes, unknown = decode_keys(keys(text) + [(ENTER, 1), (ENTER, 0)] + keys("S-2") + [(KPENTER, 1)])
    assert codes == [text, "S-2"] and unknown == 0


def test_unknown_keys_are_skipped_and_counted_and_releases_and_repeats_ignored():
    events = keys("S-1")[:2] + [(59, 1), (59, 0), (183, 1)] + keys("S-1")[2:] + [(30, 2), (ENTER, 1)]
    codes, unknown = decode_keys(events)  # F1 (59) and F13 (183) type nothing; a repeat of 'a' is not a key
    assert codes == ["S-1"] and unknown == 2


def test_caps_lock_swaps_letters_only_and_an_empty_enter_is_no_code():
    codes, _ = decode_keys([(58, 1), (58, 0)] + keys("ab1") + [(ENTER, 1), (ENTER, 1)])
    assert codes == ["AB1"]


def test_right_shift_held_across_characters():
    events = [(54, 1), (30, 1), (30, 0), (2, 1), (2, 0), (54, 0), (30, 1), (ENTER, 1)]
    assert decode_keys(events)[0] == ["A!a"]


def test_an_overlong_keyboard_code_is_dropped_whole():
    dec = KeyDecoder()
    for _ in range(600):
        dec.feed(30, 1)
    assert dec.feed(ENTER, 1) is None and dec.dropped == 1
    for code, value in keys("S-9"):
        dec.feed(code, value)
    assert dec.feed(ENTER, 1) == "S-9"


def test_key_numbers_are_the_kernels():
    ecodes = pytest.importorskip("evdev").ecodes
    assert (ecodes.KEY_ENTER, ecodes.KEY_KPENTER, ecodes.KEY_LEFTSHIFT, ecodes.KEY_RIGHTSHIFT) == (28, 96, 42, 54)
    names = {"1": "KEY_1", "0": "KEY_0", "q": "KEY_Q", "p": "KEY_P", "a": "KEY_A", "`": "KEY_GRAVE",
             "\\": "KEY_BACKSLASH", "z": "KEY_Z", "/": "KEY_SLASH", " ": "KEY_SPACE", "-": "KEY_MINUS"}
    for ch, name in names.items():
        assert US[getattr(ecodes, name)][0] == ch, name
    for d in "0123456789":
        assert US[getattr(ecodes, f"KEY_KP{d}")] == (d, d)


# ---- the serial driver on a real pty ------------------------------------------------------------------------
def eventually(pred, timeout=5.0, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = pred()
        if got:
            return got
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
def wired(tmp_path):
    twin = ScannerTwin(tmp_path / "by-id" / "usb-Scanner_NLS-HR32-if00")
    codes: queue.Queue[str] = queue.Queue()
    faults: list[str] = []
    scanner = SerialScanner(str(twin.link))
    scanner.start(codes.put, faults.append)
    eventually(lambda: scanner.connected, what="the scanner to connect")
    yield twin, scanner, codes, faults
    scanner.close()
    twin.close()


def test_codes_reach_the_callback_with_every_ending_and_encoding(wired):
    twin, scanner, codes, _ = wired
    twin.scan("S-001")
    twin.ending = b"\r"
    twin.scan("S-002")
    twin.ending, twin.encoding = b"\n", "gb18030"
    twin.scan("样品-甲")
    assert [codes.get(timeout=3) for _ in range(3)] == ["S-001", "S-002", "样品-甲"]
    assert scanner.status()["codes"] == 3


def test_garbage_is_told_as_a_fault_and_the_next_code_still_comes(wired):
    twin, scanner, codes, faults = wired
    twin.garbage(200, nul=True)
    twin.send(b"\r\n\x07\x1b\x9b\r\n")
    twin.scan("S-GOOD")
    assert codes.get(timeout=3) == "S-GOOD"
    eventually(lambda: any("unreadable" in f for f in faults), what="a noise fault")
    assert scanner.status()["dropped"] >= 1


def test_unplug_is_a_fault_and_a_replug_works_without_a_restart(wired):
    twin, scanner, codes, faults = wired
    twin.send(b"S-HAL")  # a code cut by the cable
    twin.unplug()
    eventually(lambda: not scanner.connected and scanner.fault, what="the unplug to be seen")
    assert str(twin.link) in scanner.fault
    time.sleep(0.5)  # the backoff: still looking, never raising
    twin.plug()
    eventually(lambda: scanner.connected, what="the reconnect")
    twin.scan("S-AFTER")
    assert codes.get(timeout=3) == "S-AFTER"
    assert any("reconnecting" in f for f in faults) and scanner.fault is None


def test_close_is_prompt_even_while_the_port_is_missing(tmp_path):
    scanner = SerialScanner(str(tmp_path / "nothing-here"))
    faults: list[str] = []
    scanner.start(lambda code: None, faults.append)
    eventually(lambda: faults, what="the missing port to be told")
    assert "nothing-here" in faults[0] and "no such serial port" in faults[0]
    t = time.monotonic()
    scanner.close()
    assert time.monotonic() - t < 2.5 and not scanner._thread.is_alive()


def test_probe_names_the_device(tmp_path):
    from drivers.errors import DeviceNotFound

    with pytest.raises(DeviceNotFound, match="nothing-here"):
        SerialScanner(str(tmp_path / "nothing-here")).probe()


def test_fake_scanner_scans_the_lines_appended_to_its_file(tmp_path):
    codes_file = tmp_path / "scans.txt"
    codes_file.write_text("OLD-1\n")  # scanned by an earlier run: not again
    fake = registry.open_device("scanner", "fake", str(codes_file))
    got: queue.Queue[str] = queue.Queue()
    fake.start(got.put)
    try:
        eventually(lambda: fake.status()["connected"], what="the fake to connect")
        with codes_file.open("a") as f:
            f.write("S-FAKE-1\nZT0042\n")
        try:
            assert [got.get(timeout=3), got.get(timeout=3)] == ["S-FAKE-1", "ZT0042"]
        except queue.Empty:
            raise AssertionError(f"{fake.status()} sent={fake.twin.sent} alive={fake._thread.is_alive()}") from None
        assert got.empty()
    finally:
        fake.close()
    assert isinstance(fake, FakeScanner)


def test_registry_specs():
    assert registry.open_device("scanner", "none", "") is None
    assert split_spec("", registry.names("scanner")) == ("none", "")
    assert split_spec("serial:/dev/ttyACM0@115200", registry.names("scanner")) == ("serial", "/dev/ttyACM0@115200")
    assert port_baud("/dev/ttyACM0@115200", 9600) == ("/dev/ttyACM0", 115200)
    assert port_baud("/dev/serial/by-id/usb-x", 9600) == ("/dev/serial/by-id/usb-x", 9600)
    s = registry.open_device("scanner", "serial", "/dev/ttyACM9@19200")
    assert (s.port, s.baud) == ("/dev/ttyACM9", 19200)


# ---- keyboard mode: a real device through uinput, where the kernel offers one ----------------------------------
def test_hid_scanner_reads_a_uinput_keyboard():
    evdev = pytest.importorskip("evdev")
    if not os.access("/dev/uinput", os.W_OK):
        pytest.skip("/dev/uinput is absent or not writable here (needs the uinput module and permission)")
    from drivers.scanner.hid import HidScanner

    ui = evdev.UInput({evdev.ecodes.EV_KEY: list(US) + [SHIFT, ENTER]}, name="test-wedge-scanner")
    try:
        time.sleep(0.3)  # udev makes the event node
        got: queue.Queue[str] = queue.Queue()
        scanner = HidScanner(ui.device.path)
        scanner.start(got.put)
        eventually(lambda: scanner.connected, what="the grab")
        for code, value in keys("ZT-0042") + [(ENTER, 1), (ENTER, 0)]:
            ui.write(evdev.ecodes.EV_KEY, code, value)
            ui.syn()
        assert got.get(timeout=3) == "ZT-0042"
        scanner.close()
    finally:
        ui.close()


def test_hid_scanner_missing_device_is_a_fault_naming_it(tmp_path):
    from drivers.scanner.hid import HidScanner

    faults: list[str] = []
    scanner = HidScanner(str(tmp_path / "event-kbd-gone"))
    scanner.start(lambda code: None, faults.append)
    try:
        eventually(lambda: faults, what="a fault")
    finally:
        scanner.close()
    assert "event-kbd-gone" in faults[0] and ("no such input device" in faults[0] or "evdev" in faults[0])


# ---- what a code means, and the config --------------------------------------------------------------------------
def test_classify_code():
    assert classify_code("ZT0012345", DEFAULT_PRODUCER_PATTERNS) == ("producer", "ZT0012345")
    assert classify_code("S-2026-0001", DEFAULT_PRODUCER_PATTERNS) == ("sample", "S-2026-0001")
    url = [r"^https://trace\.example\.cn/card\?code=(\w+)$"]
    assert classify_code("https://trace.example.cn/card?code=ZT77", url) == ("producer", "ZT77")
    assert accept_scan("S-\u0007", ()) == "sample 'S-\\x07': sample id must be printable text (no control characters)"
    assert "at most 120" in accept_scan("S" * 200, ())


def _config(scanner: str) -> str:
    return render_config(station="st-1", grid="a/b/c", pin_factory="mock") + scanner


def test_config_without_a_scanner_table_still_loads():
    cfg = parse_config(_config(""))
    assert cfg.scanner.driver == "none" and cfg.scanner.producer_patterns == DEFAULT_PRODUCER_PATTERNS


def test_config_with_the_written_table():
    cfg = parse_config(_config(scanner_table("serial:/dev/serial/by-id/usb-x@115200")))
    assert (cfg.scanner.driver, cfg.scanner.target) == ("serial", "/dev/serial/by-id/usb-x@115200")


@pytest.mark.parametrize(("table", "key", "words"), [
    ('[scanner]\ndevice = "usb:/dev/x"\n', "scanner.device", "'usb:/dev/x' is not a scanner; give serial:PORT"),
    ('[scanner]\ndevice = "serial:"\n', "scanner.device", "needs a path after the colon"),
    ('[scanner]\ndevice = 3\n', "scanner.device", "must be str"),
    ("[scanner]\nproducer_patterns = ['^ZT(']\n", "scanner.producer_patterns",
     "'^ZT(' is not a valid regular expression"),
    ("[scanner]\nproducer_patterns = '^ZT'\n", "scanner.producer_patterns", "must be a list"),
    ('[scanner]\nprefix = "ZT"\n', "scanner.prefix", "unknown key; allowed: device, producer_patterns"),
])
def test_config_errors_name_the_key_the_value_and_the_line(table, key, words):
    text = _config("\n" + table)
    with pytest.raises(ConfigError) as err:
        parse_config(text, path="station.toml")
    assert err.value.key == key and words in str(err.value)
    assert err.value.line == len(text.splitlines())  # the table's only key is the file's last line


def test_doctor_scanner_line(tmp_path):
    from station.host import checks

    assert checks.scanner("none", "")[0].level == checks.OK
    missing = checks.scanner("serial", str(tmp_path / "usb-gone@9600"))[0]
    assert missing.level == checks.FAIL and "usb-gone does not exist" in missing.detail
    twin = ScannerTwin(tmp_path / "usb-scanner")
    try:
        line = checks.scanner("serial", str(twin.link))[0]
        assert line.name == "scanner" and os.path.realpath(twin.link) in line.detail
    finally:
        twin.close()
    assert checks.scanner("fake", "/tmp/x")[0].level == checks.WARN


def test_panel_beep_is_one_short_chirp(monkeypatch):
    from drivers.panel import PIN_FACTORY_ENV, Panel
    from station.config import GpioConfig

    monkeypatch.delenv(PIN_FACTORY_ENV, raising=False)
    panel = Panel(GpioConfig(pin_factory="mock"), lambda: None)
    try:
        panel.show("negative")  # steady green; its own beep is over before ours
        time.sleep(0.4)
        lights = panel.lights()
        pin = panel.buzzer.pin
        rises, last, deadline = 0, False, time.monotonic() + 0.6
        panel.beep()
        while time.monotonic() < deadline:
            rises += bool(pin.state and not last)
            last = pin.state
            time.sleep(0.003)
        assert rises == 1 and panel.lights() == lights
    finally:
        panel.close()


def test_station_init_writes_the_scanner_and_refuses_a_bad_one(tmp_path):
    from station.errors import StationError
    from station.home import Home, init_home

    init_home(Home(tmp_path / "a"), station="st-1", grid="a/b/c", scanner="serial:/dev/serial/by-id/usb-x")
    assert 'device = "serial:/dev/serial/by-id/usb-x"' in (tmp_path / "a" / "station.toml").read_text()
    with pytest.raises(StationError, match="scanner.device: 'hdi:/dev/input/event3' is not a scanner"):
        init_home(Home(tmp_path / "b"), station="st-1", grid="a/b/c", scanner="hdi:/dev/input/event3")
    assert not Path(tmp_path / "b").exists()
