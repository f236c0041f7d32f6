# Simulated camera: serves the photographs of a folder in name order, cycling, as a real camera would serve stills.
from __future__ import annotations

from pathlib import Path

from drivers.camera.base import Frame
from station.errors import DeviceError

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png"}


class FolderCamera:
    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        self.name = f"folder:{self.folder}"
        if not self.folder.is_dir():
            raise DeviceError(f"camera folder {self.folder} does not exist")
        self._files = sorted(p for p in self.folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not self._files:
            raise DeviceError(f"camera folder {self.folder} has no .jpg/.jpeg/.png photographs")
        self._index = -1

    def new_sample(self) -> None:
        self._index += 1

    def capture(self) -> Frame:
        # A retake re-photographs the same tray, so it serves the same file until the next sample.
        path = self._files[max(self._index, 0) % len(self._files)]
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise DeviceError(f"camera folder: cannot read {path}: {exc.strerror}") from None
        if path.suffix.lower() == ".png":
            data = _png_to_jpeg(data, path)
        return Frame(jpeg=data, source=str(path))

    def close(self) -> None:
        pass


def _png_to_jpeg(data: bytes, path: Path) -> bytes:
    import cv2
    import numpy as np

    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if img is None:
        raise DeviceError(f"camera folder: {path} is not a readable image")
    ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 95])
    return buf.tobytes()
