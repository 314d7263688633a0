"""SynthActions on disk: `write_dataset` writes a split in the authors' frame-folder layout (with boxes and
masks), in parallel and resumably; `python -m glanet.data.synth` (`glanet synth`) is its command line, and
`... preview` writes a contact sheet. The frames come from `glanet.data.synth_render`.
"""

from __future__ import annotations

import argparse
import logging
import multiprocessing
import os
import shutil
import sys
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from glanet.cli import Parser, number
from glanet.data.synth_render import CLASSES, check_video_args, class_index, generate_video

logger = logging.getLogger(__name__)

__all__ = ["load_ground_truth", "main", "preview", "video_seed", "write_dataset"]


def video_seed(seed: int, split: str, label: int | str, index: int) -> int:
    """The seed of video `index` of class `label` in `split`, derived from the data set's base seed."""
    entropy = [int(seed), zlib.crc32(split.encode("utf-8")), class_index(label), int(index)]
    return int(np.random.SeedSequence(entropy).generate_state(1, np.uint64)[0] >> np.uint64(1))


def load_ground_truth(file: str | os.PathLike[str]) -> tuple[np.ndarray, np.ndarray]:
    """Read a ground-truth file written by `write_dataset`: boxes (T, 4) int32 and masks (T, H, W) bool."""
    with np.load(file) as gt:
        t, h, w = (int(v) for v in gt["shape"])
        masks = np.unpackbits(gt["masks"], axis=-1, count=w).astype(bool).reshape(t, h, w)
        return gt["boxes"].astype(np.int32), masks


@dataclass(frozen=True)
class _Job:
    root: str
    split: str
    label: int
    index: int
    seed: int
    num_frames: int
    size: int
    fps: float
    mp4: bool

    @property
    def name(self) -> str:
        return f"{CLASSES[self.label]}_{self.index:06d}"

    @property
    def path(self) -> str:  # relative to root, as in the list file
        return f"{self.split}/{CLASSES[self.label]}/{self.name}"


def _ground_truth_file(root: Path, job: _Job) -> Path:
    return root / f"{job.split}_gt" / CLASSES[job.label] / f"{job.name}.npz"


def _mp4_file(root: Path, job: _Job) -> Path:
    return root / f"{job.split}_mp4" / CLASSES[job.label] / f"{job.name}.mp4"


def _is_complete(root: Path, job: _Job) -> bool:
    folder = root / job.path
    expected = {f"{i}.jpg" for i in range(job.num_frames)}
    if not folder.is_dir() or {p.name for p in folder.iterdir()} != expected:
        return False
    gt_file = _ground_truth_file(root, job)
    if not gt_file.is_file() or (job.mp4 and not _mp4_file(root, job).is_file()):
        return False
    try:
        with np.load(gt_file) as gt:
            made = (int(gt["seed"]), int(gt["label"]), float(gt["fps"]), *(int(v) for v in gt["shape"]))
    except (OSError, ValueError, KeyError):
        return False
    return made == (job.seed, job.label, job.fps, job.num_frames, job.size, job.size)


def _write_video(job: _Job) -> bool:
    """Write one video (frames, ground truth, optional mp4) unless complete; True when it was written.

    Each file appears complete or not at all: frames go to a hidden folder that is renamed into place
    last, the other files are written under a temporary name and renamed.
    """
    root = Path(job.root)
    if _is_complete(root, job):
        return False
    video = generate_video(job.label, job.seed, num_frames=job.num_frames, size=job.size, fps=job.fps)
    gt_file = _ground_truth_file(root, job)
    gt_file.parent.mkdir(parents=True, exist_ok=True)
    partial = gt_file.with_name(f".{job.name}.partial.npz")
    np.savez_compressed(
        partial,
        boxes=video.boxes,
        masks=np.packbits(video.masks, axis=-1),
        shape=np.array(video.masks.shape, np.int64),
        label=np.int64(video.label),
        seed=np.uint64(video.seed),
        fps=np.float64(video.fps),
    )
    os.replace(partial, gt_file)
    if job.mp4:
        mp4 = _mp4_file(root, job)
        mp4.parent.mkdir(parents=True, exist_ok=True)
        partial = mp4.with_name(f".{job.name}.partial.mp4")
        writer = cv2.VideoWriter(str(partial), cv2.VideoWriter.fourcc(*"mp4v"), job.fps, (job.size, job.size))
        if not writer.isOpened():
            raise OSError(f"cv2.VideoWriter cannot write {partial} (fourcc mp4v)")
        for frame in video.frames:
            writer.write(frame)
        writer.release()
        os.replace(partial, mp4)
    folder = root / job.path
    staging = folder.with_name(f".{job.name}.partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    for i, frame in enumerate(video.frames):
        if not cv2.imwrite(str(staging / f"{i}.jpg"), frame, [cv2.IMWRITE_JPEG_QUALITY, 95]):
            raise OSError(f"cv2.imwrite could not write {staging / f'{i}.jpg'}")
    shutil.rmtree(folder, ignore_errors=True)
    os.replace(staging, folder)
    return True


def _init_worker() -> None:
    cv2.setNumThreads(1)  # one process per core already


def _write_text(file: Path, text: str) -> None:
    partial = file.with_name(f".{file.name}.partial")
    partial.write_text(text, encoding="utf-8")
    os.replace(partial, file)


def write_dataset(
    root: str | os.PathLike[str],
    *,
    videos_per_class: int,
    seed: int,
    split: str,
    num_frames: int = 48,
    size: int = 128,
    fps: float = 15.0,
    workers: int = 1,
    mp4: bool = False,
    classes: Sequence[int | str] | None = None,
) -> Path:
    """Write a split in the authors' frame-folder layout and return its list file. Resumable.

    Layout under `root`:
      `<split>/<class>/<class>_<index:06d>/<i>.jpg`  frames i = 0 … T-1, JPEG quality 95
      `<split>.txt`                 a line per video: `<split>/<class>/<name> T label`, path relative to root
      `<split>_gt/<class>/<name>.npz`  ground truth, read with `load_ground_truth`: boxes (T, 4) int32,
                                       masks np.packbits(axis=-1) of (T, H, W) bool, shape, label, seed, fps
      `<split>_mp4/<class>/<name>.mp4` with `mp4=True` (fourcc mp4v)
      `classes.txt`                 all of `CLASSES`, one a line: line number = label
    Video seeds come from `video_seed(seed, split, class, index)`. `classes` restricts the classes written
    (labels stay indices into `CLASSES`). A video whose files are all there is skipped, so an interrupted
    run picks up where it stopped.
    """
    if videos_per_class < 1:
        raise ValueError(f"videos_per_class ({videos_per_class}) must be at least 1")
    if workers < 1:
        raise ValueError(f"workers ({workers}) must be at least 1")
    if not split or any(c in split for c in "/\\ \t\n") or split.startswith("."):
        raise ValueError(f"split {split!r} must be a plain name such as 'train', 'val' or 'test'")
    check_video_args(seed, num_frames, size, fps)
    labels = sorted({class_index(c) for c in classes}) if classes is not None else list(range(len(CLASSES)))
    if not labels:
        raise ValueError("classes is empty; name at least one of " + ", ".join(CLASSES))
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    _write_text(root / "classes.txt", "".join(f"{c}\n" for c in CLASSES))
    jobs = [
        _Job(str(root), split, label, i, video_seed(seed, split, label, i), num_frames, size, float(fps), mp4)
        for label in labels
        for i in range(videos_per_class)
    ]
    written = 0
    if workers == 1:
        results: Iterator[bool] = map(_write_video, jobs)
        for done, new in enumerate(results, start=1):
            written += new
            if done % 100 == 0:
                logger.info("%s: %d/%d videos", split, done, len(jobs))
    else:
        with multiprocessing.get_context("spawn").Pool(workers, initializer=_init_worker) as pool:
            for done, new in enumerate(pool.imap_unordered(_write_video, jobs, chunksize=4), start=1):
                written += new
                if done % 100 == 0:
                    logger.info("%s: %d/%d videos", split, done, len(jobs))
    list_file = root / f"{split}.txt"
    _write_text(list_file, "".join(f"{job.path} {num_frames} {job.label}\n" for job in jobs))
    kept = len(jobs) - written
    logger.info("%s: %d videos written, %d already there; list %s", split, written, kept, list_file)
    return list_file


def preview(file: str | os.PathLike[str], *, size: int = 128, seed: int = 0, num_frames: int = 48) -> Path:
    """Write a contact sheet: one row per class, 8 frames spread over a video, the box in green."""
    check_video_args(seed, num_frames, size, 15.0)
    label_w = 120
    rows = []
    for label, name in enumerate(CLASSES):
        video = generate_video(label, seed + label, num_frames=num_frames, size=size)
        tiles = []
        for t in np.linspace(0, num_frames - 1, 8).round().astype(int):
            tile = video.frames[t].copy()
            x0, y0, x1, y1 = (int(v) for v in video.boxes[t])
            cv2.rectangle(tile, (x0, y0), (x1 - 1, y1 - 1), (0, 255, 0), 1)
            tiles.append(np.pad(tile, ((1, 1), (1, 1), (0, 0)), constant_values=255))
        head = np.full((size + 2, label_w, 3), 255, np.uint8)
        cv2.putText(head, name, (4, size // 2 + 5), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
        rows.append(np.concatenate([head, *tiles], axis=1))
    file = Path(file)
    if file.parent != Path():
        file.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(file), np.concatenate(rows, axis=0)):
        raise OSError(f"cv2.imwrite could not write {file} (is the extension an image format, e.g. .png?)")
    return file


# ---------------------------------------------------------------------------------------------------------
# Command line.


def _parsers() -> tuple[argparse.ArgumentParser, argparse.ArgumentParser]:
    prog = "python -m glanet.data.synth"
    write = Parser(
        prog=prog,
        description="Write a SynthActions split (frame folders, list, ground truth).",
        epilog=f"{prog} preview --out preview.png writes a contact sheet, one row per class.",
    )
    write.add_argument("--out", required=True, type=Path, help="data set root")
    write.add_argument("--videos-per-class", required=True, type=number(int, 1), help="videos of each class")
    write.add_argument("--split", default="train", help="the split's name: <out>/<split>.txt, <out>/<split>/")
    write.add_argument(
        "--seed", type=number(int, 0), default=0, help="base seed; use a different one per split"
    )
    write.add_argument("--frames", type=number(int, 2), default=48, help="frames per video")
    write.add_argument("--size", type=number(int, 32), default=128, help="frame side in pixels")
    write.add_argument(
        "--fps",
        type=number(float, 0, above=True),
        default=15.0,
        help="frame rate written in the list and videos",
    )
    write.add_argument("--workers", type=number(int, 1), default=1, help="processes writing videos")
    write.add_argument("--mp4", action="store_true", help="also write <split>_mp4/<class>/<name>.mp4")
    write.add_argument("--classes", help="comma-separated subset of: " + ",".join(CLASSES))
    show = Parser(prog=f"{prog} preview", description="Write a contact sheet, one row per class.")
    show.add_argument("--out", required=True, type=Path, help="image file, e.g. preview.png")
    show.add_argument("--size", type=number(int, 32), default=128, help="frame side in pixels")
    show.add_argument("--seed", type=number(int, 0), default=0, help="seed of the examples")
    show.add_argument("--frames", type=number(int, 2), default=48, help="frames per example video")
    return write, show


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m glanet.data.synth [preview] ...`: a user's mistake is one line on stderr and exit code 2."""
    argv = list(sys.argv[1:] if argv is None else argv)
    write, show = _parsers()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        if argv[:1] == ["preview"]:
            args = show.parse_args(argv[1:])
            logger.info("wrote %s", preview(args.out, size=args.size, seed=args.seed, num_frames=args.frames))
            return 0
        args = write.parse_args(argv)
        list_file = write_dataset(
            args.out,
            videos_per_class=args.videos_per_class,
            seed=args.seed,
            split=args.split,
            num_frames=args.frames,
            size=args.size,
            fps=args.fps,
            workers=args.workers,
            mp4=args.mp4,
            classes=args.classes.split(",") if args.classes else None,
        )
        logger.info("wrote %s", list_file)
        return 0
    except ValueError as error:
        print(f"{write.prog}: error: {error}", file=sys.stderr)
        return 2
    except OSError as error:
        print(f"{write.prog}: error: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
