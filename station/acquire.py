# On a worker thread: photograph the tray, decode and read it, then post the outcome back to the loop.
from __future__ import annotations

import logging
import threading
import time
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
            taken_at = time.monotonic()
            score = read_photo(decode_jpeg(frame.jpeg, frame.source), strip_type)
        except (StationError, DeviceError) as exc:
            post(Scored(job, error=exc))
        except Exception as exc:  # noqa: BLE001 - a dead worker would leave the station busy for ever
            log.exception("sample %d: reading failed", job.id)
            post(Scored(job, error=StationError(f"reading the tray failed: {exc!r}")))
        else:
            post(Scored(job, frame, score, taken_at=taken_at))

    threading.Thread(target=work, name=f"sample-{job.id}", daemon=True).start()


# Enzyme inhibition (GB/T 5009.199): the rule the tester itself applies; cited as the record's cutoff.
ENZYME_CUTOFF_PCT = 50.0
DEFAULT_ANALYTE = {"enzyme-print": "organophosphates-carbamates"}


def instrument_record(rc, serial: str | None, reading, strip_types: dict) -> dict:
    """A serial instrument's Reading as the parts of a v1 record. The instrument's own verdict stands: the
    station has no photograph to second-guess it, and `raw_b64` keeps exactly what the instrument said."""
    import base64

    from station.record import bad_sample_id

    st = strip_types.get(rc.strip_type) if rc.strip_type else None
    item = reading.item
    analyte = rc.items.get(item, item) if item else (rc.analyte or (st.analyte if st else None)
                                                      or DEFAULT_ANALYTE.get(rc.dialect, rc.dialect))
    own = reading.sample_id if reading.sample_id and not bad_sample_id(reading.sample_id) else None
    cutoff = ENZYME_CUTOFF_PCT if reading.inhibition_pct is not None else (st.cutoff if st else 0.0)
    return {
        "sample": {"id": own or f"{rc.name}-{reading.record}", "producer": None, "name": reading.sample_name},
        "strip": {"type": rc.strip_type or (f"{rc.dialect}:{item}" if item else rc.dialect)[:64],
                  "analyte": (analyte or "unknown")[:64], "lot": None,
                  "slot": reading.channel if reading.channel is not None and 0 <= reading.channel <= 63 else 0},
        "reading": {"tc_ratio": reading.tc_ratio, "c_area": None, "t_area": None, "c_peak": None, "t_peak": None,
                    "snr": None, "t_signal": reading.t_signal, "c_signal": reading.c_signal,
                    "inhibition_pct": reading.inhibition_pct},
        "verdict": reading.verdict,
        # The instrument applied its own rule; id says so, cutoff is the rule it is known to apply (0 if none).
        "calibration": {"id": f"instrument:{rc.dialect}", "cutoff": cutoff},
        "instrument": {"name": rc.name, "dialect": rc.dialect, "port": rc.port, "serial": serial,
                       "record": reading.record, "reported_at": reading.reported_at,
                       "raw_b64": base64.b64encode(reading.raw).decode("ascii")},
    }
