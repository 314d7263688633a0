"""The attention heat map: one colouring for the live overlay and the evaluation figures, so a map looks
the same wherever it is shown."""

from __future__ import annotations

import cv2
import numpy as np


def heatmap(attn: np.ndarray, width: int, height: int) -> np.ndarray:
    """Colour an attention map (h, w) as a (height, width, 3) uint8 BGR image (JET: red is high).

    Min-max normalised (a constant map becomes all 0, i.e. blue), then bilinear up-sampling as in the
    paper's Fig. 1, then the colour map.
    """
    attn = np.asarray(attn)
    if attn.ndim != 2 or attn.size == 0:
        raise ValueError(f"attention map must be a non-empty 2-D array (h, w), got shape {attn.shape}")
    if width < 1 or height < 1:
        raise ValueError(f"heat map size must be positive, got {width}x{height}")
    a = np.nan_to_num(attn.astype(np.float32), nan=0.0, posinf=0.0, neginf=0.0)
    lo, hi = float(a.min()), float(a.max())
    a = (a - lo) / (hi - lo) if hi - lo > 1e-12 else np.zeros_like(a)
    # to 8 bits before up-sampling: a uint8 resize is several times faster than a float one at 1080p,
    # and bilinear interpolation between 8-bit levels is within one level of the float result
    gray = np.round(a * 255.0).astype(np.uint8)  # (h, w)
    up = cv2.resize(gray, (int(width), int(height)), interpolation=cv2.INTER_LINEAR)  # (height, width)
    return cv2.applyColorMap(up, cv2.COLORMAP_JET)
