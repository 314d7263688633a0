"""glanet.data.sampling: the paper's clips, TSN, and the Sampling policy; edge cases and determinism."""

from __future__ import annotations

import numpy as np
import pytest

from glanet.config import DataConfig
from glanet.data import sampling as S


@pytest.mark.parametrize(
    "num_frames, starts",
    [
        (1, [0]),
        (10, [0]),  # shorter than W: one padded clip
        (30, [0]),  # == W
        (31, [0]),  # W + 1: the tail frame is not covered
        (44, [0]),
        (45, [0, 15]),  # exactly 1·S + W
        (90, [0, 15, 30, 45, 60]),  # exactly 4·S + W
        (104, [0, 15, 30, 45, 60]),
    ],
)
def test_clip_starts(num_frames: int, starts: list[int]) -> None:
    assert S.clip_starts(num_frames, 30, 15) == starts


def test_short_video_repeats_last_frame() -> None:
    (clip,) = S.test_clips(4, 6, 3)
    assert clip.tolist() == [0, 1, 2, 3, 3, 3]
    assert S.test_clips(1, 3, 1)[0].tolist() == [0, 0, 0]


def test_clips_are_consecutive_windows() -> None:
    clips = S.test_clips(50, 10, 5)
    assert len(clips) == 9
    for start, clip in zip(S.clip_starts(50, 10, 5), clips, strict=True):
        assert clip.dtype == np.int64 and clip.tolist() == list(range(start, start + 10))


@pytest.mark.parametrize("fn", [lambda: S.clip_starts(0, 30, 15), lambda: S.tsn_indices(0, 3, 4, None)])
def test_zero_frames_is_an_error_naming_it(fn) -> None:
    with pytest.raises(ValueError, match="num_frames = 0"):
        fn()


def test_train_clips_at_most_max_and_deterministic() -> None:
    n = 15 * 40 + 30  # 41 clips
    a = S.train_clips(n, 30, 15, 20, np.random.default_rng(3))
    b = S.train_clips(n, 30, 15, 20, np.random.default_rng(3))
    c = S.train_clips(n, 30, 15, 20, np.random.default_rng(4))
    assert len(a) == 20
    assert [x.tolist() for x in a] == [x.tolist() for x in b]
    assert [x.tolist() for x in a] != [x.tolist() for x in c]
    starts = [int(x[0]) for x in a]
    assert starts == sorted(set(starts)) and all(s % 15 == 0 for s in starts)
    # Fewer clips than max_clips: all of them, and the rng is not needed to choose.
    assert len(S.train_clips(100, 30, 15, 20, np.random.default_rng(0))) == 5
    with pytest.raises(ValueError, match="max_clips = 0"):
        S.train_clips(100, 30, 15, 0, np.random.default_rng(0))


def test_tsn_test_is_centred_and_train_stays_in_segment() -> None:
    idx = S.tsn_indices(30, 3, 4, None)  # segments [0,10) [10,20) [20,30): runs centred at 3, 13, 23
    assert idx.tolist() == [3, 4, 5, 6, 13, 14, 15, 16, 23, 24, 25, 26]
    rng = np.random.default_rng(0)
    for _ in range(50):
        runs = S.tsn_indices(30, 3, 4, rng).reshape(3, 4)
        assert (np.diff(runs, axis=1) == 1).all()
        for k, run in enumerate(runs):
            assert 10 * k <= run[0] and run[-1] < 10 * (k + 1)
    a = S.tsn_indices(97, 12, 1, np.random.default_rng(5))
    assert a.tolist() == S.tsn_indices(97, 12, 1, np.random.default_rng(5)).tolist()


@pytest.mark.parametrize("num_frames", [1, 2, 5, 11])
def test_tsn_shorter_than_segments_pads(num_frames: int) -> None:
    for rng in (None, np.random.default_rng(1)):
        idx = S.tsn_indices(num_frames, 3, 4, rng)
        assert idx.shape == (12,)
        assert idx.min() >= 0 and idx.max() <= num_frames - 1
        assert idx.tolist() == [min(i, num_frames - 1) for i in range(12)]  # in order, last frame repeated
    assert S.tsn_test_indices(2, 12, 1, 3)[2].tolist() == [0] + [1] * 11


@pytest.mark.parametrize("num_frames", [12, 13, 17, 40])
def test_tsn_runs_never_overlap_once_they_fit(num_frames: int) -> None:
    rng = np.random.default_rng(2)
    for _ in range(30):
        idx = S.tsn_indices(num_frames, 3, 4, rng)
        assert (np.diff(idx) >= 1).all() and idx.max() < num_frames


def test_tsn_multi_clip_test() -> None:
    assert S.tsn_test_indices(30, 3, 4, 1)[0].tolist() == S.tsn_indices(30, 3, 4, None).tolist()
    clips = S.tsn_test_indices(60, 3, 4, 4)  # segments of 20, slack 16: starts at 2, 6, 10, 14
    assert [int(c[0]) for c in clips] == [2, 6, 10, 14]
    rand = S.tsn_test_indices(60, 3, 4, 10, np.random.default_rng(0))
    assert len(rand) == 10 and all(c.shape == (12,) for c in rand)
    again = S.tsn_test_indices(60, 3, 4, 10, np.random.default_rng(0))
    assert all((a == b).all() for a, b in zip(rand, again, strict=True))


def test_sampling_policy_from_config() -> None:
    cfg = DataConfig(window=8, stride=4, max_clips=3, fps=25.0)
    s = S.Sampling.from_config(cfg)
    assert s.clip_length == 8
    train = s.train(100, np.random.default_rng(0))
    assert len(train) == 3 and all(c.shape == (8,) for c in train)
    assert len(s.test(100)) == len(S.clip_starts(100, 8, 4)) == 24
    assert s.to_dict() == {
        "fps": 25.0,
        "window": 8,
        "stride": 4,
        "mode": "clips",
        "segments": 3,
        "frames_per_segment": 4,
        "max_clips": 3,
        "test_clips": 1,
    }
    tsn = S.Sampling.from_config(DataConfig(sampling="tsn", test_clips=2))
    assert tsn.clip_length == 12
    assert len(tsn.train(50, np.random.default_rng(0))) == 1 and len(tsn.test(50)) == 2
    with pytest.raises(ValueError, match="sampling mode 'x'"):
        S.Sampling(mode="x")
