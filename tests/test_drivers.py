# The simulated drivers: the panel on gpiozero's MockFactory pins and the folder camera.
from __future__ import annotations

import time

import pytest

from drivers.camera import FolderCamera
from drivers.gpio import INDICATIONS, Panel
from station.config import GpioConfig
from station.errors import DeviceError


@pytest.fixture
def panel():
    presses: list[float] = []
    p = Panel(GpioConfig(debounce_ms=80), lambda: presses.append(time.monotonic()))
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
