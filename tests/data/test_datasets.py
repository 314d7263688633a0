"""glanet.data.datasets: (video, clip) items, per-epoch draws, test coverage, per-video accuracy."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from glanet.config import DataConfig
from glanet.data.datasets import FrameError, FrameFolderDataset, VideoFileDataset, video_level_accuracy
from glanet.data.lists import VideoFileRecord, VideoRecord, write_list
from glanet.data.sampling import Sampling
from glanet.data.transforms import build_transforms

CFG = DataConfig(resize=(40, 40), crop=32, window=4, stride=2, max_clips=3, fps=10.0)
SAMPLING = Sampling.from_config(CFG)
LENGTHS = [3, 8, 20, 11]  # clips of 4 every 2: 1, 3, 9, 4 → at most 3 per video in training


def _frame(i: int) -> np.ndarray:
    return np.full((48, 64, 3), 6 * i, np.uint8)


@pytest.fixture
def frames_root(tmp_path: Path) -> tuple[Path, Path]:
    records = []
    for v, n in enumerate(LENGTHS):
        rel = f"cls{v % 2}/video {v}"  # a space in the path, as lists allow
        (tmp_path / rel).mkdir(parents=True)
        for i in range(n):
            cv2.imwrite(str(tmp_path / rel / f"{i}.jpg"), _frame(i))
        records.append(VideoRecord(rel, n, v % 2))
    return tmp_path, write_list(tmp_path / "list.txt", records)


def _dataset(frames_root: tuple[Path, Path], train: bool, seed: int = 0) -> FrameFolderDataset:
    root, lst = frames_root
    return FrameFolderDataset(root, lst, SAMPLING, build_transforms(CFG, train), train=train, seed=seed)


def test_item_shapes_and_labels(frames_root: tuple[Path, Path]) -> None:
    ds = _dataset(frames_root, train=True)
    clip, label, video = ds[0]
    assert clip.shape == (4, 3, 32, 32) and clip.dtype == torch.float32
    assert label == video % 2
    batch = next(iter(DataLoader(ds, batch_size=2)))
    assert batch[0].shape == (2, 4, 3, 32, 32) and batch[1].shape == batch[2].shape == (2,)


def test_train_items_per_epoch_and_set_epoch_determinism(frames_root: tuple[Path, Path]) -> None:
    ds = _dataset(frames_root, train=True, seed=7)
    expected = sum(min(len(SAMPLING.test(n)), CFG.max_clips) for n in LENGTHS)
    assert len(ds) == expected == 1 + 3 + 3 + 3 <= CFG.max_clips * len(LENGTHS)
    per_video = np.bincount([v for v, _ in ds.items])
    assert (per_video <= CFG.max_clips).all()

    def draw(d: FrameFolderDataset) -> list[tuple[int, list[int]]]:
        return [(v, c.tolist()) for v, c in d.items]

    epoch0 = draw(ds)
    ds.set_epoch(1)
    epoch1 = draw(ds)
    assert epoch1 != epoch0 and len(epoch1) == len(epoch0)
    ds.set_epoch(0)
    assert draw(ds) == epoch0
    other = _dataset(frames_root, train=True, seed=7)
    other.set_epoch(1)
    assert draw(other) == epoch1
    ds.set_epoch(1)
    assert torch.equal(other[2][0], ds[2][0])  # the same (seed, epoch, item) → the same augmentation


def test_test_items_cover_every_clip(frames_root: tuple[Path, Path]) -> None:
    ds = _dataset(frames_root, train=False)
    want = [(v, c.tolist()) for v, n in enumerate(LENGTHS) for c in SAMPLING.test(n)]
    assert [(v, c.tolist()) for v, c in ds.items] == want and len(ds) == 17
    _, label, video = ds[len(ds) - 1]
    assert video == 3 and label == 1


def test_short_video_is_padded_with_its_last_frame(frames_root: tuple[Path, Path]) -> None:
    ds = _dataset(frames_root, train=False)
    clip, _, video = ds[0]  # video 0 has 3 frames, window 4
    assert video == 0 and torch.equal(clip[3], clip[2]) and not torch.equal(clip[1], clip[2])


def test_missing_frame_names_the_path(frames_root: tuple[Path, Path]) -> None:
    root, _ = frames_root
    (root / "cls0" / "video 2" / "5.jpg").unlink()
    ds = _dataset(frames_root, train=False)
    index = next(i for i, (v, c) in enumerate(ds.items) if v == 2 and 5 in c.tolist())
    with pytest.raises(FrameError, match=r"video 2/5\.jpg: frame missing \(the list gives 20 frames"):
        ds[index]


def _write_video(path: Path, n: int, fps: float) -> Path:
    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (64, 48))
    for i in range(n):
        w.write(_frame(i))
    w.release()
    return path


def test_video_file_dataset(tmp_path: Path) -> None:
    records = [
        VideoFileRecord(str(_write_video(tmp_path / "a.mp4", 10, 10.0)), 0),  # 1 s → 10 frames at 10 fps
        VideoFileRecord(str(_write_video(tmp_path / "b.mp4", 40, 20.0)), 1, start=0.5),  # 1.5 s → 15 frames
        VideoFileRecord(str(tmp_path / "missing.mp4"), 1),
    ]
    test = VideoFileDataset(records, SAMPLING, build_transforms(CFG, False), train=False)
    assert [Path(p).name for p, _ in test.skipped] == ["missing.mp4"]
    assert [s.size for s in test.sources] == [10, 15]
    assert test.sources[1][:3].tolist() == [10, 12, 14]  # 20 fps → 10 fps, from 0.5 s
    assert len(test) == len(SAMPLING.test(10)) + len(SAMPLING.test(15))
    clip, label, video = test[len(test) - 1]
    assert clip.shape == (4, 3, 32, 32) and (label, video) == (1, 1)
    train = VideoFileDataset(records[:2], SAMPLING, build_transforms(CFG, True), train=True, seed=1)
    assert len(train) == 6 and train[0][0].shape == (4, 3, 32, 32)


def test_video_level_accuracy_by_hand() -> None:
    # Video 0 (label 2): clip scores average to class 2 although one clip says 0.
    # Video 1 (label 1): averages to class 0; class 1 is second → top-5 hit, top-1 miss.
    # Video 2 (label 0): one clip, right.
    probs = torch.tensor(
        [
            [0.6, 0.1, 0.3],
            [0.1, 0.1, 0.8],
            [0.5, 0.4, 0.1],
            [0.7, 0.2, 0.1],
        ]
    )
    vids = torch.tensor([0, 0, 1, 2])
    labels = torch.tensor([2, 2, 1, 0])
    acc = video_level_accuracy(probs, vids, labels)
    assert acc == {"top1": pytest.approx(2 / 3), "top5": pytest.approx(1.0), "videos": 3}
    six = torch.zeros(2, 6)
    six[0, 5] = 1.0
    six[1] = torch.tensor([0.1, 0.2, 0.3, 0.4, 0.5, 0.6])
    acc = video_level_accuracy(six, [0, 1], [5, 0])
    assert acc["top1"] == 0.5 and acc["top5"] == 0.5  # video 1: label 0 is the 6th best
    with pytest.raises(ValueError, match="different labels"):
        video_level_accuracy(probs, vids, torch.tensor([2, 1, 1, 0]))
