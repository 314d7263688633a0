"""Calibration frames for post-training quantisation, preprocessed exactly as the model sees them.

A source is `synth` (SynthActions videos generated on the fly, all classes in turn), a video file, or a
folder: its images (a frame-folder data set root: `<class>/<video>/<i>.jpg`), or else its videos, found
recursively and sampled evenly.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from engines.errors import EngineError
from glanet.data.lists import VIDEO_EXTENSIONS
from glanet.data.synth import video_seed
from glanet.data.synth_render import CLASSES, generate_video
from glanet.data.transforms import EvalTransform
from glanet.data.video import iter_frames, probe

log = logging.getLogger(__name__)

SYNTH = "synth"
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp")
SYNTH_FRAMES_PER_VIDEO = 8  # a short video per class in turn: many scenes, every action


class CalibrationError(EngineError):
    """A calibration source that gives no usable frames."""


def _evenly(n: int, k: int) -> list[int]:
    """k indices spread evenly over range(n) (all of them when k >= n)."""
    if k >= n:
        return list(range(n))
    return sorted({int(i) for i in np.linspace(0, n - 1, k).round()})


def _synth_frames(count: int, seed: int, size: int, fps: float) -> Iterator[np.ndarray]:
    videos = math.ceil(count / SYNTH_FRAMES_PER_VIDEO)
    for i in range(videos):
        label = i % len(CLASSES)
        video = generate_video(
            label,
            video_seed(seed, "calibration", label, i),
            num_frames=SYNTH_FRAMES_PER_VIDEO,
            size=size,
            fps=fps,
        )
        yield from video.frames


def _video_frames(path: Path, count: int) -> Iterator[np.ndarray]:
    """About `count` frames spread over the video (by its header's frame count, when it has one)."""
    total = probe(path).num_frames
    step = max(1, total // count) if total > 0 else 1
    kept = 0
    for index, frame in iter_frames(path):
        if index % step == 0:
            yield frame
            kept += 1
            if kept == count:
                return


def _folder_frames(root: Path, count: int) -> Iterator[np.ndarray]:
    files = sorted(p for p in root.rglob("*") if p.is_file())
    images = [p for p in files if p.suffix.lower() in IMAGE_EXTENSIONS]
    if images:
        for i in _evenly(len(images), count):
            frame = cv2.imread(str(images[i]), cv2.IMREAD_COLOR)
            if frame is None:
                raise CalibrationError(f"{images[i]}: cannot be read as an image")
            yield frame
        return
    videos = [p for p in files if p.suffix.lower() in VIDEO_EXTENSIONS]
    if not videos:
        exts = ", ".join((*IMAGE_EXTENSIONS, *VIDEO_EXTENSIONS))
        raise CalibrationError(f"{root}: no images or videos ({exts}) in this folder or below it")
    per_video = math.ceil(count / len(videos))
    for path in (videos[i] for i in _evenly(len(videos), count)):
        yield from _video_frames(path, per_video)


def raw_frames(
    source: str | os.PathLike[str], count: int, *, seed: int = 0, size: int = 128, fps: float = 15.0
) -> Iterator[np.ndarray]:
    """Up to `count` BGR uint8 frames (H, W, 3) from `source` (see the module docstring)."""
    if str(source) == SYNTH:
        return _synth_frames(count, seed, size, fps)
    path = Path(source)
    if path.is_dir():
        return _folder_frames(path, count)
    if path.is_file():
        return _video_frames(path, count)
    raise CalibrationError(f"calibration source {str(source)!r} is not 'synth', a video file or a folder")


def calibration_frames(
    source: str | os.PathLike[str],
    preprocessing: Mapping[str, Any],
    count: int = 300,
    *,
    seed: int = 0,
    fps: float = 15.0,
) -> np.ndarray:
    """(N, 3, crop, crop) float32 model inputs, N <= count, preprocessed by the export's EvalTransform."""
    if count < 1:
        raise CalibrationError(f"calibration frames ({count}) must be at least 1")
    transform = EvalTransform.from_preprocessing(preprocessing)
    # Synthetic videos are made at least as large as the resize, so preprocessing only ever shrinks them.
    size = max(128, *(int(r) for r in transform.resize))
    out = []
    for frame in raw_frames(source, count, seed=seed, size=size, fps=fps):
        out.append(transform([frame])[0].numpy())  # one at a time: a folder's images may differ in size
        if len(out) == count:
            break
    if not out:
        raise CalibrationError(f"calibration source {str(source)!r} gave no frames")
    if len(out) < count:
        log.warning("calibration: %s gave %d frames, fewer than the %d asked for", source, len(out), count)
    return np.stack(out)
