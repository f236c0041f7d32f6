# On a worker thread: photograph the tray, decode and read it, then post the outcome back to the loop.
from __future__ import annotations

import logging
import threading
from collections.abc import Callable

import numpy as np

from station.decode import decode_image
from station.errors import DeviceError, StationError
from station.events import Scored
from station.striptypes import StripType

log = logging.getLogger("station.app")


def decode_jpeg(jpeg: bytes, source: str) -> np.ndarray:
    """The camera's photograph as BGR; the size is checked from the header first (station.decode)."""
    return decode_image(jpeg, source)


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
