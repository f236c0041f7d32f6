# Photograph bytes → BGR array, with the pixel count read from the header and capped BEFORE OpenCV decodes.
from __future__ import annotations

import struct
from typing import TYPE_CHECKING

from station.errors import ImageError

if TYPE_CHECKING:
    import numpy as np

# The largest camera mode is 4656×3496 (16.3 MP); a 30000×30000 PNG would take 2.7 GB as BGR before any check.
MAX_PIXELS = 24_000_000
_PNG_SIG = b"\x89PNG\r\n\x1a\n"
# Start-of-frame markers carry the size; C4 (DHT), C8 (JPG) and CC (DAC) share the range but are not frames.
_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


def image_size(data: bytes, source: str) -> tuple[int, int]:
    """(width, height) from a JPEG or PNG header, without decoding; ImageError for anything else."""
    if data.startswith(_PNG_SIG):
        if len(data) < 24 or data[12:16] != b"IHDR":
            raise ImageError(f"{source}: truncated PNG header")
        return struct.unpack(">II", data[16:24])
    if data.startswith(b"\xff\xd8"):
        return _jpeg_size(data, source)
    raise ImageError(f"{source}: not a JPEG or PNG image")


def _jpeg_size(data: bytes, source: str) -> tuple[int, int]:
    i = 2
    while i + 4 <= len(data):
        if data[i] != 0xFF:
            raise ImageError(f"{source}: damaged JPEG header at byte {i}")
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte before a marker
            i += 1
            continue
        if marker in (0x01, *range(0xD0, 0xD8)):  # markers without a length
            i += 2
            continue
        (length,) = struct.unpack(">H", data[i + 2:i + 4])
        if marker in _SOF:
            if i + 9 > len(data):
                break
            height, width = struct.unpack(">HH", data[i + 5:i + 9])
            return width, height
        if marker == 0xDA or length < 2:  # scan data before any frame header: not a JPEG we can size
            break
        i += 2 + length
    raise ImageError(f"{source}: JPEG without a readable frame header")


def decode_image(data: bytes, source: str, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """Decode a JPEG or PNG to BGR, refusing empty, oversized or undecodable images with one line."""
    import cv2
    import numpy as np

    if not data:
        raise ImageError(f"{source}: the image is empty")
    width, height = image_size(data, source)
    if width == 0 or height == 0:
        raise ImageError(f"{source}: image header says {width}×{height} pixels")
    if width * height > max_pixels:
        raise ImageError(f"{source}: {width}×{height} pixels is more than the {max_pixels / 1e6:.0f} MP this "
                         "station decodes (the camera takes at most 16 MP)")
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if img is None:
        raise ImageError(f"{source}: not a decodable image (JPEG or PNG expected)")
    return img
