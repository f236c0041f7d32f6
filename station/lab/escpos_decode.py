# ESC/POS bytes back to what the paper shows: the raster images (GS v 0) stacked, every other command checked.
"""For tests and the demo: a printer's byte stream (the fake printer's file) decoded strictly, so a wrong or
truncated command is an error at its offset rather than a blank receipt that happens to pass."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

GS, ESC = 0x1D, 0x1B


@dataclass
class Decoded:
    images: list[Any] = field(default_factory=list)   # one PIL "L" image per receipt (split at each cut)
    cuts: int = 0
    feeds: int = 0                                    # lines fed (ESC d n)

    def stacked(self) -> Any:
        """All raster rows of every receipt, top to bottom (0 = black)."""
        from PIL import Image

        height = sum(i.height for i in self.images)
        width = max((i.width for i in self.images), default=0)
        out = Image.new("L", (width, height), 255)
        y = 0
        for i in self.images:
            out.paste(i, (0, y))
            y += i.height
        return out


def decode(data: bytes) -> Decoded:
    import numpy as np
    from PIL import Image

    out, rows = Decoded(), []
    i, n = 0, len(data)

    def need(k: int, what: str) -> None:
        if i + k > n:
            raise ValueError(f"offset {i}: {what} cut short ({n - i} of {k} bytes)")

    def close_receipt() -> None:
        if rows:
            out.images.append(Image.fromarray(np.vstack(rows)))
            rows.clear()

    while i < n:
        b = data[i]
        if b == GS and data[i + 1:i + 3] == b"v0":
            need(8, "GS v 0 header")
            width_bytes = data[i + 4] | data[i + 5] << 8
            height = data[i + 6] | data[i + 7] << 8
            size = width_bytes * height
            need(8 + size, f"GS v 0 raster of {width_bytes}x{height} bytes")
            bits = np.unpackbits(np.frombuffer(data, np.uint8, size, i + 8)).reshape(height, width_bytes * 8)
            rows.append(np.where(bits == 1, 0, 255).astype(np.uint8))  # a set bit is a black dot
            i += 8 + size
        elif b == GS and data[i + 1:i + 2] == b"V":
            need(3, "GS V cut")
            i += 4 if data[i + 2] in (0x41, 0x42, 65 + 32, 66 + 32) else 3
            out.cuts += 1
            close_receipt()
        elif b == ESC and data[i + 1:i + 2] == b"d":
            need(3, "ESC d feed")
            out.feeds += data[i + 2]
            i += 3
        elif b == ESC and data[i + 1:i + 2] == b"@":
            i += 2
        elif b == 0x0A:
            out.feeds += 1
            i += 1
        else:
            raise ValueError(f"offset {i}: byte 0x{b:02x} starts no command this decoder knows "
                             "(GS v 0, GS V, ESC d, ESC @, LF)")
    close_receipt()
    return out


def read_qr(image: Any) -> str | None:
    """The QR's text as OpenCV reads it from the printed pixels (None if no QR is found)."""
    import cv2
    import numpy as np

    arr = np.asarray(image.convert("L"))
    # OpenCV's detector misses about one code in fifty at the printer's 1:1 dot scale; the same pixels scaled
    # up (whole dots, nothing invented), blurred a touch or halved read where the first try did not.
    tries = (arr, cv2.resize(arr, None, fx=2, fy=2, interpolation=cv2.INTER_NEAREST),
             cv2.resize(arr, None, fx=3, fy=3, interpolation=cv2.INTER_NEAREST), cv2.GaussianBlur(arr, (3, 3), 0),
             cv2.GaussianBlur(arr, (5, 5), 0), cv2.resize(arr, None, fx=0.5, fy=0.5, interpolation=cv2.INTER_AREA))
    detectors = [cv2.QRCodeDetector()]
    if hasattr(cv2, "QRCodeDetectorAruco"):  # OpenCV >= 4.8: a second detector, reading codes the first misses
        detectors.append(cv2.QRCodeDetectorAruco())
    for detector in detectors:
        for candidate in tries:
            text, _, _ = detector.detectAndDecode(candidate)
            if text:
                return text
    return None
