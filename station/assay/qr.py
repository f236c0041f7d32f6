# Decode QR codes on white cards in the frame and tie each to the nearest cassette.
from __future__ import annotations

import math
from typing import Any

import cv2
import numpy as np

from station.assay.locate import Blob


def decode_cards(bgr: np.ndarray, cards: list[Blob]) -> list[dict[str, Any]]:
    """Only card-shaped blobs are searched: the full-frame QR detector would cost more than the whole assay."""
    found: list[dict[str, Any]] = []
    det = cv2.QRCodeDetector()
    H, W = bgr.shape[:2]
    for card in cards:
        r = 0.75 * card.length
        x0, y0 = max(0, int(card.center[0] - r)), max(0, int(card.center[1] - r))
        x1, y1 = min(W, int(card.center[0] + r)), min(H, int(card.center[1] + r))
        crop = cv2.cvtColor(bgr[y0:y1, x0:x1], cv2.COLOR_BGR2GRAY)
        # Modules a few pixels wide decode best; big cards are shrunk to save time.
        scale = min(1.0, 400.0 / max(crop.shape))
        if scale < 1.0:
            crop = cv2.resize(crop, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        text = _decode(det, crop)
        if text:
            found.append({"text": text, "center": [round(card.center[0], 1), round(card.center[1], 1)]})
    return found


def _decode(det: cv2.QRCodeDetector, grey: np.ndarray) -> str:
    # OpenCV's detector misses some codes on a plain crop that it reads once binarised or enlarged;
    # the extra tries only run when the first one fails.
    text = det.detectAndDecode(grey)[0]
    if text:
        return text
    _, bw = cv2.threshold(grey, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    text = det.detectAndDecode(bw)[0]
    if text:
        return text
    return det.detectAndDecode(cv2.resize(grey, None, fx=2, fy=2, interpolation=cv2.INTER_CUBIC))[0]


def nearest(centers: list[tuple[float, float]], point: list[float]) -> int | None:
    if not centers:
        return None
    return int(np.argmin([math.dist(c, point) for c in centers]))
