"""Frames that carry their own index in flat grey levels a video codec keeps: for the video tests."""

from __future__ import annotations

import numpy as np


def marked(i: int) -> np.ndarray:
    """64×48, marked with i: left half 35·(i // 7), right half 35·(i % 7), steps no codec blurs."""
    f = np.empty((48, 64, 3), np.uint8)
    f[:, :32], f[:, 32:] = 35 * (i // 7), 35 * (i % 7)
    return f


def index_of(frame: np.ndarray) -> int:
    w = frame.shape[1]
    left, right = frame[:, w // 10 : w * 4 // 10].mean(), frame[:, w * 6 // 10 : w * 9 // 10].mean()
    return 7 * round(float(left) / 35) + round(float(right) / 35)
