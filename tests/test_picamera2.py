# drivers/camera/picamera2.py against a fake picamera2 module: the control sequence, settling, errors and reopening.
from __future__ import annotations

import sys
from collections import deque

import cv2
import fake_picamera2
import numpy as np
import pytest

from drivers import registry
from drivers.camera.picamera2 import MAX_SETTLE_FRAMES, Locked, Picamera2Camera
from drivers.errors import DeviceError, DeviceNotFound, DeviceTimeout
from station.config import CameraConfig

LOCKED = Locked(exposure_us=10000, analogue_gain=1.5, red_gain=1.7, blue_gain=2.1, lens_position=6.5)


def _value(frame) -> int:
    img = cv2.imdecode(np.frombuffer(frame.jpeg, np.uint8), cv2.IMREAD_COLOR)
    return int(round(float(img.mean())))


def _names(world) -> list[str]:
    return [c[0] for c in world.calls if c[0] != "release"]


def test_controls_locked_before_start_and_frames_discarded_until_in_force(monkeypatch):
    world = fake_picamera2.install(monkeypatch, fake_picamera2.World(delay=7))
    cam = Picamera2Camera(0, 640, 480, LOCKED, warmup_frames=2)
    want = {"AeEnable": False, "ExposureTime": 10000, "AnalogueGain": 1.5, "AwbEnable": False,
            "ColourGains": (1.7, 2.1), "AfMode": "AfModeEnum.Manual", "LensPosition": 6.5}
    assert world.calls[:4] == [("open", 0), ("configure", want), ("set_controls", want, "stopped"), ("start",)]
    frame = cam.capture()
    # Frames 1-7 still carry auto-exposure values: the first kept frame is number 8, not warmup+1 = 3.
    assert _value(frame) == 8
    assert cam.last_metadata["ExposureTime"] == 10005  # quantised to lines, within tolerance
    assert cam.last_metadata["ColourGains"] == (1.7, 2.1) and cam.last_metadata["LensPosition"] == 6.5
    # Every request handed out was released, kept or not.
    assert sum(c[0] == "release" for c in world.calls) == sum(c[0] == "capture" for c in world.calls) == 8
    # A later capture drops the frames queued while idle, then keeps a settled one.
    assert _value(cam.capture()) == 11
    cam.close()
    assert _names(world)[-2:] == ["stop", "close"]


def test_fixed_focus_module_gets_no_focus_controls(monkeypatch):
    world = fake_picamera2.install(monkeypatch, fake_picamera2.World(autofocus=False, delay=1))
    cam = Picamera2Camera(0, 640, 480, LOCKED)
    sent = world.calls[2][1]
    assert "AfMode" not in sent and "LensPosition" not in sent
    assert cam.capture().source == "picamera2:0"


def test_controls_that_never_take_fail_naming_them_and_close(monkeypatch):
    world = fake_picamera2.install(monkeypatch, fake_picamera2.World(delay=1, ignore={"AnalogueGain"}))
    cam = Picamera2Camera(0, 640, 480, LOCKED, warmup_frames=0)
    with pytest.raises(DeviceTimeout, match=r"AnalogueGain 4.0 \(want 1.5\)"):
        cam.capture()
    captures = sum(c[0] == "capture" for c in world.calls)
    assert captures == 2 + MAX_SETTLE_FRAMES  # FRESH_FRAMES skipped, then the settle budget
    assert _names(world)[-2:] == ["stop", "close"]


def test_error_closes_and_next_capture_reopens_with_the_same_locks(monkeypatch):
    world = fake_picamera2.install(monkeypatch, fake_picamera2.World(delay=1, faults=deque([2])))
    cam = Picamera2Camera(0, 640, 480, LOCKED, warmup_frames=2)
    with pytest.raises(DeviceError, match="Camera frontend has timed out.*will reopen"):
        cam.capture()
    assert _names(world)[-2:] == ["stop", "close"]
    opened_before = _names(world).count("open")
    frame = cam.capture()
    names = _names(world)
    assert names.count("open") == opened_before + 1
    reopen = len(world.calls) - 1 - [c[0] for c in reversed(world.calls)].index("open")
    assert [c[0] for c in world.calls[reopen:reopen + 4]] == ["open", "configure", "set_controls", "start"]
    assert world.calls[reopen + 2][1]["ExposureTime"] == 10000
    assert frame.jpeg[:2] == b"\xff\xd8"


def test_missing_camera_and_missing_module_explain_the_fix(monkeypatch):
    fake_picamera2.install(monkeypatch, fake_picamera2.World(cameras=0))
    with pytest.raises(DeviceNotFound, match="rpicam-hello --list-cameras"):
        Picamera2Camera(0, 640, 480, LOCKED)
    monkeypatch.setitem(sys.modules, "picamera2", None)  # None in sys.modules: ImportError
    with pytest.raises(DeviceNotFound, match="apt install python3-picamera2"):
        Picamera2Camera(0, 640, 480, LOCKED)


def test_registry_builds_it_from_the_camera_config(monkeypatch):
    world = fake_picamera2.install(monkeypatch, fake_picamera2.World(delay=0))
    cfg = CameraConfig(driver="picamera2", device="0", width=1640, height=1232, exposure_us=8000, analogue_gain=2.0)
    cam = registry.open_device("camera", "picamera2", cfg, lambda p: p)
    assert world.calls[1][1]["ExposureTime"] == 8000 and world.calls[1][1]["AnalogueGain"] == 2.0
    assert cam.capture().jpeg[:2] == b"\xff\xd8"
