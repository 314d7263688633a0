"""glanet.data.video: probing and decoding tiny videos, wrong headers, unreadable files, resampling."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from marked_frames import index_of, marked

from glanet.data import video
from glanet.data.video import VideoError, probe, read_frames, resample_indices, ticks_for_frame


def _write(path: Path, n: int, fps: float = 25.0, fourcc: str = "mp4v") -> Path:
    """n frames of 64×48, frame i marked with i."""
    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), fps, (64, 48))
    assert w.isOpened()
    for i in range(n):
        w.write(marked(i))
    w.release()
    return path


def test_probe_and_read_all(tmp_path: Path) -> None:
    p = _write(tmp_path / "a.mp4", 20)
    info = probe(p)
    assert (info.fps, info.num_frames, info.width, info.height) == (25.0, 20, 64, 48)
    frames = read_frames(p)
    assert frames.shape == (20, 48, 64, 3) and frames.dtype == np.uint8
    assert [index_of(f) for f in frames] == list(range(20))


def test_read_indices_any_order_with_repeats(tmp_path: Path) -> None:
    p = _write(tmp_path / "a.mp4", 20)
    frames = read_frames(p, [5, 2, 2, 19, 0])
    assert [index_of(f) for f in frames] == [5, 2, 2, 19, 0]
    assert [index_of(f) for f in read_frames(p, start=3, end=7)] == [3, 4, 5, 6]


def test_seeking_gives_the_same_frames(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    p = _write(tmp_path / "a.mp4", 30)
    sequential = read_frames(p, [1, 17, 28])
    monkeypatch.setattr(video, "SEEK_GAP", 4)
    assert np.array_equal(read_frames(p, [1, 17, 28]), sequential)


def test_wrong_header_count_stops_at_real_end(tmp_path: Path) -> None:
    p = _write(tmp_path / "a.avi", 30, fourcc="MJPG")
    data = p.read_bytes()
    p.write_bytes(data[: int(len(data) * 0.7)])  # truncated: the header still says 30
    assert probe(p).num_frames == 30
    real = probe(p, count=True).num_frames
    assert 0 < real < 30
    assert len(read_frames(p)) == real
    with pytest.raises(VideoError, match=f"ends after {real} frames"):
        read_frames(p, [0, 29])
    padded = read_frames(p, [0, real - 1, 29], pad_past_end=True)
    assert np.array_equal(padded[2], padded[1])


def test_missing_corrupt_and_empty_files(tmp_path: Path) -> None:
    with pytest.raises(VideoError, match="file not found") as e:
        read_frames(tmp_path / "none.mp4")
    assert e.value.path.endswith("none.mp4") and e.value.reason == "file not found"
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"not a video at all" * 50)
    for fn in (probe, read_frames):
        with pytest.raises(VideoError, match=r"bad\.mp4: cannot be opened"):
            fn(bad)
    empty = _write(tmp_path / "empty.avi", 0, fourcc="MJPG")  # opens, but holds no frame
    with pytest.raises(VideoError, match=r"empty\.avi: .*no .*decod"):
        read_frames(empty)
    with pytest.raises(VideoError, match="no decodable frames"):
        probe(empty)


def test_resample_indices_by_timestamp() -> None:
    assert resample_indices(10, 25.0, None).tolist() == list(range(10))
    assert resample_indices(10, 30.0, 15.0).tolist() == [0, 2, 4, 6, 8]
    up = resample_indices(25, 25.0, 30.0)  # 1 s at 25 fps → 30 frames at 30 fps
    assert up.size == 30 and up[0] == 0 and up[-1] == 24 and (np.diff(up) >= 0).all()
    assert resample_indices(100, 10.0, 10.0, start=2.0, end=3.0).tolist() == list(range(20, 30))
    with pytest.raises(ValueError, match="frame rate is unknown"):
        resample_indices(10, 0.0, 30.0)


@pytest.mark.parametrize("src, dst", [(25.0, 30.0), (30.0, 15.0), (29.97, 25.0), (30.0, 30.0)])
def test_streaming_ticks_agree_with_resample_indices(src: float, dst: float) -> None:
    n = 97
    want = resample_indices(n, src, dst)
    got, tick = [], 0
    for j in range(n):
        r = ticks_for_frame(j, src, dst, tick)
        got += [j] * len(r)
        tick = r.stop
    assert got == want.tolist()
