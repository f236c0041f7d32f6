# USB camera through OpenCV's V4L2 backend (CSI cameras on Bookworm need picamera2 instead).
from __future__ import annotations

from pathlib import Path

from drivers.camera.base import Frame
from drivers.errors import DeviceError, DeviceNotFound

MIN_FRESH_READS = 4  # frames read and dropped before a capture, even where the buffer-size hint is ignored


class V4L2Camera:
    def __init__(self, device: str, width: int, height: int, warmup_frames: int = 5, jpeg_quality: int = 92):
        import cv2

        self._cv2 = cv2
        self.name = f"v4l2:{device}"
        self.device = device
        target = int(device) if device.isdigit() else device
        self._cap = cv2.VideoCapture(target, cv2.CAP_V4L2)
        if not self._cap.isOpened():
            # OpenCV does not say why; a missing path at least is certain, the rest may be permissions or a busy device.
            missing = not device.isdigit() and not Path(device).exists()
            raise (DeviceNotFound if missing else DeviceError)(
                f"camera {device}", "cannot open (is it plugged in, and is the user in group video?)")
        self._cap.set(cv2.CAP_PROP_FRAME_WIDTH, width)
        self._cap.set(cv2.CAP_PROP_FRAME_HEIGHT, height)
        # The driver queues a few frames while idle; without this the first read could show the previous tray.
        self._cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)
        self._warmup = max(warmup_frames, MIN_FRESH_READS)
        self._quality = jpeg_quality

    def probe(self) -> None:
        """One frame read at start: an opened device that delivers nothing is no camera (called before READY)."""
        ok, _ = self._cap.read()
        if not ok:
            raise DeviceError(f"camera {self.device}", "opens but delivers no frames (another program using it?)")

    def new_sample(self) -> None:
        pass  # a live camera always sees the tray as it is now

    def capture(self) -> Frame:
        # Auto-exposure settles over the first frames and the driver buffers stale ones: read past them.
        for _ in range(self._warmup + 1):
            ok, img = self._cap.read()
            if not ok:
                raise DeviceError(f"camera {self.device}", "frame read failed")
        ok, buf = self._cv2.imencode(".jpg", img, [self._cv2.IMWRITE_JPEG_QUALITY, self._quality])
        if not ok:
            raise DeviceError(f"camera {self.device}", "JPEG encoding failed")
        return Frame(jpeg=buf.tobytes(), source=self.name)

    def close(self) -> None:
        self._cap.release()
