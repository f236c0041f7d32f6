# The drivers: the panel on gpiozero's MockFactory pins, the folder camera and its faults, the registry, the errors.
from __future__ import annotations

import time

import pytest

from drivers import registry
from drivers.camera.folder import FolderCamera
from drivers.errors import DeviceBusy, DeviceNotFound, DeviceTimeout, ProtocolError, Unsupported
from drivers.panel import INDICATIONS, PIN_FACTORY_ENV, Panel
from station.config import CameraConfig, GpioConfig
from station.errors import DeviceError


@pytest.fixture
def panel(monkeypatch):
    monkeypatch.delenv(PIN_FACTORY_ENV, raising=False)  # it would win over the config's mock pins
    presses: list[float] = []
    p = Panel(GpioConfig(debounce_ms=80, pin_factory="mock"), lambda: presses.append(time.monotonic()))
    p.presses = presses
    yield p
    p.close()


def test_press_reaches_callback_through_the_pin(panel):
    pin = panel.button.pin
    pin.drive_low()
    pin.drive_high()
    assert len(panel.presses) == 1


def test_bounces_within_debounce_are_one_press(panel):
    pin = panel.button.pin
    for _ in range(5):  # contact bounce: MockPin ignores bounce_time, the panel must not
        pin.drive_low()
        pin.drive_high()
    assert len(panel.presses) == 1
    time.sleep(0.1)
    pin.drive_low()
    pin.drive_high()
    assert len(panel.presses) == 2


@pytest.mark.parametrize("state", ["negative", "positive", "invalid"])
def test_steady_states_drive_the_led_pins(panel, state):
    panel.show(state)
    (green, amber, red), _ = INDICATIONS[state]
    pins = {"green": panel.green.pin.state, "amber": panel.amber.pin.state, "red": panel.red.pin.state}
    assert pins == {"green": green == "on", "amber": amber == "on", "red": red == "on"}


def test_positive_beeps_three_times(panel):
    panel.show("positive")
    buzz = panel.buzzer.pin
    rises, last, deadline = 0, False, time.monotonic() + 1.5
    while time.monotonic() < deadline:
        now = buzz.state
        rises += bool(now and not last)
        last = now
        time.sleep(0.005)
    assert rises == 3


def test_unknown_state_is_refused(panel):
    with pytest.raises(ValueError, match="panel state 'maybe' unknown"):
        panel.show("maybe")


def test_folder_camera_cycles_in_name_order_and_repeats_for_retakes(tmp_path):
    import cv2
    import numpy as np

    for name in ("b.jpg", "a.jpg", "c.png"):
        cv2.imwrite(str(tmp_path / name), np.full((8, 8, 3), 200, np.uint8))
    (tmp_path / "notes.txt").write_text("not a photograph")
    cam = FolderCamera(tmp_path)
    seen = []
    for _ in range(4):
        cam.new_sample()
        first = cam.capture().source
        assert cam.capture().source == first  # a retake photographs the same tray
        seen.append(first.rsplit("/", 1)[1])
    assert seen == ["a.jpg", "b.jpg", "c.png", "a.jpg"]


def test_folder_camera_errors_name_the_folder(tmp_path):
    with pytest.raises(DeviceError, match=f"{tmp_path}/nope does not exist"):
        FolderCamera(tmp_path / "nope")
    with pytest.raises(DeviceNotFound, match="^camera folder: "):  # and a FileNotFoundError to those who ask
        FolderCamera(tmp_path / "nope")
    with pytest.raises(DeviceError, match="has no .jpg"):
        FolderCamera(tmp_path)



def test_idle_is_a_heartbeat_not_the_steady_green_of_a_negative(panel):
    panel.show("idle")
    seen = set()
    deadline = time.monotonic() + 2.2
    while time.monotonic() < deadline:
        seen.add(bool(panel.green.pin.state))
        time.sleep(0.01)
    assert seen == {True, False}
    assert not panel.red.pin.state and not panel.amber.pin.state


# ---- the error tree: each is also its builtin, and names its device first -------------------------------------

@pytest.mark.parametrize(("cls", "builtin"), [
    (DeviceError, Exception), (DeviceNotFound, FileNotFoundError), (DeviceBusy, OSError),
    (DeviceTimeout, TimeoutError), (Unsupported, ValueError), (ProtocolError, ValueError),
])
def test_every_device_error_is_its_builtin_and_starts_with_the_device(cls, builtin):
    with pytest.raises(builtin) as err:
        raise cls("camera /dev/video0", "cannot open")
    assert isinstance(err.value, DeviceError)
    assert str(err.value) == "camera /dev/video0: cannot open"
    assert err.value.device == "camera /dev/video0" and err.value.message == "cannot open"
    assert cls.__doc__ and "\n" not in cls.__doc__.strip()


def test_drivers_import_nothing_of_station():
    import subprocess
    import sys

    code = ("import sys, drivers.errors, drivers.registry, drivers.panel, drivers.camera.folder; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('station', 'calib')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


# ---- the registry: role + name → driver, `fake` for every role --------------------------------------------------

def test_registry_names_every_role_and_a_fake_for_each():
    assert registry.names("camera") == ("folder", "v4l2", "picamera2", "fake", "none")
    assert registry.names("reader") == ("gold-csv", "enzyme-print", "frame-crc8", "fake")
    assert registry.names("panel") == ("gpiozero", "fake")
    assert registry.names("scanner") == ("serial", "hid", "fake", "none")
    assert "scanner" in registry.roles()
    assert all("fake" in registry.names(role) for role in registry.roles())


@pytest.mark.parametrize(("role", "name", "words"), [
    ("camera", "usb", "camera: driver 'usb' unknown; one of folder, v4l2, picamera2, fake, none"),
    ("panel", "hat", "panel: driver 'hat' unknown; one of gpiozero, fake"),
    ("turntable", "fake", "driver registry: role 'turntable' unknown; one of " + ", ".join(registry.roles())),
    ("printer", "lp", "printer: driver 'lp' unknown; one of escpos-serial, escpos-usb, escpos-file, fake"),
])
def test_registry_refuses_unknown_names_and_lists_the_known(role, name, words):
    with pytest.raises(Unsupported) as err:
        registry.factory(role, name)
    assert str(err.value) == words and isinstance(err.value, ValueError)


def test_registry_builds_the_fake_camera_from_its_config(tmp_path):
    _photos(tmp_path, "a.jpg")
    cam = registry.open_device("camera", "fake", CameraConfig(driver="fake", folder="imgs"), lambda p: tmp_path / p)
    assert isinstance(cam, FolderCamera) and cam.folder == tmp_path / "imgs"


def test_the_fake_panel_is_mock_pins_even_where_the_environment_names_real_ones(monkeypatch):
    from gpiozero.pins.mock import MockFactory

    monkeypatch.setenv(PIN_FACTORY_ENV, "lgpio")
    p = registry.open_device("panel", "fake", GpioConfig(pin_factory="lgpio"), lambda: None)
    try:
        assert isinstance(p.button.pin_factory, MockFactory)
    finally:
        p.close()


# ---- which pins: $GPIOZERO_PIN_FACTORY, then gpio.pin_factory, then gpiozero's default ------------------------

@pytest.fixture
def gpiozero_default():
    """gpiozero's shared Device.pin_factory set to mock pins, and reset after, so no test leaks it to the next."""
    from gpiozero import Device
    from gpiozero.pins.mock import MockFactory

    Device.pin_factory = MockFactory()
    yield Device.pin_factory
    Device.pin_factory.close()
    Device.pin_factory = None


def test_the_environment_wins_over_the_config(monkeypatch):
    from gpiozero.pins.mock import MockFactory

    monkeypatch.setenv(PIN_FACTORY_ENV, "mock")
    p = Panel(GpioConfig(pin_factory="lgpio"), lambda: None)  # lgpio would fail here: no /dev/gpiochip
    try:
        assert p.pin_factory_name == "mock" and isinstance(p.button.pin_factory, MockFactory)
    finally:
        p.close()


def test_the_config_names_the_pins_when_the_environment_does_not(monkeypatch, gpiozero_default):
    monkeypatch.delenv(PIN_FACTORY_ENV, raising=False)
    p = Panel(GpioConfig(pin_factory="mock"), lambda: None)
    try:
        assert p.pin_factory_name == "mock" and p.button.pin_factory is not gpiozero_default
    finally:
        p.close()


def test_neither_leaves_the_choice_to_gpiozero(monkeypatch, gpiozero_default):
    monkeypatch.delenv(PIN_FACTORY_ENV, raising=False)
    assert GpioConfig().pin_factory == ""  # the default is the real device: whatever gpiozero finds
    p = Panel(GpioConfig(), lambda: None)
    try:
        assert p.pin_factory_name is None and p.button.pin_factory is gpiozero_default
    finally:
        p.close()


def test_an_unknown_factory_in_the_environment_is_named(monkeypatch):
    monkeypatch.setenv(PIN_FACTORY_ENV, "nonesuch")
    with pytest.raises(Unsupported, match=r"^GPIO: pin factory \$GPIOZERO_PIN_FACTORY='nonesuch' unknown; .*mock"):
        Panel(GpioConfig(), lambda: None)


def test_a_pin_in_use_is_device_busy(monkeypatch, gpiozero_default):
    from gpiozero import LED

    monkeypatch.delenv(PIN_FACTORY_ENV, raising=False)
    held = LED(17)  # the button's pin, on the same (shared) pins
    try:
        with pytest.raises(DeviceBusy, match=r"^GPIO \(gpiozero default, button pin 17\): "):
            Panel(GpioConfig(), lambda: None)
    finally:
        held.close()


# ---- the folder camera fails on request and keeps a history ---------------------------------------------------

def _photos(folder, *names: str):
    import cv2
    import numpy as np

    folder = folder / "imgs"
    folder.mkdir(exist_ok=True)
    for name in names:
        cv2.imwrite(str(folder / name), np.full((8, 8, 3), 200, np.uint8))
    return folder


def test_folder_camera_fails_on_request_then_recovers(tmp_path):
    import cv2
    import numpy as np

    cam = FolderCamera(_photos(tmp_path, "a.jpg"))
    cam.new_sample()
    cam.fail_next("timeout")
    cam.fail_next("unplugged")
    cam.fail_next("corrupt", count=2)
    with pytest.raises(DeviceTimeout, match="^camera folder: no frame within"):
        cam.capture()
    with pytest.raises(FileNotFoundError, match="^camera folder: .*went away"):
        cam.capture()
    for _ in range(2):
        frame = cam.capture()  # corrupt comes back as if all were well: decoding is what finds it
        assert frame.jpeg[:2] == b"\xff\xd8" and cv2.imdecode(np.frombuffer(frame.jpeg, np.uint8), 1) is None
    good = cam.capture()
    assert cv2.imdecode(np.frombuffer(good.jpeg, np.uint8), 1) is not None
    assert [c.outcome for c in cam.captures] == ["timeout", "unplugged", "corrupt", "corrupt", "ok"]
    assert {c.source for c in cam.captures} == {good.source}


def test_folder_camera_raises_an_injected_exception_as_it_is(tmp_path):
    cam = FolderCamera(_photos(tmp_path, "a.jpg"))
    boom = RuntimeError("VIDIOC_DQBUF: No such device")
    cam.fail_next(boom)
    with pytest.raises(RuntimeError) as err:
        cam.capture()
    assert err.value is boom and cam.captures[-1].outcome == repr(boom)
    with pytest.raises(ValueError, match="fault 'melt' unknown; one of timeout, unplugged, corrupt"):
        cam.fail_next("melt")
