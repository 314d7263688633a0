"""The authors' test sampling (GLANet's published `Dataset.py`, test_mode): each video is seen as
`draws` independent random draws of TSN frames, and the clips' logits are averaged (in glanet.evaluate).

Their `get_indices`: d = num_frames // segments; in segment i, `frames_per_segment` distinct frames
drawn uniformly from [i·d, (i+1)·d), all sorted. The last num_frames − segments·d frames are never
drawn. Pure numpy; random only through the seed given, one stream per (seed, video).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from glanet.data.sampling import Sampling

DRAWS = 10  # the authors' `for count in range(10)`


def authors_indices(
    num_frames: int, segments: int, frames_per_segment: int, rng: np.random.Generator
) -> np.ndarray:
    """One draw of `segments × frames_per_segment` sorted frame indices, as their `get_indices`.

    A video with fewer than `frames_per_segment` frames per segment makes their code raise
    (np.random.choice without replacement from too few); here it gives its frames in order from the
    first, repeating the last (glanet's padding rule, glanet.data.sampling), with no randomness.
    """
    if num_frames < 1:
        raise ValueError(f"num_frames = {num_frames}: a video needs at least one frame")
    if segments < 1 or frames_per_segment < 1:
        raise ValueError(f"segments ({segments}) and frames_per_segment ({frames_per_segment}) must be >= 1")
    length = segments * frames_per_segment
    d = num_frames // segments  # their average_duration
    if d < frames_per_segment:
        return np.minimum(np.arange(length, dtype=np.int64), num_frames - 1)
    choices = [rng.choice(d, frames_per_segment, replace=False) + i * d for i in range(segments)]
    return np.sort(np.concatenate(choices)).astype(np.int64)


def authors_layout(sampling: Sampling) -> tuple[int, int]:
    """(segments, frames_per_segment) of a checkpoint's draws: its own TSN layout; for a model trained
    on W consecutive frames ("clips"), W segments of one frame, so the clip length T stays W."""
    if sampling.mode == "tsn":
        return sampling.segments, sampling.frames_per_segment
    return sampling.window, 1


def authors_test_items(
    video_frames: Sequence[int],
    segments: int,
    frames_per_segment: int,
    draws: int = DRAWS,
    seed: int = 0,
) -> list[tuple[int, np.ndarray]]:
    """(video index, frame indices) for `draws` draws of every video; video v draws from
    `default_rng([seed, v])`, so a video's draws depend only on the seed and its place in the list."""
    if draws < 1:
        raise ValueError(f"draws = {draws} must be at least 1")
    if seed < 0:
        raise ValueError(f"seed = {seed} must be >= 0")
    items = []
    for v, n in enumerate(video_frames):
        rng = np.random.default_rng([seed, v])
        items.extend((v, authors_indices(int(n), segments, frames_per_segment, rng)) for _ in range(draws))
    return items
