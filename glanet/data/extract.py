"""Frame extraction: videos → frame folders `<out>/<class>/<video stem>/<i>.jpg` (i from 0).

    python -m glanet.data.extract --videos DIR_OR_CSV --out ROOT --fps 30 --short-side 256 \\
        --workers 2 [--list OUT.txt]

DIR is `<class>/<video>.mp4|avi|mkv|webm`; a CSV has rows `path,label[,start,end]`. Frames are
resampled to --fps by timestamp (the source rate when not given) and resized so the short side is
--short-side. A folder with a `.done` marker (holding the frame count) is skipped, a partial one redone;
a video that cannot be read is reported and skipped.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import shutil
import sys
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from glanet.cli import Parser, number
from glanet.data.lists import (
    ListError,
    VideoFileRecord,
    VideoRecord,
    read_class_names,
    read_video_csv,
    scan_video_folder,
    write_list,
    write_text_atomic,
)
from glanet.data.video import VideoError, iter_frames, probe, ticks_for_frame

log = logging.getLogger(__name__)

DONE = ".done"


@dataclass(frozen=True)
class ExtractJob:
    """One video to extract into `<out_root>/<rel>`."""

    video: str
    rel: str  # list path: `<class>/<video stem>`
    label: int
    start: float | None = None
    end: float | None = None


@dataclass
class ExtractSummary:
    done: int = 0
    skipped: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)  # (video, reason)
    records: list[VideoRecord] = field(default_factory=list)  # done + skipped, sorted by path


JobResult = tuple[str, ExtractJob, int, str]  # ('done' | 'skipped' | 'failed', job, frames, reason)


def read_done(folder: str | os.PathLike[str]) -> int | None:
    """The frame count in `<folder>/.done`, or None when the folder is not complete."""
    try:
        n = int((Path(folder) / DONE).read_text().strip())
    except (FileNotFoundError, NotADirectoryError, ValueError):
        return None
    return n if n > 0 else None


def _resize_short(frame: np.ndarray, short_side: int | None) -> np.ndarray:
    """(H, W, 3) → the same with the short side `short_side` (area filter to shrink, bilinear to enlarge)."""
    if not short_side:
        return frame
    h, w = frame.shape[:2]
    scale = short_side / min(h, w)
    if scale == 1.0:
        return frame
    size = (short_side, round(h * scale)) if w <= h else (round(w * scale), short_side)
    interpolation = cv2.INTER_AREA if scale < 1.0 else cv2.INTER_LINEAR
    return cv2.resize(frame, size, interpolation=interpolation)


def extract_video(
    video: str | os.PathLike[str],
    folder: str | os.PathLike[str],
    fps: float | None = None,
    short_side: int | None = None,
    start: float | None = None,
    end: float | None = None,
    quality: int = 95,
) -> int:
    """Write the frames of `video` to `folder` as 0.jpg, 1.jpg, …, then the `.done` marker; returns
    the frame count. Anything already in `folder` is replaced. Raises VideoError when unreadable."""
    folder = Path(folder)
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    trim = start is not None or end is not None
    src_fps = probe(video).fps if fps is not None or trim else 0.0
    if (fps is not None or trim) and src_fps <= 0:
        raise VideoError(video, "the container gives no frame rate, so frames cannot be resampled or trimmed")
    dst_fps = fps if fps is not None else src_fps
    hi = None if end is None else end * src_fps  # source frames with timestamp < end
    params = [cv2.IMWRITE_JPEG_QUALITY, int(quality)]
    count = 0
    for index, frame in iter_frames(video):
        if hi is not None and index >= hi - 1e-6:
            break
        ticks = ticks_for_frame(index, src_fps, dst_fps, count, start) if dst_fps else range(count, count + 1)
        if not ticks:
            continue
        ok, data = cv2.imencode(".jpg", _resize_short(frame, short_side), params)
        if not ok:
            raise VideoError(video, f"frame {index} could not be encoded as JPEG")
        for k in ticks:
            (folder / f"{k}.jpg").write_bytes(data.tobytes())
        count = ticks.stop
    if count == 0:
        raise VideoError(video, f"no frames between {start or 0.0}s and {end}s")
    write_text_atomic(folder / DONE, f"{count}\n")
    return count


def _run_job(args: tuple[ExtractJob, str, float | None, int | None, int]) -> JobResult:
    """In a worker: ('skipped'|'done'|'failed', job, frames, reason). Unreadable videos never raise."""
    job, out_root, fps, short_side, quality = args
    folder = Path(out_root) / job.rel
    n = read_done(folder)
    if n is not None:
        return "skipped", job, n, ""
    try:
        n = extract_video(job.video, folder, fps, short_side, job.start, job.end, quality)
    except (VideoError, cv2.error, OSError, ValueError) as e:
        reason = e.reason if isinstance(e, VideoError) else f"{type(e).__name__}: {e}".splitlines()[0]
        shutil.rmtree(folder, ignore_errors=True)
        return "failed", job, 0, reason
    return "done", job, n, ""


def _worker_init() -> None:
    cv2.setNumThreads(1)  # the pool is the parallelism; OpenCV's own threads would oversubscribe


def plan_jobs(records: Sequence[VideoFileRecord], class_names: Sequence[str]) -> list[ExtractJob]:
    """One job per record, into `<class>/<video stem>` (the label number when there are no names)."""
    jobs, seen = [], {}
    for r in records:
        if class_names and r.label >= len(class_names):
            raise ValueError(f"{r.path}: label {r.label} has no class name ({len(class_names)} classes)")
        cls = class_names[r.label] if class_names else str(r.label)
        rel = f"{cls}/{Path(r.path).stem}"
        if rel in seen:
            raise ValueError(f"{seen[rel]} and {r.path} would both be extracted to {rel}")
        seen[rel] = r.path
        jobs.append(ExtractJob(r.path, rel, r.label, r.start, r.end))
    return jobs


def extract_videos(
    jobs: Sequence[ExtractJob],
    out_root: str | os.PathLike[str],
    fps: float | None = None,
    short_side: int | None = None,
    workers: int = 1,
    quality: int = 95,
) -> ExtractSummary:
    """Extract every job (in a process pool when workers > 1); failures are logged and counted."""
    summary = ExtractSummary()
    tasks = [(job, str(out_root), fps, short_side, quality) for job in jobs]
    started = time.monotonic()
    if workers > 1 and len(tasks) > 1:
        ctx = multiprocessing.get_context("spawn")  # fork is unsafe once a caller has started threads
        with ctx.Pool(min(workers, len(tasks)), initializer=_worker_init) as pool:
            results = list(_collect(pool.imap_unordered(_run_job, tasks), summary, len(tasks), started))
    else:
        results = list(_collect(map(_run_job, tasks), summary, len(tasks), started))
    summary.records = sorted(results, key=lambda r: r.path)
    return summary


def _collect(
    results: Iterable[JobResult], summary: ExtractSummary, total: int, started: float
) -> Iterator[VideoRecord]:
    """Count and log the results as they come; yield the records of the usable frame folders."""
    for i, (status, job, n, reason) in enumerate(results, start=1):
        if status == "failed":
            summary.failed.append((job.video, reason))
            log.warning("failed %s: %s", job.video, reason)
            continue
        if status == "done":
            summary.done += 1
        else:
            summary.skipped += 1
        yield VideoRecord(job.rel, n, job.label)
        if i % 100 == 0:
            log.info("%d/%d videos (%.0f s)", i, total, time.monotonic() - started)


def main(argv: Sequence[str] | None = None) -> int:
    parser = Parser(prog="python -m glanet.data.extract", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--videos", required=True, help="folder <class>/<video>.mp4, or a CSV path,label[,start,end]"
    )
    parser.add_argument("--out", required=True, help="frames root")
    parser.add_argument(
        "--fps", type=number(float, 0, above=True), help="output frame rate (default: the source's)"
    )
    parser.add_argument(
        "--short-side", type=number(int, 0), default=256, help="resize so the short side is this (0: keep)"
    )
    parser.add_argument("--workers", type=number(int, 1), default=1, help="videos decoded at once")
    parser.add_argument("--list", help="write a `path nframes label` list of the frame folders")
    parser.add_argument("--classes", help="class names, one a line, for a CSV's labels")
    parser.add_argument("--quality", type=number(int, 1, 100), default=95, help="JPEG quality")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    # Each unreadable video gets one line from us, with the reason; libav's own lines would repeat it.
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")

    source = Path(args.videos)
    try:
        if source.is_dir():
            if args.classes:
                parser.error("--classes applies to a CSV; a folder's classes are its sub-folders")
            records, classes = scan_video_folder(source)
        elif source.is_file():
            given = read_class_names(args.classes) if args.classes else None
            records, classes = read_video_csv(source, given)
        else:
            parser.error(f"--videos {source}: no such folder or CSV file")
        jobs = plan_jobs(records, classes)
    except (ListError, ValueError) as e:
        parser.error(str(e))
    if not jobs:
        parser.error(f"--videos {source}: no videos found")

    Path(args.out).mkdir(parents=True, exist_ok=True)
    summary = extract_videos(jobs, args.out, args.fps, args.short_side or None, args.workers, args.quality)
    if args.list:
        Path(args.list).parent.mkdir(parents=True, exist_ok=True)
        write_list(args.list, summary.records)
    log.info(
        "extracted %d, skipped %d (already done), failed %d of %d videos%s",
        summary.done,
        summary.skipped,
        len(summary.failed),
        len(jobs),
        f"; list: {args.list}" if args.list else "",
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
