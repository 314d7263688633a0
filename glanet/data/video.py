"""Reading video files with OpenCV: probe, decode chosen frames, and map a source frame rate to the model's.

Frame counts in container headers can be wrong; decoding goes by what `read()` returns, never by
the header. Timestamps are frame index / fps (constant frame rate assumed).
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

log = logging.getLogger(__name__)

# Seek rather than decode forward when the next wanted frame is at least this many frames ahead;
# a seek costs a keyframe decode plus the frames up to the target, about a GOP (often 12–250 frames).
SEEK_GAP = 120
_EPS = 1e-6


class VideoError(OSError):
    """A video that cannot be read: missing, not a video, corrupt, or without decodable frames."""

    def __init__(self, path: str | os.PathLike[str], reason: str) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


@dataclass(frozen=True)
class VideoInfo:
    """What the container says: fps is 0.0 when it does not say; num_frames may be an estimate."""

    path: str
    fps: float
    num_frames: int
    width: int
    height: int


def _open(path: str | os.PathLike[str]) -> cv2.VideoCapture:
    p = Path(path)
    if not p.exists():
        raise VideoError(path, "file not found")
    if not p.is_file():
        raise VideoError(path, "not a file")
    cap = cv2.VideoCapture(str(p))
    if not cap.isOpened():
        cap.release()
        raise VideoError(path, "cannot be opened: not a video OpenCV can decode, or the file is corrupt")
    return cap


def _header(cap: cv2.VideoCapture) -> tuple[float, int, int, int]:
    fps = cap.get(cv2.CAP_PROP_FPS)
    fps = float(fps) if math.isfinite(fps) and 0 < fps < 10_000 else 0.0
    count = cap.get(cv2.CAP_PROP_FRAME_COUNT)
    count = int(count) if math.isfinite(count) and count > 0 else 0
    width = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH))
    height = int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
    return fps, count, width, height


def probe(path: str | os.PathLike[str], count: bool = False) -> VideoInfo:
    """Frame rate, frame count and size. With `count` (or when the header has no count) the frames are
    counted by decoding, which is exact but costs a full pass."""
    cap = _open(path)
    try:
        fps, n, width, height = _header(cap)
        if count or n <= 0:
            n = 0
            while cap.grab():
                n += 1
            if n == 0:
                raise VideoError(path, "no decodable frames")
    finally:
        cap.release()
    return VideoInfo(str(path), fps, n, width, height)


def iter_frames(path: str | os.PathLike[str]) -> Iterator[tuple[int, np.ndarray]]:
    """Every decodable frame in order as (index, (H, W, 3) uint8 BGR); VideoError if there are none."""
    cap = _open(path)
    try:
        index = 0
        while True:
            ok, frame = cap.read()
            if not ok:
                break
            yield index, frame
            index += 1
        if index == 0:
            raise VideoError(path, "opened, but no frame could be decoded (empty or corrupt)")
    finally:
        cap.release()


def read_frames(
    path: str | os.PathLike[str],
    indices: Sequence[int] | np.ndarray | None = None,
    start: int | None = None,
    end: int | None = None,
    *,
    pad_past_end: bool = False,
) -> np.ndarray:
    """Decode frames into (T, H, W, 3) uint8 BGR.

    `indices` (any order, repeats allowed) gives exactly those frames, in that order; otherwise the
    frames `start` ≤ i < `end` (default: all), stopping at the real end whatever the header says.
    An index past the real end raises VideoError, or with `pad_past_end` repeats the last frame.
    """
    if indices is not None and (start is not None or end is not None):
        raise ValueError("give indices, or start/end, not both")
    if indices is None:
        lo = 0 if start is None else int(start)
        if lo < 0 or (end is not None and end < lo):
            raise ValueError(f"bad frame range start={start}, end={end}")
        frames = _decode_range(path, lo, end)
        if not frames:
            raise VideoError(path, f"no decodable frames in [{lo}, {end if end is not None else 'end'})")
        return np.stack(frames)

    wanted = np.asarray(indices, dtype=np.int64).reshape(-1)
    if wanted.size == 0:
        raise ValueError("indices is empty")
    if wanted.min() < 0:
        raise ValueError(f"negative frame index {int(wanted.min())}")
    unique = np.unique(wanted)
    got = _decode_indices(path, unique)
    if len(got) < unique.size:
        real, last = _tail(path)
        if not pad_past_end:
            raise VideoError(
                path, f"frame {int(unique[len(got)])} asked for, but the video ends after {real} frames"
            )
        log.debug("%s: frames past the real end (%d) repeat the last frame", path, real)
        got = {i: got.get(i, last) for i in unique.tolist()}
    return np.stack([got[int(i)] for i in wanted])


def _decode_range(path: str | os.PathLike[str], lo: int, hi: int | None) -> list[np.ndarray]:
    cap = _open(path)
    try:
        index = _skip_to(cap, 0, lo, path)
        frames = []
        while hi is None or index < hi:
            ok, frame = cap.read()
            if not ok:
                break
            frames.append(frame)
            index += 1
        return frames
    finally:
        cap.release()


def _skip_to(cap: cv2.VideoCapture, index: int, target: int, path: str | os.PathLike[str]) -> int:
    """Move from frame `index` so that the next frame read is `target`; returns the index reached
    (less than `target` when the video ends first)."""
    if target - index >= SEEK_GAP and cap.set(cv2.CAP_PROP_POS_FRAMES, target):
        if round(cap.get(cv2.CAP_PROP_POS_FRAMES)) == target:
            return target
        # An inexact seek would hand back wrong frames: rewind and decode forward instead.
        if not cap.set(cv2.CAP_PROP_POS_FRAMES, 0) or round(cap.get(cv2.CAP_PROP_POS_FRAMES)) != 0:
            raise VideoError(path, f"seeking to frame {target} failed and the video could not be rewound")
        index = 0
    while index < target:
        if not cap.grab():  # grab decodes without the colour conversion
            return index
        index += 1
    return index


def _decode_indices(path: str | os.PathLike[str], unique: np.ndarray) -> dict[int, np.ndarray]:
    """The frames at the sorted `unique` indices, up to the first one past the real end."""
    cap = _open(path)
    got: dict[int, np.ndarray] = {}
    try:
        index = 0
        for target in unique.tolist():
            if _skip_to(cap, index, target, path) < target:
                break
            ok, frame = cap.read()
            if not ok:
                break
            got[target] = frame
            index = target + 1
    finally:
        cap.release()
    return got


def _tail(path: str | os.PathLike[str]) -> tuple[int, np.ndarray]:
    """The real frame count and last frame, by decoding everything (only when a header was wrong)."""
    count, last = 0, None
    for count, frame in iter_frames(path):  # noqa: B007  (the loop variables are the result)
        last = frame
    assert last is not None  # iter_frames raises when there is no frame
    return count + 1, last


def resample_indices(
    num_frames: int,
    src_fps: float,
    dst_fps: float | None,
    start: float | None = None,
    end: float | None = None,
) -> np.ndarray:
    """Source frame index for each frame at `dst_fps` (None: the source's own rate), by timestamp.

    Output frame k at time t = start + k/dst_fps shows source frame floor(t·src_fps): the newest
    frame already on screen at t. `start`/`end` (seconds) trim the video first.
    """
    if num_frames < 1:
        raise ValueError(f"num_frames = {num_frames}: a video needs at least one frame")
    if dst_fps is None:
        if start is None and end is None:
            return np.arange(num_frames, dtype=np.int64)
        dst_fps = src_fps
    if src_fps <= 0:
        raise ValueError("the source frame rate is unknown (0): cannot resample by timestamp")
    if dst_fps <= 0:
        raise ValueError(f"fps = {dst_fps} must be positive")
    t0 = start or 0.0
    duration = num_frames / src_fps
    t1 = duration if end is None else min(end, duration)
    if t1 <= t0:
        raise ValueError(f"start {t0:.3f}s is not before the end {t1:.3f}s of the video ({duration:.3f}s)")
    # Source frames shown before t1; output frames while the frame they show is one of those.
    hi = num_frames if end is None else min(num_frames, math.ceil(t1 * src_fps - _EPS))
    k = np.arange(math.ceil((t1 - t0) * dst_fps) + 2, dtype=np.float64)
    idx = np.floor((t0 + k / dst_fps) * src_fps + _EPS).astype(np.int64)
    idx = idx[idx < hi]
    if idx.size == 0:
        raise ValueError(f"no frame between {t0:.3f}s and {t1:.3f}s")
    return idx


def resampled_count(num_frames: int, src_fps: float, dst_fps: float) -> int:
    """Number of frames at `dst_fps` from `num_frames` at `src_fps` (what `resample_indices` gives)."""
    return int(resample_indices(num_frames, src_fps, dst_fps).size)


def ticks_for_frame(
    index: int, src_fps: float, dst_fps: float, next_tick: int, start: float | None = None
) -> range:
    """Output frames (from `next_tick` on) that source frame `index` fills when resampling in a stream.

    The rule of `resample_indices` (output k shows source floor((start + k/dst)·src)), for use while
    decoding sequentially without knowing the frame count. Call it for every source frame in order.
    """
    t0 = start or 0.0
    k = next_tick
    while math.floor((t0 + k / dst_fps) * src_fps + _EPS) <= index:
        k += 1
    return range(next_tick, k)
