# Test-only picamera2 + libcamera stand-ins: record every call, apply controls a few frames late, fail on request.
#
# Modelled on how the real pipeline behaves: controls set before start reach the sensor only after a few frames
# (before that, metadata shows auto-exposure values), exposure is quantised to whole sensor lines, and a
# frontend timeout surfaces as a RuntimeError from capture_request. Install with install(monkeypatch).
from __future__ import annotations

import sys
import types
from collections import deque
from dataclasses import dataclass, field

import numpy as np

LINE_US = 29.0  # an IMX708-like line time: ExposureTime comes back as a multiple of it
AUTO = {"ExposureTime": 33000, "AnalogueGain": 4.0, "ColourGains": (1.2, 2.4), "LensPosition": 1.0}


@dataclass
class World:
    """What the fake camera does; a test changes it before or between captures."""

    delay: int = 3  # frames after start before set controls are in force
    autofocus: bool = True  # Camera Module 3 has AfMode/LensPosition; v2 and HQ do not
    cameras: int = 1
    ignore: set = field(default_factory=set)  # control names the "sensor" never applies
    faults: deque = field(default_factory=deque)  # capture numbers (per open) that raise
    calls: list = field(default_factory=list)  # ("open", n), ("configure", controls), ("set_controls", c) ...
    frames: int = 0  # frames delivered in total, across opens


class AfModeEnum:
    Manual = "AfModeEnum.Manual"
    Auto = "AfModeEnum.Auto"
    Continuous = "AfModeEnum.Continuous"


class Request:
    def __init__(self, cam: Picamera2, md: dict, value: int):
        self._cam, self._md, self._value = cam, md, value

    def get_metadata(self) -> dict:
        return dict(self._md)

    def make_array(self, name: str) -> np.ndarray:
        assert name == "main"
        w, h = self._cam.config["main"]["size"]
        return np.full((h, w, 3), self._value, np.uint8)

    def release(self) -> None:
        self._cam.world.calls.append(("release",))


class Picamera2:
    world = World()

    def __init__(self, camera_num: int = 0):
        self.world.calls.append(("open", camera_num))
        if camera_num >= self.world.cameras:
            raise IndexError("list index out of range")
        self.camera_controls = {"ExposureTime": (1, 10**6, None), "AnalogueGain": (1.0, 16.0, None),
                                "AeEnable": (False, True, None), "AwbEnable": (False, True, None),
                                "ColourGains": (0.0, 32.0, None)}
        if self.world.autofocus:
            self.camera_controls |= {"AfMode": (0, 2, 0), "LensPosition": (0.0, 15.0, 1.0)}
        self.config: dict = {}
        self.controls: dict = {}
        self.started = False
        self._since_start = 0

    def create_still_configuration(self, main: dict, buffer_count: int = 1, controls: dict | None = None) -> dict:
        return {"main": dict(main), "buffer_count": buffer_count, "controls": dict(controls or {})}

    def configure(self, config: dict) -> None:
        self.world.calls.append(("configure", dict(config["controls"])))
        self.config = config
        self.controls |= config["controls"]

    def set_controls(self, controls: dict) -> None:
        self.world.calls.append(("set_controls", dict(controls), "started" if self.started else "stopped"))
        self.controls |= controls

    def start(self) -> None:
        self.world.calls.append(("start",))
        self.started, self._since_start = True, 0

    def capture_request(self) -> Request:
        assert self.started, "capture before start"
        self._since_start += 1
        self.world.calls.append(("capture", self._since_start))
        if self._since_start in self.world.faults:
            self.world.faults.remove(self._since_start)
            raise RuntimeError("Camera frontend has timed out!")
        self.world.frames += 1
        md = dict(AUTO)
        if self._since_start > self.world.delay:
            c = self.controls
            applied = {"ExposureTime": int(round(c["ExposureTime"] / LINE_US) * LINE_US),
                       "AnalogueGain": c["AnalogueGain"], "ColourGains": tuple(c["ColourGains"])}
            if "LensPosition" in c:
                applied["LensPosition"] = c["LensPosition"]
            md |= {k: v for k, v in applied.items() if k not in self.world.ignore}
        if not self.world.autofocus:
            md.pop("LensPosition")
        md["SensorTimestamp"] = self.world.frames
        return Request(self, md, value=self.world.frames % 250)

    def stop(self) -> None:
        self.world.calls.append(("stop",))
        self.started = False

    def close(self) -> None:
        self.world.calls.append(("close",))


def install(monkeypatch, world: World | None = None) -> World:
    """Put fake `picamera2` and `libcamera` modules in sys.modules for this test; returns the world to steer."""
    world = world or World()
    cam_cls = type("Picamera2", (Picamera2,), {"world": world})
    picamera2 = types.ModuleType("picamera2")
    picamera2.Picamera2 = cam_cls
    libcamera = types.ModuleType("libcamera")
    libcamera.controls = types.SimpleNamespace(AfModeEnum=AfModeEnum)
    monkeypatch.setitem(sys.modules, "picamera2", picamera2)
    monkeypatch.setitem(sys.modules, "libcamera", libcamera)
    return world
