"""The streaming pipeline put together, for one camera or many:

    sources -> capture threads (one per camera) -> sessions -> runner (the model thread: batched rounds)
            -> dispatcher queue -> sinks (window mosaic, video per camera, events JSONL, dashboard,
                                          and those given in `StreamApp.sinks`: the web view, MQTT)

Cameras may be added and removed while it runs (`add_camera`, `remove_camera`: the web API).
`run()` runs until every source ends (unless `keep_alive`), `max_frames` (per camera) / `duration_s`, the
window's quit key, or a stop request (`request_stop`, which `run_camera.py` wires to SIGINT/SIGTERM). The
sinks run on the calling thread (where a GUI toolkit wants its window), the model on its own. Whatever
ends it, the saved videos are finalised, events are flushed (open events are closed) and a summary per
camera is returned.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from engines.backend import Backend
from stream.errors import SinkError
from stream.output import View
from stream.runtime.dispatch import Dispatcher, Sink
from stream.runtime.loop import RunLoop
from stream.runtime.model import ModelInfo, model_fps
from stream.runtime.runner import Camera, Runner
from stream.runtime.session import Session
from stream.runtime.spec import CameraSpec, StreamOptions
from stream.runtime.summary import RunSummary, Summary
from stream.sinks.display import display_problem
from stream.sinks.video import VideoFiles
from stream.sinks.window import MosaicWindow
from stream.sources.capture import Capture, CaptureConfig
from stream.sources.readers import SourceSpec
from stream.types import CameraStatus, Prediction, SourceStatus

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RemovedCamera:
    """A camera removed at run time, once the runner has let go of it: its numbers for the summary and its
    last status. Its capture, session (model state, last frame and prediction, latencies) are gone:
    thousands of cameras can come and go."""

    name: str
    totals: Summary  # as when it was removed; the run's wall time and backend are filled in at the end
    status: CameraStatus
    removed: bool = True
    done: bool = True


# A removed camera's numbers are kept once the runner has let go of it: a round or two, normally.
RETIRE_WAIT_S = 30.0


class StreamApp(RunLoop):
    """A run in this process: every camera's capture thread, one model thread batching them, the sinks."""

    def __init__(
        self,
        cameras: Sequence[CameraSpec] | SourceSpec,
        checkpoint: ModelInfo,
        backend: Backend,
        options: StreamOptions | None = None,
        backend_note: str = "",
        sinks: Sequence[Sink] = (),
    ) -> None:
        options = options or StreamOptions()
        super().__init__(options, sinks)
        if isinstance(cameras, SourceSpec):
            cameras = [CameraSpec("", cameras)]
        if not cameras and not options.keep_alive:
            raise ValueError("no camera to run")
        names = [c.name for c in cameras]
        if len(set(names)) != len(names):
            raise ValueError(f"camera names must be unique: {names}")
        self.specs = list(cameras)
        self.checkpoint, self.backend = checkpoint, backend
        self.backend_note = backend_note  # why this backend (auto-selection's sentence)
        maps = backend.spec.maps
        attention = options.attention or (maps[0] if maps else "none")
        self.view = View(maps, attention, options.note, label_cameras=options.label_cameras)
        # while running and after: the cameras (capture, session, stats); one removed keeps its numbers only
        self.cameras: list[Camera | RemovedCamera] = []
        self.runner: Runner | None = None
        self._videos: VideoFiles | None = None
        self._video_paths_at_start: dict[str, Path] = {}
        self._model: threading.Thread | None = None

    def start(self) -> None:
        """Nothing to connect to: the model is loaded and the cameras start with `run`."""

    def close(self) -> None:
        """Nothing held once `run` has returned."""

    # -- one camera's view, for callers of the single-camera API -----------------------------------------
    @property
    def capture(self) -> Capture | None:
        cam = self.cameras[0] if self.cameras else None
        return cam.capture if isinstance(cam, Camera) else None

    @property
    def last_prediction(self) -> Prediction | None:
        made = [s.last_prediction for s in self.statuses() if s.last_prediction is not None]
        return max(made, key=lambda p: p.frame.capture_ts) if made else None

    # -- cameras at run time (the web API) --------------------------------------------------------------
    def camera_status(self, cam: Camera | RemovedCamera, max_age_s: float = 0.2) -> CameraStatus:
        if isinstance(cam, RemovedCamera):
            return cam.status
        s, c = cam.session, cam.capture
        return CameraStatus(
            cam.name, c.name, cam.snapshot(max_age_s), s.last_prediction, s.frames, c.frames, s.predictions,
            c.buffer.dropped, c.decode_errors, c.reconnects, s.detector.events_fired, s.encoded, s.reused,
            c.nominal_fps,
        )  # fmt: skip

    def add_camera(self, spec: CameraSpec) -> CameraStatus:
        """Start a camera while the run goes on (from any thread). ValueError: its name is taken (ignoring
        case) or the run is not going (not yet started, or stopping)."""
        with self._changes:
            runner = self.runner
            if runner is None or self._stop.is_set():
                raise ValueError("the run is not going: cameras can be added while it runs")
            if self._name_taken(spec.name):
                raise ValueError(f"camera {spec.name!r} exists (names are unique, ignoring case)")
            cam = self._camera(spec, runner.wake.set)
            if self._videos is not None and self._save_folder() is not None:
                self._videos.paths[cam.name] = self._new_video_path(cam.name)
            self._camera_added(cam.name)
            self.specs.append(spec)
            self.cameras.append(cam)
            cam.capture.start()
            runner.add(cam)
        log.info("camera %s added (%s)", cam.name, spec.source.name)
        return self.camera_status(cam)

    def remove_camera(self, name: str) -> bool:
        """Stop a camera while the run goes on: its open event is closed, its video finalised, its numbers
        kept for the summary. False where no camera of that name is in the run."""
        with self._changes:
            cam = self.camera(name)
            if cam is None or self.runner is None:
                return False
            cam.removed = True
            self.runner.remove(cam)
            runner = self.runner
        # closing joins its reader thread (up to a second): not under the lock, not on the model thread
        retire = threading.Thread(target=self._retire, args=(cam, runner), name=f"glanet-close-{name}")
        retire.daemon = True
        retire.start()
        log.info("camera %s removed", name)
        return True

    def forget_removed(self) -> None:
        """Let go of the cameras removed that the runner has let go of too (not even their numbers): a
        cluster shard's, whose driver keeps them, through which an archive passes thousands of videos."""
        runner = self.runner
        if runner is None:
            return
        with self._changes:
            active = set(map(id, runner.cameras))
            self.cameras = [c for c in self.cameras if not c.removed or id(c) in active]

    def _retire(self, cam: Camera, runner: Runner) -> None:
        """Close a removed camera's capture and, once the runner has let go of it (its open event closed,
        its last output sent), keep only its numbers: its frames, session and model state are freed.
        A run that stops first summarises it whole, as any other camera."""
        cam.capture.close()
        deadline = time.monotonic() + RETIRE_WAIT_S
        # the runner sets `started` when it takes a camera in, and drops it from its list when it lets go
        while not (cam.started and cam not in list(runner.cameras)):
            if self._stop.is_set() or time.monotonic() > deadline:
                return
            time.sleep(0.02)
        status = replace(self.camera_status(cam, max_age_s=0.0), last_prediction=None)
        kept = RemovedCamera(cam.name, self.camera_summary(cam, 0.0, ""), status)
        with self._changes:
            self.cameras = [kept if c is cam else c for c in self.cameras]

    def _save_folder(self) -> Path | None:
        """--save's folder when the run writes one video per camera (several cameras), else None."""
        save = self.options.save
        return save if save is not None and len(self._video_paths_at_start) > 1 else None

    def _new_video_path(self, name: str) -> Path:
        folder = self._save_folder()
        assert folder is not None
        path, k = folder / f"{name}.mp4", 2
        taken = set(self._videos.paths.values()) if self._videos is not None else set()
        while path in taken:  # this run's own videos; older files are written over, as at the start
            path, k = folder / f"{name}-{k}.mp4", k + 1
        return path

    # -- building ----------------------------------------------------------------------------------------
    def _capture_config(self, spec: CameraSpec) -> CaptureConfig:
        o, kind = self.options, spec.source.kind
        fast = o.fast if spec.fast is None else spec.fast
        realtime = kind in ("file", "folder", "demo") and not fast
        # the demo with --fast is a generator read as fast as it goes: every frame, like a file
        live = spec.source.live and not (fast and kind == "demo")
        watchdog = o.watchdog_s if spec.watchdog_s is None else spec.watchdog_s
        return CaptureConfig(
            live=live,
            realtime=realtime,
            capacity=o.buffer_capacity,
            watchdog_s=watchdog if kind in ("webcam", "network") else 0.0,
            max_reconnects=o.max_reconnects if spec.max_reconnects is None else spec.max_reconnects,
            realtime_if_file=not fast,  # a network URL that turns out to be a file, read as a file
        )

    def _camera(self, spec: CameraSpec, wake: Callable[[], None]) -> Camera:
        ck, o = self.checkpoint, self.options
        config = self._capture_config(spec)
        session = Session(
            self.backend.spec,
            preprocessing=ck.preprocessing,
            sampling=ck.sampling,
            class_names=ck.class_names,
            config=spec.recognizer or o.recognizer,
            events=spec.events or o.events_config,
            camera=spec.name,
            source_name=spec.source.name,
        )
        capture = Capture(spec.source.factory, spec.source.name, config, camera=spec.name, wake=wake)
        return Camera(
            spec.name or spec.source.name, capture, session, fast=not config.realtime and not config.live
        )

    def _video_paths(self) -> dict[str, Path]:
        save = self.options.save
        if save is None:
            return {}
        if len(self.specs) == 1:
            if not save.parent.is_dir():  # fail before the first frame, not minutes into a run
                raise SinkError(f"cannot write video {save}: folder {save.parent} does not exist")
            return {self.cameras[0].name: save}
        if save.suffix.lower() in (".mp4", ".avi", ".mkv", ".mov"):
            raise SinkError(f"--save {save}: with several cameras give a folder (one <camera>.mp4 each)")
        try:
            save.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise SinkError(f"cannot write videos into {save}: {e.strerror or e}") from None
        return {c.name: save / f"{c.name}.mp4" for c in self.cameras}

    def _own_sinks(self) -> list[Sink]:
        """The videos of --save and the window (unless headless)."""
        o, sinks = self.options, []
        paths = self._video_paths_at_start = self._video_paths()
        if paths:
            default_fps = model_fps(self.checkpoint)

            def fps(name: str) -> float:
                status = self.status(name)
                return (status.nominal_fps if status is not None else None) or default_fps

            self._videos = VideoFiles(paths, fps, self.view)
            sinks.append(self._videos)
        headless = o.headless
        if headless is None:
            problem = display_problem()
            headless = problem is not None
            if problem is not None and _wants_window():
                log.warning("no window: %s; running headless", problem)
        if not headless:
            title = "glanet - " + (
                self.specs[0].source.name if len(self.specs) == 1 else f"{len(self.specs)} cameras"
            )
            sinks.append(MosaicWindow(title, [c.name for c in self.cameras], self.view,
                                      lambda: self.request_stop("quit key")))  # fmt: skip
        return sinks

    # -- running (the loop is RunLoop's) ----------------------------------------------------------------
    def _prepare(self) -> list[str]:
        if self.backend.name != "torch" and torch.get_num_threads() > 1:
            # torch only preprocesses frames here: with its own thread pool it fights the engine's threads
            # for the cores (measured: 31 ms a 320x240 frame after an OpenVINO call, 0.9 ms on one thread)
            log.info("torch: 1 thread (the %s engine has the cores)", self.backend.name)
            torch.set_num_threads(1)
        self._runner_wake = threading.Event()
        self.cameras = [self._camera(spec, self._runner_wake.set) for spec in self.specs]
        return [c.name for c in self.cameras]

    def _title(self) -> str:
        cams = self.cameras
        title = cams[0].capture.name if len(cams) == 1 else f"{len(cams)} cameras"
        return f"{title} | {self.backend.describe()}"

    def _blocks(self) -> bool:
        if self.options.block_sinks is not None:
            return self.options.block_sinks
        # with keep_alive a camera may still come that is not read --fast: the queue never blocks the model
        return all(c.fast for c in self.cameras) and not self.options.keep_alive

    def _start_work(self, dispatcher: Dispatcher) -> threading.Thread:
        o = self.options
        runner = Runner(
            self.backend,
            self.cameras,
            dispatcher.put,
            max_wait_s=o.max_wait_s if o.max_wait_s is not None else 0.5 / model_fps(self.checkpoint),
            stop=self._stop,
            paused=self.view.paused,
            max_frames=o.max_frames,
            on_prediction=self.announcing(),
            wake=self._runner_wake,
            keep_alive=o.keep_alive,
        )
        with self._changes:
            self.runner = runner
        self.started_at = time.monotonic()
        for cam in self.cameras:
            cam.capture.start()
        model = threading.Thread(target=self._model_thread, args=(runner, dispatcher), name="glanet-model")
        model.start()
        return model

    def _model_thread(self, runner: Runner, dispatcher: Dispatcher) -> None:
        try:
            runner.run()
        finally:
            dispatcher.finish()

    def _after_work(self) -> None:
        for cam in self.cameras:
            if isinstance(cam, Camera):
                cam.capture.close()

    def _raise_work_error(self) -> None:
        if self.runner is not None and self.runner.error is not None:
            raise self.runner.error

    def _summary(self, wall: float, dropped: int) -> RunSummary:
        backend = self.backend.describe() + (f" ({self.backend_note})" if self.backend_note else "")
        videos = self._videos
        summaries = []
        for cam in self.cameras:
            summary = self.camera_summary(cam, wall, backend)
            summary.saved_frames = videos.frames_written(cam.name) if videos else 0
            summaries.append((cam.name, summary))
        return self._run_summary(summaries, dropped)

    def camera_summary(self, cam: Camera | RemovedCamera, wall: float, backend: str) -> Summary:
        """One camera's numbers and how it ended (or where it is, while the run goes on)."""
        if isinstance(cam, RemovedCamera):
            return replace(cam.totals, wall_s=wall, backend=backend)
        s, c = cam.session, cam.capture
        summary = Summary(
            frames=s.frames,
            predictions=s.predictions,
            model_ticks=s.steps,
            encoded=s.encoded,
            reused=s.reused,
            events=s.detector.events_fired,
            dropped=c.buffer.dropped,
            decode_errors=c.decode_errors,
            reconnects=c.reconnects,
            resets=s.resets,
            latency_p50_ms=s.latency.percentile(50) * 1000,
            latency_p95_ms=s.latency.percentile(95) * 1000,
            latency_max_ms=s.latency.maximum * 1000 if s.latency.count else float("nan"),
            wall_s=wall,
            backend=backend,
            source=c.name,
        )
        if cam.removed:
            summary.reason = "removed"
        elif c.error is not None:
            summary.error, summary.reason = str(c.error), "source failed"
        elif self.max_frames_reached(cam):
            summary.reason = "max frames reached"
        elif c.status.status is SourceStatus.ENDED and cam.done:
            summary.reason = "end of stream"
        else:
            summary.reason = self.stop_reason or "stopped"
        return summary

    def max_frames_reached(self, cam: Camera) -> bool:
        return self.options.max_frames is not None and cam.session.frames >= self.options.max_frames


def _wants_window() -> bool:
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


__all__ = ["CameraSpec", "RunSummary", "StreamApp", "StreamOptions", "Summary"]
