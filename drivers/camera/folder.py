# Simulated camera: serves the photographs of a folder in name order, cycling, and fails on request like a real one.
from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass
from pathlib import Path

from drivers.camera.base import Frame
from drivers.errors import DeviceError, DeviceNotFound, DeviceTimeout

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png"}
DEVICE = "camera folder"  # how every message of this camera begins
# What fail_next accepts by name: the faults a USB camera shows in the field.
FAULTS = ("timeout", "unplugged", "corrupt")


@dataclass(frozen=True)
class Capture:
    """One capture() call, kept like gpiozero's MockPin.states: the file it would serve and what happened."""

    source: str
    outcome: str  # "ok", a FAULTS name, or the repr of an injected exception


class FolderCamera:
    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        self.name = f"folder:{self.folder}"
        if not self.folder.is_dir():
            raise DeviceNotFound(DEVICE, f"{self.folder} does not exist")
        self._files = sorted(p for p in self.folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not self._files:
            raise DeviceError(DEVICE, f"{self.folder} has no .jpg/.jpeg/.png photographs")
        self._index = -1
        self.captures: list[Capture] = []
        # A test arms faults on its own thread while the daemon captures on a worker: one lock for both lists.
        self._lock = threading.Lock()
        self._faults: deque[str | BaseException] = deque()

    def fail_next(self, fault: str | BaseException, count: int = 1) -> None:
        """Make the next `count` captures fail, the way OctoPrint's VirtualPrinter takes simulated_errors.

        fault is "timeout" (DeviceTimeout), "unplugged" (DeviceNotFound), "corrupt" (JPEG bytes that decode to
        nothing, returned as if all were well), or an exception instance to raise as it is (say, a cv2.error).
        """
        if isinstance(fault, str) and fault not in FAULTS:
            raise ValueError(f"fault {fault!r} unknown; one of {', '.join(FAULTS)} or an exception")
        with self._lock:
            self._faults.extend([fault] * count)

    def new_sample(self) -> None:
        self._index += 1

    def capture(self) -> Frame:
        # A retake re-photographs the same tray, so it serves the same file until the next sample.
        path = self._files[max(self._index, 0) % len(self._files)]
        with self._lock:
            fault = self._faults.popleft() if self._faults else None
            outcome = "ok" if fault is None else fault if isinstance(fault, str) else repr(fault)
            self.captures.append(Capture(str(path), outcome))
        if isinstance(fault, BaseException):
            raise fault
        if fault == "timeout":
            raise DeviceTimeout(DEVICE, f"no frame within the timeout (simulated, serving {path.name})")
        if fault == "unplugged":
            raise DeviceNotFound(DEVICE, f"{self.folder}: device went away (simulated unplugging)")
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise DeviceError(DEVICE, f"cannot read {path}: {exc.strerror}") from None
        if path.suffix.lower() == ".png":
            data = _png_to_jpeg(data, path)
        if fault == "corrupt":
            # A JPEG start marker followed by nothing decodable: what a frame cut short by a USB reset looks like.
            data = data[:2] + bytes(62)
        return Frame(jpeg=data, source=str(path))

    def close(self) -> None:
        pass


def _png_to_jpeg(data: bytes, path: Path) -> bytes:
    import cv2
    import numpy as np

    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if img is None:
        raise DeviceError(DEVICE, f"{path} is not a readable image")
    ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 95])
    return buf.tobytes()
