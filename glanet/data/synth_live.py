"""The live demo source (`--source demo`): an endless SynthActions stream, one action after another.

It imports only the renderer, so the streaming runtime never loads the data set writer.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from glanet.data.synth_render import CLASSES, check_video_args, class_index, render_frames

__all__ = ["LiveSynth", "SynthFrame"]


@dataclass(frozen=True, eq=False)
class SynthFrame:
    """One frame of `LiveSynth`: image (H, W, 3) uint8 BGR, its stream index and time, the action, the box."""

    image: np.ndarray
    index: int
    timestamp_s: float  # index / fps: stream time, also when paced in real time
    label: int
    name: str
    box: np.ndarray  # (4,) int32 x0, y0, x1, y1, as SynthVideo.boxes
    segment: int  # which action segment of the stream


class LiveSynth:
    """An endless demo source: one action after another, a random class (never the same twice in a row) and
    a fresh scene per segment of `segment_seconds`, all from `seed`. Iterate it; `close()` ends the stream.

    With `realtime=True` frames are paced at `fps` on the monotonic clock (late frames are not dropped).
    """

    def __init__(
        self,
        seed: int = 0,
        size: int = 224,
        fps: float = 15.0,
        segment_seconds: tuple[float, float] = (3.0, 6.0),
        *,
        realtime: bool = False,
        classes: Sequence[int | str] | None = None,
    ) -> None:
        check_video_args(seed, 1, size, fps)
        lo, hi = segment_seconds
        if not 0 < lo <= hi:
            raise ValueError(f"segment_seconds ({lo}, {hi}) must satisfy 0 < low <= high")
        self.labels = sorted({class_index(c) for c in classes or CLASSES})
        if len(self.labels) < 2:
            raise ValueError(f"classes ({classes!r}) must name at least two classes so segments can change")
        self.size, self.fps, self.segment_seconds, self.realtime = size, float(fps), (lo, hi), realtime
        self._rng = np.random.default_rng(seed)
        self._stop = threading.Event()
        self._frames: Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]] = iter(())
        self._label = -1
        self._segment = -1
        self._index = 0
        self._start: float | None = None

    def _next_segment(self) -> None:
        choices = [c for c in self.labels if c != self._label]
        self._label = choices[int(self._rng.integers(len(choices)))]
        self._segment += 1
        seconds = self._rng.uniform(*self.segment_seconds)
        num_frames = max(1, round(seconds * self.fps))
        seed = int(self._rng.integers(2**63))
        self._frames = render_frames(self._label, seed, num_frames=num_frames, size=self.size, fps=self.fps)

    def __iter__(self) -> Iterator[SynthFrame]:
        return self

    def __next__(self) -> SynthFrame:
        if self._stop.is_set():
            raise StopIteration
        item = next(self._frames, None)
        if item is None:
            self._next_segment()
            item = next(self._frames)
        image, _, box = item
        if self.realtime:
            now = time.monotonic()
            if self._start is None:
                self._start = now
            if self._stop.wait(max(0.0, self._start + self._index / self.fps - now)):
                raise StopIteration
        frame = SynthFrame(
            image, self._index, self._index / self.fps, self._label, CLASSES[self._label], box, self._segment
        )
        self._index += 1
        return frame

    def close(self) -> None:
        """End the stream: iteration stops at the next frame, also from another thread mid-wait."""
        self._stop.set()

    def __enter__(self) -> LiveSynth:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
