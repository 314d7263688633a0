"""Temporal sampling: which frame indices make a clip. Pure numpy; random only through the rng given.

Padding rule, everywhere: a video too short for a clip repeats its LAST frame (indices are clipped to
num_frames − 1). A frozen tail keeps the motion the network sees real, where looping would add a
jump cut back to frame 0; it is also what a stream that has just started looks like.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

import numpy as np

from glanet.config import DataConfig

MODES = ("clips", "tsn")


def _check_frames(num_frames: int) -> None:
    if num_frames < 1:
        raise ValueError(f"num_frames = {num_frames}: a video needs at least one frame")


def _positive(**values: int) -> None:
    for name, value in values.items():
        if value < 1:
            raise ValueError(f"{name} = {value} must be at least 1")


def _run(start: int, length: int, num_frames: int) -> np.ndarray:
    """`length` consecutive indices from `start`, padded by repeating the last frame."""
    return np.minimum(np.arange(start, start + length, dtype=np.int64), num_frames - 1)


# -- the paper's clips: W consecutive frames, a start every S ------------------------------------


def clip_starts(num_frames: int, window: int, stride: int) -> list[int]:
    """Starts 0, S, 2S, … of every full W-frame clip; [0] (one padded clip) when the video is shorter than W.

    Frames after the last full clip are not covered (a clip starts every S frames, as in the paper).
    """
    _check_frames(num_frames)
    _positive(window=window, stride=stride)
    if num_frames <= window:
        return [0]
    return list(range(0, num_frames - window + 1, stride))


def test_clips(num_frames: int, window: int, stride: int) -> list[np.ndarray]:
    """Every clip of a video: arrays of W frame indices."""
    return [_run(s, window, num_frames) for s in clip_starts(num_frames, window, stride)]


test_clips.__test__ = False  # type: ignore[attr-defined]  # a library function, not a pytest test


def train_clips(
    num_frames: int, window: int, stride: int, max_clips: int, rng: np.random.Generator
) -> list[np.ndarray]:
    """At most `max_clips` of the video's clips, chosen with `rng` when there are more; in start order."""
    _positive(max_clips=max_clips)
    starts = clip_starts(num_frames, window, stride)
    if len(starts) > max_clips:
        chosen = np.sort(rng.choice(len(starts), size=max_clips, replace=False))
        starts = [starts[i] for i in chosen]
    return [_run(s, window, num_frames) for s in starts]


# -- TSN: equal segments, a run of consecutive frames in each ---------------------------------------


def _segment_bounds(num_frames: int, segments: int, frames_per_segment: int) -> tuple[np.ndarray, np.ndarray]:
    """Per segment the lowest start and the slack: how many further starts keep the run inside it."""
    k = np.arange(segments + 1, dtype=np.int64)
    edges = (
        k * num_frames
    ) // segments  # segment i is [edges[i], edges[i+1]), each >= frames_per_segment long
    lo = edges[:-1]
    return lo, edges[1:] - lo - frames_per_segment


def _tsn_runs(starts: np.ndarray, frames_per_segment: int) -> np.ndarray:
    runs = starts[:, None] + np.arange(frames_per_segment, dtype=np.int64)[None, :]
    return runs.reshape(-1)


def _tsn_check(num_frames: int, segments: int, frames_per_segment: int) -> bool:
    """Validate; True when every segment holds a whole run (num_frames >= segments × frames_per_segment)."""
    _check_frames(num_frames)
    _positive(segments=segments, frames_per_segment=frames_per_segment)
    return num_frames >= segments * frames_per_segment


def tsn_indices(
    num_frames: int, segments: int, frames_per_segment: int, rng: np.random.Generator | None
) -> np.ndarray:
    """segments × frames_per_segment indices: in each of `segments` equal parts a run of consecutive frames.

    Training (rng given): each run starts at random where it fits inside its segment. Test (rng None):
    each run is centred in its segment. A video shorter than segments × frames_per_segment cannot
    hold the runs apart: it gives its frames in order from the first, repeating the last (the padding
    rule of the clips), with no randomness.
    """
    length = segments * frames_per_segment
    if not _tsn_check(num_frames, segments, frames_per_segment):
        return _run(0, length, num_frames)
    lo, slack = _segment_bounds(num_frames, segments, frames_per_segment)
    offsets = slack // 2 if rng is None else rng.integers(0, slack + 1)
    return _tsn_runs(lo + offsets, frames_per_segment)


def tsn_test_indices(
    num_frames: int,
    segments: int,
    frames_per_segment: int,
    num_clips: int,
    rng: np.random.Generator | None = None,
) -> list[np.ndarray]:
    """`num_clips` TSN clips of one video for multi-clip testing.

    With `rng`: independent random clips (the authors' test: 10 random clips, scores averaged).
    Without: evenly spaced, clip c starting each run at (c + 0.5)/num_clips of its segment's slack,
    so num_clips = 1 is the centred clip of `tsn_indices(..., rng=None)`.
    """
    _positive(num_clips=num_clips)
    if rng is not None:
        return [tsn_indices(num_frames, segments, frames_per_segment, rng) for _ in range(num_clips)]
    if not _tsn_check(num_frames, segments, frames_per_segment):
        return [_run(0, segments * frames_per_segment, num_frames)] * num_clips
    lo, slack = _segment_bounds(num_frames, segments, frames_per_segment)
    # (2c+1)·slack // (2·num_clips) is floor((c + 0.5)/num_clips · slack) in integers.
    return [
        _tsn_runs(lo + ((2 * c + 1) * slack) // (2 * num_clips), frames_per_segment) for c in range(num_clips)
    ]


# -- the policy a dataset uses ------------------------------------------------------------------------


@dataclass(frozen=True)
class Sampling:
    """How a dataset turns a video of `num_frames` frames (at `fps`) into clips of frame indices.

    mode "clips" (the paper): training draws up to `max_clips` W-frame clips per video per epoch,
    testing takes every clip. mode "tsn": training draws one random TSN clip per video per epoch,
    testing takes `test_clips` evenly spaced TSN clips.
    """

    mode: str = "clips"
    fps: float = 30.0
    window: int = 30
    stride: int = 15
    max_clips: int = 20
    segments: int = 3
    frames_per_segment: int = 4
    test_clips: int = 1  # tsn only

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"sampling mode {self.mode!r} is not one of {', '.join(MODES)}")
        if self.fps <= 0:
            raise ValueError(f"fps = {self.fps} must be positive")
        _positive(
            window=self.window,
            stride=self.stride,
            max_clips=self.max_clips,
            segments=self.segments,
            frames_per_segment=self.frames_per_segment,
            test_clips=self.test_clips,
        )

    @classmethod
    def from_config(cls, cfg: DataConfig) -> Sampling:
        return cls(
            mode=cfg.sampling,
            fps=cfg.fps,
            window=cfg.window,
            stride=cfg.stride,
            max_clips=cfg.max_clips,
            segments=cfg.segments,
            frames_per_segment=cfg.frames_per_segment,
            test_clips=cfg.test_clips,
        )

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> Sampling:
        """A checkpoint's `sampling` entry (`to_dict`) back; keys this version does not know are left out."""
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in raw.items() if k in known})

    @property
    def clip_length(self) -> int:
        """Frames per clip: T of the (T, 3, H, W) tensors."""
        return self.window if self.mode == "clips" else self.segments * self.frames_per_segment

    def train(self, num_frames: int, rng: np.random.Generator) -> list[np.ndarray]:
        """The clips to train on from one video this epoch."""
        if self.mode == "clips":
            return train_clips(num_frames, self.window, self.stride, self.max_clips, rng)
        return [tsn_indices(num_frames, self.segments, self.frames_per_segment, rng)]

    def test(self, num_frames: int) -> list[np.ndarray]:
        """Every clip to evaluate one video on; deterministic."""
        if self.mode == "clips":
            return test_clips(num_frames, self.window, self.stride)
        return tsn_test_indices(num_frames, self.segments, self.frames_per_segment, self.test_clips)

    def to_dict(self) -> dict[str, Any]:
        """Plain data for the checkpoint's `sampling` entry."""
        return {
            "fps": self.fps,
            "window": self.window,
            "stride": self.stride,
            "mode": self.mode,
            "segments": self.segments,
            "frames_per_segment": self.frames_per_segment,
            "max_clips": self.max_clips,
            "test_clips": self.test_clips,
        }
