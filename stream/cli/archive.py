"""Recorded footage, searched: every video of a folder or a list through the recognizer (every frame, as
fast as it goes), with per video its events and its per-second predictions.

    python -m stream.cli.archive --videos recordings/ --out results/
    python -m stream.cli.archive --videos list.txt --out results/ --backend openvino --batch 4
    python -m stream.cli.archive --videos /shared/recordings/ --out results/ --cluster auto

For each video `results/<name>/` holds `events.jsonl` (as run_camera.py writes them, with `video_s`: the
seconds into the video of the start or end, and `recorded_at`, that moment's time of day where the container
says when it was recorded: `stream/cli/video_time.py`), `predictions.csv` (one row per second of video: the
mean class probabilities over that second, with the top class), `timeline.png` (the top classes over the
video, its events as bars) and `done.json` (frames, seconds, wall time, the recording's start or null, the
video's size and content digest, and the settings it was made with: the model's files and their digests,
backend, precision, event thresholds, static-scene gate, glanet's version; a note where the model knows only
SynthActions). Beside them `summary.csv` (a row per video) and `index.html` (a row per video: its timeline,
its events, the model) are remade at the end of every run from what the folders hold
(`stream/sinks/report.py`).

A video with a `done.json` that still matches it and these settings is skipped, so a run that was stopped
picks up where it was; one made with other settings is redone (one line says what changed),
`--force` redoes every video; a result left without its `done.json` is done again. A video that cannot
be read is reported in one line, recorded in `failed.json`, and the run goes on; a FIFO, a device or a
link to one is one line and skipped, never opened; the exit code is 1 if any failed. Results are written
beside and renamed into place, and nothing the archive did not write is ever replaced or removed
(`stream/sinks/results.py`).

Several videos run at once as the cameras of one multi-camera run (`--batch`), so the model's rounds
batch across them. With `--cluster` every node of a Ray cluster runs `--batch` videos at a time, opening
them itself (the videos must be at the same path on every node: a shared folder); the results are written
here. A video whose node is lost starts over on another.
"""

from __future__ import annotations

import argparse
import collections
import csv
import json
import os
import re
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from stream.cli.checks import (
    VIDEO_SUFFIXES,
    UsageError,
    add_model_flags,
    check_device,
    check_model_paths,
    model_choice,
)
from stream.runtime.model import DEFAULT_CHECKPOINT
from stream.runtime.still import DEFAULT_SHARE
from stream.sinks.report import INDEX, SUMMARY, check_report_destinations, write_report
from stream.sinks.results import (
    DONE,
    FAILED,
    TIMELINE,
    ResultsError,
    Staged,
    check_destinations,
    clean_staging,
    content_digest,
    inside,
    not_a_file,
)

if TYPE_CHECKING:
    from rich.console import Console
    from rich.progress import Progress

    from stream.cli.video_time import RecordingStart
    from stream.cluster.address import ClusterAddress
    from stream.output import Output
    from stream.runtime.summary import Summary


@dataclass(frozen=True)
class Video:
    path: Path
    name: str  # its result folder's name: the path below the folder or list, '/' as '__'

    @cached_property
    def stamp(self) -> dict[str, Any]:
        """What its results were made from: its size and content digest (read once, when first asked)."""
        st = self.path.stat()
        return {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "digest": content_digest(self.path)}


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    from glanet.cli import Parser, number

    p = Parser(
        description="Every video of a folder or list through the recognizer: events, predictions, a report "
        "(index.html, summary.csv)."
    )
    p.add_argument("--videos", type=Path, required=True, help="a folder of videos, or a text file of paths")
    p.add_argument("--out", type=Path, required=True, help="the results folder, one subfolder per video")
    p.add_argument(
        "--batch", type=number(int, 1, 64), default=4, help="videos run at once (their frames batch together)"
    )
    p.add_argument("--enter", type=number(float, 0, 1, above=True), default=0.6, help="an event starts here")
    p.add_argument(
        "--exit", type=number(float, 0, 1, above=True), default=0.4, help="... and ends under this"
    )
    p.add_argument("--min-duration", type=number(float, 0), default=0.5, help="seconds above --enter")
    p.add_argument(
        "--static-gate",
        type=number(float, 0, 1),
        default=DEFAULT_SHARE,
        help="a frame where less than this share of the scene changed since the last one through the "
        "backbone reuses its features (as run_camera.py); 0: off",
    )
    p.add_argument("--force", action="store_true", help="redo every video, even those already done")
    p.add_argument("--no-progress", action="store_true", help="no progress bar (a line per video instead)")
    p.add_argument(
        "--cluster",
        metavar="ADDRESS",
        help="run on a Ray cluster: auto, ray://HOST:PORT or local:N[xC] (as run_camera.py --cluster)",
    )
    add_model_flags(p)
    return p.parse_args(argv)


def find_videos(given: Path) -> tuple[list[Video], list[str]]:
    """The videos of a folder (every video file below it, in natural order) or of a list (one path a line,
    relative to the list's folder; blank lines and # comments skipped), and a line for each path skipped
    because it is not a regular file (a FIFO, a device, a link to one, a broken link; a missing listed
    file): those are never opened."""
    from stream.errors import SourceError

    def natural(part: str) -> list[int | str]:
        return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", part)]

    if not given.exists():
        raise SourceError(f"--videos {given}: not found (give a folder of videos or a text file of paths)")
    if given.is_dir():
        paths = sorted(
            (p for p in given.rglob("*") if p.suffix.lower() in VIDEO_SUFFIXES and not p.is_dir()),
            key=lambda p: [natural(part) for part in p.relative_to(given).parts],
        )
        base = given
    else:
        from glanet.data.lists import ListError, read_text

        try:
            text = read_text(given, "video list")
        except ListError as error:
            raise SourceError(str(error)) from None
        lines = [x.strip() for x in text.splitlines()]
        paths = [given.parent / x for x in lines if x and not x.startswith("#")]
        # names from the paths below their common folder: a/cam1.mp4 and b/cam1.mp4 stay apart
        base = Path(os.path.commonpath([os.path.abspath(p.parent) for p in paths])) if paths else given.parent
        paths = [Path(os.path.abspath(p)) for p in paths]
    skipped, readable = [], []
    for path in paths:
        why = not_a_file(path)
        if why is None:
            readable.append(path)
        else:
            skipped.append(f"{path}: {why}{'' if why == 'not found' else ', not a video file'} (skipped)")
    paths = readable
    if not paths:
        found = f" ({len(skipped)} skipped: {skipped[0]})" if skipped else ""
        raise SourceError(f"--videos {given}: no video in it ({', '.join(VIDEO_SUFFIXES)}){found}")
    videos, seen = [], set()
    for path in paths:
        try:
            rel = path.relative_to(base)
        except ValueError:
            rel = Path(path.name)
        name = "__".join(rel.with_suffix("").parts)
        if name in seen:
            raise SourceError(
                f"--videos {given}: {path} is listed twice (or two videos differ only in suffix)"
            )
        seen.add(name)
        videos.append(Video(path, name))
    return videos, skipped


def check_out(out: Path, given: Path, videos: Sequence[Video]) -> None:
    """--out must hold no footage and lie outside --videos: its results folders would otherwise be
    searched as footage, or stand where a source folder is."""
    if out.exists() and not out.is_dir():
        raise ResultsError(f"--out {out} is a file: give a folder for the results")
    if given.is_dir() and inside(out, given):
        raise ResultsError(f"--out {out} is inside --videos {given}: give a results folder outside it")
    held = next((v.path for v in videos if inside(v.path, out)), None)
    if held is not None:
        raise ResultsError(f"--out {out} holds the video {held}: give a results folder that holds no footage")
    if out.is_dir():
        check_destinations(out, [v.name for v in videos])
    check_report_destinations(out, [v.name for v in videos])


def settings(args: argparse.Namespace) -> dict[str, Any]:
    """What a video's results depend on besides the video: recorded in its done.json, compared on a rerun."""
    from engines.manifest import MANIFEST
    from glanet import __version__

    choice = model_choice(args)
    checkpoint = choice.checkpoint or DEFAULT_CHECKPOINT if choice.needs_checkpoint() else None
    engine_manifest = choice.engine / MANIFEST if choice.engine is not None else None
    return {
        "model": {
            "checkpoint": None if checkpoint is None else str(checkpoint),
            "checkpoint_digest": None if checkpoint is None else content_digest(Path(checkpoint)),
            "engine": None if choice.engine is None else str(choice.engine),
            "engine_digest": None if engine_manifest is None else content_digest(engine_manifest),
            "backend": choice.backend,
            "precision": choice.precision,
        },
        "events": {"enter": args.enter, "exit": args.exit, "min_duration": args.min_duration},
        "static_gate": args.static_gate,
        "glanet": __version__,
    }


# what changed, in the words of the line that says a video is redone
_CHANGED = {
    "model": "model changed",
    "events": "event thresholds changed",
    "static_gate": "static-scene gate changed",
    "glanet": "glanet version changed",
}


def done_state(video: Video, out: Path, now: dict[str, Any]) -> tuple[bool, str | None]:
    """(done, why it is redone): done when its results are complete, were made from this very file (same
    size and content digest) and with the same settings; else why not, where there are results to redo."""
    try:
        done = json.loads((out / video.name / DONE).read_text())
        made_from = done.get("source") or {}
        stamp = video.stamp
        if made_from.get("size") != stamp["size"] or made_from.get("digest") != stamp["digest"]:
            return False, "the video changed"
        made_with = done.get("settings") or {}
        changed = [why for key, why in _CHANGED.items() if made_with.get(key) != now[key]]
        if not changed and not (out / video.name / TIMELINE).is_file():
            changed = ["made by an older glanet (no timeline)"]
        return (False, changed[0]) if changed else (True, None)
    except (OSError, ValueError, AttributeError):
        return False, None


def to_do(videos: list[Video], args: argparse.Namespace, console: Console) -> list[Video]:
    """The videos not done already with these settings (all of them with --force); says what is kept and
    what is redone, and why, in a line each."""
    if args.force:
        return list(videos)
    now = settings(args)
    todo, redone = [], collections.Counter()
    for video in videos:
        done, why = done_state(video, args.out, now)
        if not done:
            todo.append(video)
            if why is not None:
                redone[why] += 1
    if len(todo) < len(videos):
        console.print(f"glanet: {len(videos) - len(todo)} of {len(videos)} videos already done in {args.out}")
    for why, n in redone.items():
        console.print(f"glanet: {n} video{'s' if n != 1 else ''} redone: {why} (--force redoes every video)")
    return todo


@dataclass(frozen=True)
class Ran:
    """What ran the videos, recorded with their results: the backend as it describes itself, and a line
    about the model ("" or that it knows only SynthActions)."""

    backend: str = ""
    note: str = ""


@dataclass
class Results:
    """What one video's run produced, gathered off the model's thread (a sink)."""

    events: list[dict[str, Any]] = field(default_factory=list)
    times: list[float] = field(default_factory=list)  # seconds into the video of each prediction
    probs: list[np.ndarray] = field(default_factory=list)  # (K,) each: its class probabilities

    def clear(self) -> None:
        self.events.clear()
        self.times.clear()
        self.probs.clear()


class ArchiveSink:
    """Each camera (video) of the batch: its events and its predictions, on the video's clock. `finished`
    is called (on the sinks' thread) with a camera's name at its last output."""

    def __init__(self, names: Sequence[str], finished: Callable[[str], None] | None = None) -> None:
        self.results = {name: Results() for name in names}
        self.finished = finished

    def write(self, output: Output) -> None:
        results = self.results.setdefault(output.camera, Results())
        if output.restart:  # its node was lost: the video starts over on another
            results.clear()
            return
        results.events.extend(e.to_dict() for e in output.events)
        if (output.final or output.removed) and self.finished is not None:
            self.finished(output.camera)
        if output.fresh and output.prediction is not None:
            results.times.append(output.prediction.frame.source_ts)
            results.probs.append(output.prediction.probs)

    def idle(self) -> None:
        pass

    def close(self) -> None:
        pass


def write_results(
    staged: Staged,
    results: Results,
    class_names: Sequence[str],
    done: dict[str, Any],
    recorded: RecordingStart | None = None,
) -> None:
    """events.jsonl, predictions.csv, timeline.png and done.json into the staging folder, then into place
    (done.json last: its presence means complete). `recorded`: when the recording started, where known."""
    from stream.cli.video_time import with_video_time
    from stream.sinks.timeline import actions, draw_timeline, top_classes, write_timeline

    lines = [with_video_time(event, recorded) for event in results.events]
    with open(staged.path("events.jsonl"), "w") as f:
        for line in lines:
            f.write(json.dumps(line) + "\n")
    times = np.asarray(results.times, dtype=np.float64)  # (N,)
    probs = np.asarray(results.probs, dtype=np.float64).reshape(len(times), len(class_names))  # (N, K)
    seconds = times.astype(np.int64)
    with open(staged.path("predictions.csv"), "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["second", "top1", "confidence", "predictions", *class_names])
        for second in np.unique(seconds):
            these = probs[seconds == second]
            mean = these.mean(axis=0)
            top = int(np.argmax(mean))
            writer.writerow(
                [int(second), class_names[top], f"{mean[top]:.4f}", len(these), *(f"{p:.4f}" for p in mean)]
            )
    found = actions(lines)
    drawn = top_classes(probs, found, done["seconds"])
    enter = done["settings"]["events"]["enter"]
    write_timeline(staged.path(TIMELINE), draw_timeline(times, probs, found, done["seconds"], drawn, enter))
    done = {**done, "timeline": {"file": TIMELINE, "classes": drawn}}
    staged.path(DONE).write_text(json.dumps(done) + "\n")
    staged.place()


def finish_video(
    args: argparse.Namespace,
    video: Video,
    s: Summary,
    results: Results,
    class_names: Sequence[str],
    wall: float,
    fps: float,
    console: Console,
    ran: Ran = Ran(),
) -> float | None:
    """A video's results written (or its failure): the seconds of video it had, None if it failed."""
    from stream.cli.video_time import recording_start

    staged = Staged(args.out, video.name)
    if s.error is not None or s.frames == 0:
        why = s.error or "no frame could be read"
        failed = {"error": why, "video": str(video.path), "source": video.stamp}
        staged.path(FAILED).write_text(json.dumps(failed) + "\n")
        staged.place()
        console.print(f"glanet: {video.path}: {why} (skipped)")
        return None
    seconds = s.frames / fps
    recorded = recording_start(video.path)
    done = {
        "video": str(video.path), "frames": s.frames, "predictions": s.predictions,
        "seconds": round(seconds, 3), "events": s.events, "wall_s": round(wall, 3),
        "recording_start": None if recorded is None else recorded.iso(),
        "recording_start_tag": None if recorded is None else recorded.tag,
        "source": video.stamp, "settings": settings(args), "classes": list(class_names),
        "ran_on": ran.backend, "note": ran.note or None,
    }  # fmt: skip
    write_results(staged, results, class_names, done, recorded)
    if args.no_progress:
        console.print(f"glanet: {video.path}: {s.frames} frames, {s.events} events")
    return seconds


def progress_bar(console: Console, disable: bool) -> Progress:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    columns = [
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
        TextColumn("{task.fields[rate]}"), TimeRemainingColumn(),
    ]  # fmt: skip
    return Progress(*columns, console=console, disable=disable)


def video_fps(path: Path, default: float) -> float:
    """The video's frame rate as its container says (the model's when it says none)."""
    import cv2

    cap = cv2.VideoCapture(str(path))
    try:
        fps = cap.get(cv2.CAP_PROP_FPS)
    finally:
        cap.release()
    return fps if fps and 0 < fps < 1000 else default


def run_cluster(
    args: argparse.Namespace, videos: list[Video], address: ClusterAddress, skipped: int = 0
) -> int:
    """The videos over a Ray cluster: every shard keeps `--batch` of them going; results written here."""
    import queue

    from rich.console import Console

    from stream.cli.run import SYNTHETIC_ANNOUNCE, synthetic_note
    from stream.cluster.controller import ClusterApp
    from stream.runtime.events import EventConfig
    from stream.runtime.model import model_fps
    from stream.runtime.session import RecognizerConfig
    from stream.runtime.spec import CameraSpec, StreamOptions
    from stream.sources.readers import parse_source

    console = Console(stderr=True, highlight=False, soft_wrap=True)
    todo = to_do(videos, args, console)
    if not todo:
        return 1 if skipped else 0
    options = StreamOptions(
        fast=True, headless=True, dashboard=False, quiet=True, keep_alive=True,
        events_config=EventConfig(args.enter, args.exit, args.min_duration),
        recognizer=RecognizerConfig(static_gate=args.static_gate),
    )  # fmt: skip
    finished: queue.Queue[str] = queue.Queue()
    sink = ArchiveSink([], finished.put)
    ran = Ran()  # known once the shards are up
    app = ClusterApp(
        [], address, model_choice(args), options, max_batch=args.batch,
        say=lambda line: console.print(f"glanet: {line}"), sinks=[sink],
    )  # fmt: skip
    stop = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        stop.set()
        app.request_stop("interrupted")

    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, on_signal)
    counts = {"failed": 0, "done": 0, "seconds": 0.0}
    started = time.monotonic()

    def feed(progress: Progress, task: Any) -> None:
        """Keeps `--batch` videos a shard going; writes each one's results as it finishes."""
        pending, running = list(todo), {}
        try:
            while (pending or running) and not stop.is_set():
                slots = args.batch * max(1, sum(s.alive for s in app.shards))
                while pending and len(running) < slots and not stop.is_set():
                    video = pending.pop(0)
                    sink.results.pop(video.name, None)
                    spec = CameraSpec(video.name, parse_source(str(video.path), folder_fps=fps))
                    app.add_camera(spec)
                    running[video.name] = (video, time.monotonic())
                try:
                    name = finished.get(timeout=0.2)
                except queue.Empty:
                    continue
                if name not in running:
                    continue
                video, t0 = running.pop(name)
                cam = app.camera(name)
                while cam is not None and not cam.settled and not stop.is_set():
                    time.sleep(0.02)  # its shard's last numbers come with the next poll
                summary = cam.total() if cam is not None else None
                if cam is not None:
                    app.remove_camera(name)
                if summary is None:
                    continue
                seconds = finish_video(
                    args, video, summary, sink.results.pop(name), app.class_names, time.monotonic() - t0,
                    video_fps(video.path, fps), progress.console, ran,
                )  # fmt: skip
                if seconds is None:
                    counts["failed"] += 1
                else:
                    counts["seconds"] += seconds
                    counts["done"] += 1
                elapsed = time.monotonic() - started
                progress.update(
                    task, advance=1, rate=f"{counts['done'] / elapsed:.2f} videos/s, "
                    f"{counts['seconds'] / elapsed:.1f}x real time",
                )  # fmt: skip
        finally:
            app.request_stop("interrupted" if stop.is_set() else "every video done")

    try:
        app.start()
        started = time.monotonic()  # the rates count from when the shards are up
        fps = model_fps(app)
        ran = Ran(app.backend.describe() if app.backend is not None else "", synthetic_note(app))
        if ran.note:
            console.print(SYNTHETIC_ANNOUNCE)
        with progress_bar(console, args.no_progress) as progress:
            task = progress.add_task("videos", total=len(todo), rate="")
            feeder = threading.Thread(target=feed, args=(progress, task), name="glanet-archive-feed")
            feeder.start()
            app.run()
            feeder.join()
    finally:
        app.close()
    if stop.is_set():
        console.print(f"glanet: interrupted after {counts['done']} videos (run again to go on)")
        return 130
    done, failed, seconds = counts["done"], counts["failed"], counts["seconds"]
    wall = time.monotonic() - started
    console.print(
        f"glanet: {done} videos done, {failed} failed{_skipped(skipped)}, {seconds:.0f} s of video "
        f"in {wall:.1f} s "
        f"({seconds / wall:.1f}x real time) on {len(app.shards)} shards; results in {args.out}"
    )
    return 1 if counts["failed"] or skipped else 0


def _skipped(count: int) -> str:
    return f", {count} skipped" if count else ""


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    os.environ.setdefault("OPENCV_LOG_LEVEL", "ERROR")
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")
    from stream.cli.failures import REPORTED, report

    try:
        if args.exit > args.enter:
            raise UsageError(f"--exit {args.exit:g} must not be above --enter {args.enter:g}")
        check_device(args.device)
        check_model_paths(model_choice(args))
        videos, skipped = find_videos(args.videos)
        check_out(args.out, args.videos, videos)
        for line in skipped:
            print(f"glanet: {line}", file=sys.stderr)
        args.out.mkdir(parents=True, exist_ok=True)
        clean_staging(args.out)
        if args.cluster is not None:
            from stream.cluster.address import parse_cluster_address

            try:
                address = parse_cluster_address(args.cluster)
            except ValueError as error:
                raise UsageError(str(error)) from None
            code = run_cluster(args, videos, address, len(skipped))
        else:
            code = run(args, videos, len(skipped))
        rows = write_report(args.out)  # remade from every result folder: those of earlier runs too
        said = f"glanet: report of {len(rows)} videos: {args.out / INDEX}, {args.out / SUMMARY}"
        print(said, file=sys.stderr)
        return code
    except REPORTED as error:
        return report(error)
    except KeyboardInterrupt:
        print("glanet: interrupted (finished videos are kept; run again to go on)", file=sys.stderr)
        return 130


def run(args: argparse.Namespace, videos: list[Video], skipped: int = 0) -> int:
    from rich.console import Console

    from stream.cli.run import SYNTHETIC_ANNOUNCE, synthetic_note
    from stream.runtime.app import StreamApp
    from stream.runtime.events import EventConfig
    from stream.runtime.model import model_fps, open_model
    from stream.runtime.session import RecognizerConfig
    from stream.runtime.spec import CameraSpec, StreamOptions
    from stream.sources.readers import parse_source

    console = Console(stderr=True, highlight=False, soft_wrap=True)  # a line per message, never wrapped
    todo = to_do(videos, args, console)
    if not todo:
        return 1 if skipped else 0
    model = open_model(model_choice(args), max_batch=args.batch)
    info, backend = model.info, model.backend
    fps = model_fps(info)
    ran = Ran(backend.describe(), synthetic_note(info))
    if ran.note:  # once, before the first video (run_camera.py says it at its first prediction)
        console.print(SYNTHETIC_ANNOUNCE)
    options = StreamOptions(
        fast=True, headless=True, dashboard=False, quiet=True,
        events_config=EventConfig(args.enter, args.exit, args.min_duration),
        recognizer=RecognizerConfig(static_gate=args.static_gate),
    )  # fmt: skip
    stop = threading.Event()
    apps: list[StreamApp] = []

    def on_signal(signum: int, _frame: object) -> None:
        stop.set()
        for app in apps:
            app.request_stop("interrupted")

    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, on_signal)
    failed, done_videos, video_seconds = 0, 0, 0.0
    started = time.monotonic()
    with progress_bar(console, args.no_progress) as progress:
        task = progress.add_task("videos", total=len(todo), rate="")
        for i in range(0, len(todo), args.batch):
            if stop.is_set():
                break
            batch = todo[i : i + args.batch]
            specs = [CameraSpec(v.name, parse_source(str(v.path), folder_fps=fps)) for v in batch]
            sink = ArchiveSink([v.name for v in batch])
            app = StreamApp(specs, info, backend, options, sinks=[sink])
            apps[:] = [app]
            t0 = time.monotonic()
            summary = app.run()
            wall = time.monotonic() - t0
            if stop.is_set():
                break  # this batch is incomplete: no done.json, so it is run again next time
            for video in batch:
                s = summary.cameras[video.name]
                seconds = finish_video(
                    args, video, s, sink.results[video.name], info.class_names, wall,
                    app.status(video.name).nominal_fps or fps, progress.console, ran,
                )  # fmt: skip
                if seconds is None:
                    failed += 1
                else:
                    video_seconds += seconds
                    done_videos += 1
            elapsed = time.monotonic() - started
            progress.update(
                task, advance=len(batch),
                rate=f"{done_videos / elapsed:.2f} videos/s, {video_seconds / elapsed:.1f}x real time",
            )  # fmt: skip
    if stop.is_set():
        console.print(f"glanet: interrupted after {done_videos} videos (run again to go on)")
        return 130
    wall = time.monotonic() - started
    console.print(
        f"glanet: {done_videos} videos done, {failed} failed{_skipped(skipped)}, "
        f"{video_seconds:.0f} s of video in {wall:.1f} s "
        f"({video_seconds / wall:.1f}x real time); results in {args.out}"
    )
    return 1 if failed or skipped else 0


__all__ = ["ArchiveSink", "Video", "done_state", "find_videos", "main", "settings", "write_results"]

if __name__ == "__main__":
    sys.exit(main())
