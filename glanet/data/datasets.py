"""Datasets of clips: frame folders (the authors' lists) and video files; per-video accuracy.

An item is one (video, clip) pair: `(clip (T, 3, H, W) float, label, video_index)`. In training each
epoch draws up to `max_clips` clips per video (the paper's ≤ 20), re-drawn by `set_epoch`; in test
the items are every test clip of every video, and `video_index` lets predictions be averaged per video.

Randomness comes only from (seed, epoch, item), so an epoch is the same whichever DataLoader worker
loads an item. `set_epoch` changes the dataset object: with `persistent_workers=True` the workers
keep their old copy, so call it before creating the epoch's iterator and leave persistent_workers off.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from glanet.data.lists import (
    ListError,
    VideoFileRecord,
    VideoRecord,
    read_list,
    read_video_csv,
    scan_video_folder,
)
from glanet.data.sampling import Sampling
from glanet.data.transforms import EvalTransform
from glanet.data.video import VideoError, VideoInfo, probe, read_frames, resample_indices

log = logging.getLogger(__name__)

Transform = Callable[[Sequence[np.ndarray], np.random.Generator | None], Tensor]
Item = tuple[Tensor, int, int]


class FrameError(FileNotFoundError):
    """A frame a list promises that is missing or unreadable."""


class _ClipDataset(Dataset):
    """The (video, clip) bookkeeping shared by both datasets; subclasses supply the frames."""

    def __init__(
        self,
        num_frames: Sequence[int],
        labels: Sequence[int],
        sampling: Sampling,
        transform: Transform,
        train: bool,
        seed: int,
    ) -> None:
        self.sampling = sampling
        self.transform = transform
        self.train = train
        self.seed = int(seed)
        self.epoch = 0
        self.video_frames = [int(n) for n in num_frames]
        self.labels = [int(label) for label in labels]
        self.items: list[tuple[int, np.ndarray]] = []  # (video index, frame indices)
        if train:
            self.set_epoch(0)
        else:
            self.items = [(v, clip) for v, n in enumerate(self.video_frames) for clip in sampling.test(n)]

    def set_epoch(self, epoch: int) -> None:
        """Draw this epoch's training clips; the same (seed, epoch) always gives the same items."""
        self.epoch = int(epoch)
        if not self.train:
            return
        self.items = []
        for v, n in enumerate(self.video_frames):
            rng = np.random.default_rng([self.seed, self.epoch, v])
            self.items.extend((v, clip) for clip in self.sampling.train(n, rng))

    @property
    def num_videos(self) -> int:
        return len(self.video_frames)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> Item:
        video, clip = self.items[index]
        frames = self.load(video, clip)
        # A separate stream per item: the augmentation does not depend on the worker or the order.
        rng = np.random.default_rng([self.seed, self.epoch, index, 1]) if self.train else None
        return self.transform(frames, rng), self.labels[video], video

    def load(self, video: int, indices: np.ndarray) -> list[np.ndarray]:
        raise NotImplementedError


class FrameFolderDataset(_ClipDataset):
    """Clips from JPEG frame folders: frames `<root>/<path>/<i>.jpg` of a `path nframes label` list."""

    def __init__(
        self,
        root: str | os.PathLike[str],
        list_file: str | os.PathLike[str] | Sequence[VideoRecord],
        sampling: Sampling,
        transform: Transform,
        train: bool,
        seed: int = 0,
    ) -> None:
        self.root = Path(root)
        if isinstance(list_file, str | os.PathLike):
            records = read_list(list_file)
        else:
            records = list(list_file)
        if not records:
            raise ListError(
                f"{list_file if isinstance(list_file, str | os.PathLike) else 'records'}: no videos"
            )
        self.records = records
        super().__init__(
            [r.num_frames for r in records], [r.label for r in records], sampling, transform, train, seed
        )

    def load(self, video: int, indices: np.ndarray) -> list[np.ndarray]:
        record = self.records[video]
        folder = self.root / record.path
        cache: dict[int, np.ndarray] = {}
        for i in np.unique(indices).tolist():
            path = folder / f"{i}.jpg"
            frame = cv2.imread(str(path), cv2.IMREAD_COLOR)
            if frame is None:
                why = "missing" if not path.exists() else "not a readable JPEG"
                raise FrameError(
                    f"{path}: frame {why} (the list gives {record.num_frames} frames for {record.path}; "
                    "re-extract the video or fix the list)"
                )
            cache[i] = frame
        return [cache[int(i)] for i in indices]


class VideoFileDataset(_ClipDataset):
    """Clips decoded from video files, resampled by timestamp to `sampling.fps`.

    Every video is probed (header only) when the dataset is made, to know its frame rate and length;
    videos that cannot be opened are left out with a warning and listed in `skipped`. Where a header
    overstates the length, the clip's frames past the real end repeat the last frame. For large
    datasets, extract frames once (`glanet.data.extract`) and use FrameFolderDataset.
    """

    def __init__(
        self,
        records: Sequence[VideoFileRecord],
        sampling: Sampling,
        transform: Transform,
        train: bool,
        seed: int = 0,
    ) -> None:
        self.records: list[VideoFileRecord] = []
        self.sources: list[np.ndarray] = []  # per video: source frame index of each model frame
        self.skipped: list[tuple[str, str]] = []
        for r in records:
            try:
                info: VideoInfo = probe(r.path)
                source = resample_indices(info.num_frames, info.fps, sampling.fps, r.start, r.end)
            except (VideoError, ValueError) as e:
                reason = e.reason if isinstance(e, VideoError) else str(e)
                log.warning("leaving out %s: %s", r.path, reason)
                self.skipped.append((r.path, reason))
                continue
            self.records.append(r)
            self.sources.append(source)
        if not self.records:
            raise ListError(f"none of the {len(records)} videos could be read" if records else "no videos")
        super().__init__(
            [s.size for s in self.sources], [r.label for r in self.records], sampling, transform, train, seed
        )

    def load(self, video: int, indices: np.ndarray) -> list[np.ndarray]:
        source = self.sources[video][indices]
        return list(read_frames(self.records[video].path, source, pad_past_end=True))


def video_level_accuracy(
    clip_probs: Tensor | np.ndarray,
    video_index: Tensor | np.ndarray | Sequence[int],
    labels: Tensor | np.ndarray | Sequence[int],
) -> dict[str, float | int]:
    """Average the clip scores (N, K) of each video, then top-1 / top-5 over videos.

    `video_index` and `labels` are per clip (N,), as the datasets' items give them; a video's clips
    must agree on its label. Returns {"top1", "top5", "videos"} (top5 is top-K when K < 5).
    """
    probs = torch.as_tensor(clip_probs, dtype=torch.float64)
    vids = torch.as_tensor(video_index, dtype=torch.int64).reshape(-1)
    labs = torch.as_tensor(labels, dtype=torch.int64).reshape(-1)
    if probs.ndim != 2 or probs.shape[0] != vids.numel() or vids.numel() != labs.numel():
        raise ValueError(
            f"clip_probs {tuple(probs.shape)} must be (N, K) with N = len(video_index) ({vids.numel()}) "
            f"= len(labels) ({labs.numel()})"
        )
    if vids.numel() == 0:
        raise ValueError("no clips to score")
    unique, inverse = torch.unique(vids, return_inverse=True)
    num = unique.numel()
    sums = torch.zeros(num, probs.shape[1], dtype=torch.float64).index_add_(0, inverse, probs)
    counts = torch.zeros(num, dtype=torch.float64).index_add_(
        0, inverse, torch.ones_like(vids, dtype=torch.float64)
    )
    mean = sums / counts[:, None]  # (V, K)
    video_labels = torch.full((num,), -1, dtype=torch.int64).scatter_(0, inverse, labs)
    if not torch.equal(video_labels[inverse], labs):
        raise ValueError("clips of the same video carry different labels")
    k = min(5, probs.shape[1])
    top = mean.topk(k, dim=1).indices  # (V, k)
    hit = top == video_labels[:, None]
    return {
        "top1": float(hit[:, 0].double().mean()),
        "top5": float(hit.any(dim=1).double().mean()),
        "videos": num,
    }


def open_dataset(
    root: str | os.PathLike[str],
    source: str | os.PathLike[str],
    sampling: Sampling,
    transform: Transform,
    train: bool,
    seed: int = 0,
    class_names: Sequence[str] | None = None,
) -> FrameFolderDataset | VideoFileDataset:
    """The dataset a data source names: a `path nframes label` list of frame folders under `root`,
    a CSV of video files (`path,label[,start,end]`, Kinetics style) or a folder `<class>/<video>.mp4`."""
    source = Path(source)
    if source.is_dir():
        records, _ = scan_video_folder(source)
        return VideoFileDataset(records, sampling, transform, train, seed)
    if not source.is_file():
        raise FileNotFoundError(f"list file not found: {source}")
    if source.suffix.lower() == ".csv":
        records, _ = read_video_csv(source, class_names or None, root=root or None)
        return VideoFileDataset(records, sampling, transform, train, seed)
    return FrameFolderDataset(root, source, sampling, transform, train, seed)


def build_eval_dataset_from(
    root: str | os.PathLike[str],
    records: Sequence[VideoRecord],
    preprocessing: Mapping[str, Any],
    sampling: Sampling | Mapping[str, Any],
    max_videos: int | None = None,
) -> FrameFolderDataset:
    if max_videos is not None:
        if max_videos < 1:
            raise ValueError(f"max_videos = {max_videos} must be at least 1")
        records = list(records)[:max_videos]
    samp = sampling if isinstance(sampling, Sampling) else Sampling.from_dict(sampling)
    return FrameFolderDataset(
        root, records, samp, EvalTransform.from_preprocessing(preprocessing), train=False
    )
