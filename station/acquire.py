# On a worker thread: photograph the tray, decode and read it, then post the outcome back to the loop.
from __future__ import annotations

import logging
import threading
from collections.abc import Callable

import numpy as np

from station.errors import DeviceError, ImageError, StationError
from station.events import Scored
from station.striptypes import StripType

log = logging.getLogger("station.app")


def decode_jpeg(jpeg: bytes, source: str) -> np.ndarray:
    import cv2

    img = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    if img is None:
        raise ImageError(f"{source}: not a decodable image")
    return img


def acquire(camera, job, strip_type: StripType, post: Callable[[Scored], None]) -> None:
    """Start the worker; it touches nothing of the loop's and only posts one Scored event."""

    def work() -> None:
        from station.decide.verdict import read_photo

        try:
            frame = camera.capture()
            score = read_photo(decode_jpeg(frame.jpeg, frame.source), strip_type)
        except (StationError, DeviceError) as exc:
            post(Scored(job, error=exc))
        except Exception as exc:  # noqa: BLE001 - a dead worker would leave the station busy for ever
            log.exception("sample %d: reading failed", job.id)
            post(Scored(job, error=StationError(f"reading the tray failed: {exc!r}")))
        else:
            post(Scored(job, frame, score))

    threading.Thread(target=work, name=f"sample-{job.id}", daemon=True).start()
