"""Shared by the source and capture tests: frames that carry their index through a codec, and draining a
capture to its end."""

from __future__ import annotations

import time

import numpy as np

from stream.sources.capture import Capture
from stream.types import Frame

BITS = 6  # the frame index, drawn as 8x8 black/white blocks along the top row: mp4v keeps those


def index_image(i: int) -> np.ndarray:
    image = np.full((48, 64, 3), 96, np.uint8)
    for bit in range(BITS):
        image[8:16, 8 * bit : 8 * bit + 8] = 255 if i >> bit & 1 else 0
    return image


def read_index(image: np.ndarray) -> int:
    return sum(1 << bit for bit in range(BITS) if image[10:14, 8 * bit + 2 : 8 * bit + 6].mean() > 128)


def drain(capture: Capture, limit_s: float = 10.0) -> list[Frame]:
    """Every frame until the end (`get` -> None with `finished`)."""
    frames: list[Frame] = []
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        frame = capture.get(timeout=0.05)
        if frame is not None:
            frames.append(frame)
        elif capture.finished:
            return frames
    raise AssertionError(f"the capture did not finish in {limit_s} s (status {capture.status})")
