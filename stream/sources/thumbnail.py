"""The small grey copy of a frame that the static-scene gate (stream/runtime/still.py) compares: made on the
capture thread, as the frame arrives, so that the model thread only compares two small arrays."""

from __future__ import annotations

import numpy as np

SIDE = 64  # pixels on the copy's long side


def small_copy(image: np.ndarray) -> np.ndarray:
    """The frame as the gate compares it: grey, `SIDE` pixels on its long side (area-averaged, which
    averages sensor noise away), blurred 3x3 (int16, for differences)."""
    # imported here: the command line imports the gate's defaults before it sets OpenCV's log level
    import cv2

    h, w = image.shape[:2]
    scale = SIDE / max(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    grey = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY) if image.ndim == 3 else image
    small = cv2.resize(grey, size, interpolation=cv2.INTER_AREA)
    return cv2.GaussianBlur(small, (3, 3), 0).astype(np.int16)
