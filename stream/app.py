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
import math
import os
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

import torch

from engines.backend import Backend
from stream.capture import Capture, CaptureConfig
from stream.dashboard import Dashboard
from stream.dispatch import DashboardSink, Dispatcher, EventFile, MosaicWindow, Output, Sink, VideoFiles, View
from stream.display import display_problem
from stream.events import EventConfig
from stream.runner import Camera, Runner
from stream.session import RecognizerConfig, Session
from stream.sinks import EventLog, SinkError
from stream.sources import SourceSpec
from stream.types import Prediction, SourceStatus, StatsSnapshot

log = logging.getLogger(__name__)


class ModelInfo(Protocol):
    """What the runtime needs to know of the model: a LoadedCheckpoint or an export's Manifest."""

    @property
    def class_names(self) -> tuple[str, ...]: ...

    @property
    def preprocessing(self) -> dict[str, Any]: ...

    @property
    def sampling(self) -> dict[str, Any]: ...


@dataclass(frozen=True)
class CameraSpec:
    """One camera of a run: its name, its source and what it overrides of the run's options."""

    name: str
    source: SourceSpec
    fast: bool | None = None
    watchdog_s: float | None = None
    max_reconnects: int | None = None
    recognizer: RecognizerConfig | None = None
    events: EventConfig | None = None


@dataclass(frozen=True)
class StreamOptions:
    fast: bool = False  # files/folders/demo: every frame as fast as possible instead of real time
    headless: bool | None = None  # None: headless when there is no display
    save: Path | None = None  # one camera: this .mp4; several: a folder, <name>.mp4 each
    events: Path | None = None
    max_frames: int | None = None  # source frames to process per camera, then that camera stops
    duration_s: float | None = None  # wall seconds, then stop
    attention: str | None = None  # the map shown first (None: the model's first)
    dashboard: bool | None = None  # None: a live dashboard on a terminal, one line every 5 s otherwise
    quiet: bool = False  # no dashboard, no lines and no final numbers on stderr (the caller reports)
    recognizer: RecognizerConfig = field(default_factory=RecognizerConfig)
    events_config: EventConfig = field(default_factory=EventConfig)
    watchdog_s: float = 5.0
    max_reconnects: int | None = None
    buffer_capacity: int = 0  # 0: the capture default (4 live and real-time files, 64 with --fast)
    max_wait_s: float | None = None  # batch gathering deadline (None: half a model frame interval)
    note: str = ""  # a line about the model on every overlay (e.g. "trained on synthetic actions only")
    announce: str = ""  # said once on stderr at the first prediction (a bad source stays one line)
    # go on when every camera has ended, until a stop (the web view: cameras may be added at run time)
    keep_alive: bool = False
    # the sinks' queue blocks the model instead of dropping (None: when every camera is read --fast and
    # none may come at run time); a cluster shard reading files --fast sets it, for cameras it is given
    block_sinks: bool | None = None
    label_cameras: bool = True  # each camera's name on its overlay (False: a lone camera, as run alone)
    # called on the model thread with every prediction (benchmarks, embedding): keep it cheap
    on_prediction: Callable[[Prediction], None] | None = None


@dataclass
class Summary:
    reason: str = ""
    frames: int = 0  # source frames that went through the loop
    predictions: int = 0
    model_ticks: int = 0
    encoded: int = 0
    events: int = 0
    dropped: int = 0
    decode_errors: int = 0
    reconnects: int = 0
    resets: int = 0
    saved_frames: int = 0
    latency_p50_ms: float = float("nan")  # over the last 2000 predictions (stats.Percentiles)
    latency_p95_ms: float = float("nan")
    latency_max_ms: float = float("nan")
    wall_s: float = 0.0
    error: str | None = None
    backend: str = ""
    source: str = ""
    shard: str = ""  # a cluster run: the shard (node) that served it last
    moves: int = 0  # a cluster run: times it moved to another shard (its shard was lost)

    @property
    def fps(self) -> float:
        return self.frames / self.wall_s if self.wall_s > 0 else 0.0

    def line(self) -> str:
        return (
            f"{self.reason}: {self.frames} frames in {self.wall_s:.1f} s ({self.fps:.1f} FPS), "
            f"{self.predictions} predictions, "
            f"latency p50 {self.latency_p50_ms:.0f} ms / p95 {self.latency_p95_ms:.0f} ms, "
            f"{self.dropped} dropped, {self.decode_errors} decode errors, {self.reconnects} reconnects, "
            f"{self.events} events; backend {self.backend}"
        )

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["processed_fps"] = round(self.fps, 3)
        return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in d.items()}


@dataclass
class RunSummary:
    """The run: a Summary per camera, in order, and how it ended."""

    cameras: dict[str, Summary]
    reason: str
    sink_dropped: int = 0  # outputs the sinks could not keep up with (never with --fast)

    @property
    def error(self) -> str | None:
        """The error that ended the run: every camera's source failed (or one did, alone)."""
        errors = [s.error for s in self.cameras.values() if s.error is not None]
        return errors[0] if errors and len(errors) == len(self.cameras) else None

    def __getattr__(self, name: str) -> Any:
        """A lone camera's Summary fields (frames, latency_p95_ms, ...) read as the run's own."""
        cameras = self.__dict__.get("cameras", {})
        if len(cameras) == 1 and not name.startswith("_"):
            return getattr(next(iter(cameras.values())), name)
        raise AttributeError(name)

    def line(self) -> str:
        if len(self.cameras) == 1:
            return next(iter(self.cameras.values())).line()
        total = sum(s.frames for s in self.cameras.values())
        wall = max((s.wall_s for s in self.cameras.values()), default=0.0)
        p95 = max(
            (s.latency_p95_ms for s in self.cameras.values() if math.isfinite(s.latency_p95_ms)),
            default=math.nan,
        )
        failed = [n for n, s in self.cameras.items() if s.error]
        return (
            f"{self.reason}: {len(self.cameras)} cameras, {total} frames in {wall:.1f} s, worst latency p95 "
            f"{p95:.0f} ms" + (f", failed: {', '.join(failed)}" if failed else "")
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "reason": self.reason,
            "sink_dropped": self.sink_dropped,
            "cameras": {name: s.to_dict() for name, s in self.cameras.items()},
        }


@dataclass(frozen=True)
class SessionTotals:
    """What a removed camera's session leaves: its frame count, and no prediction (nor its picture)."""

    frames: int
    last_prediction: None = None


@dataclass(frozen=True)
class RemovedCamera:
    """A camera removed at run time, once the runner has let go of it: its numbers for the summary and a
    last stats line, and its closed capture (no frames). Its session (model state, last frame and
    prediction, latencies) is gone: thousands of cameras can come and go. Read where a Camera is: `name`,
    `removed`, `done`, `snapshot()`, `capture`, `session.frames`."""

    name: str
    capture: Capture
    totals: Summary  # as when it was removed; the run's wall time and backend are filled in at the end
    stats: StatsSnapshot
    session: SessionTotals
    removed: bool = True
    done: bool = True

    def snapshot(self, max_age_s: float = 0.0) -> StatsSnapshot:
        return self.stats


# A removed camera's numbers are kept once the runner has let go of it: a round or two, normally.
RETIRE_WAIT_S = 30.0


class StreamApp:
    def __init__(
        self,
        cameras: Sequence[CameraSpec] | SourceSpec,
        checkpoint: ModelInfo,
        backend: Backend,
        options: StreamOptions = StreamOptions(),
        backend_note: str = "",
    ) -> None:
        if isinstance(cameras, SourceSpec):
            cameras = [CameraSpec("", cameras)]
        if not cameras and not options.keep_alive:
            raise ValueError("no camera to run")
        names = [c.name for c in cameras]
        if len(set(names)) != len(names):
            raise ValueError(f"camera names must be unique: {names}")
        self.specs = list(cameras)
        self.checkpoint, self.backend, self.options = checkpoint, backend, options
        self.backend_note = backend_note  # why this backend (auto-selection's sentence)
        maps = backend.spec.maps
        attention = options.attention or (maps[0] if maps else "none")
        self.view = View(maps, attention, options.note, label_cameras=options.label_cameras)
        self._stop = threading.Event()
        self.stop_reason = ""
        # while running and after: the cameras (capture, session, stats); one removed keeps its numbers only
        self.cameras: list[Camera | RemovedCamera] = []
        self.sinks: list[Sink] = []  # more sinks (web view, MQTT), given before `run`
        self.runner: Runner | None = None
        self.dispatcher: Dispatcher | None = None
        self._videos: VideoFiles | None = None
        self._dashboard: Dashboard | None = None
        self._video_paths_at_start: dict[str, Path] = {}
        self.started_at: float | None = None  # time.monotonic() when `run` started the cameras
        self._changes = threading.Lock()  # add_camera / remove_camera against each other and `run`

    # -- one camera's view, for callers of the single-camera API -----------------------------------------
    @property
    def capture(self) -> Capture | None:
        return self.cameras[0].capture if self.cameras else None

    @property
    def last_prediction(self) -> Prediction | None:
        made = [c.session.last_prediction for c in self.cameras if c.session.last_prediction is not None]
        return max(made, key=lambda p: p.frame.capture_ts) if made else None

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def request_stop(self, reason: str = "stopped") -> None:
        """Ask the run to finish (safe from a signal handler or another thread)."""
        if not self._stop.is_set():
            self.stop_reason = reason
        self._stop.set()

    # -- cameras at run time (the web API) --------------------------------------------------------------
    def live_cameras(self) -> list[Camera]:
        """The cameras in the run now, in order (not those removed)."""
        return [c for c in self.cameras if not c.removed]

    def camera(self, name: str) -> Camera | None:
        return next((c for c in self.cameras if c.name == name and not c.removed), None)

    def add_camera(self, spec: CameraSpec) -> Camera:
        """Start a camera while the run goes on (from any thread). ValueError: its name is taken (ignoring
        case) or the run is not going (not yet started, or stopping)."""
        with self._changes:
            runner = self.runner
            if runner is None or self._stop.is_set():
                raise ValueError("the run is not going: cameras can be added while it runs")
            if any(c.name.lower() == spec.name.lower() for c in self.live_cameras()):
                raise ValueError(f"camera {spec.name!r} exists (names are unique, ignoring case)")
            cam = self._camera(spec, runner.wake.set)
            if self._videos is not None and self._save_folder() is not None:
                self._videos.paths[cam.name] = self._new_video_path(cam.name)
            if self._dashboard is not None:
                self._dashboard.order = (*self._dashboard.order, cam.name)
            self.specs.append(spec)
            self.cameras.append(cam)
            cam.capture.start()
            runner.add(cam)
        log.info("camera %s added (%s)", cam.name, spec.source.name)
        return cam

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
        kept = RemovedCamera(
            cam.name,
            cam.capture,
            self.camera_summary(cam, 0.0, ""),
            cam.snapshot(max_age_s=0.0),
            SessionTotals(cam.session.frames),
        )
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

    def _sinks(self, dashboard: Dashboard) -> tuple[list[Sink], VideoFiles | None, EventLog | None]:
        o = self.options
        sinks: list[Sink] = [] if o.quiet else [DashboardSink(dashboard, [c.name for c in self.cameras])]
        event_log = EventLog(o.events) if o.events else None
        if event_log is not None:
            sinks.append(EventFile(event_log))
        videos = None
        paths = self._video_paths_at_start = self._video_paths()
        if paths:
            default_fps = float(self.checkpoint.sampling.get("fps") or 25.0)

            def fps(name: str) -> float:
                cam = self.camera(name)
                return (cam.capture.nominal_fps if cam is not None else None) or default_fps

            videos = VideoFiles(paths, fps, self.view)
            sinks.append(videos)
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
        return sinks, videos, event_log

    # -- running -----------------------------------------------------------------------------------------
    def run(self) -> RunSummary:
        o = self.options
        if self.backend.name != "torch" and torch.get_num_threads() > 1:
            # torch only preprocesses frames here: with its own thread pool it fights the engine's threads
            # for the cores (measured: 31 ms a 320x240 frame after an OpenVINO call, 0.9 ms on one thread)
            log.info("torch: 1 thread (the %s engine has the cores)", self.backend.name)
            torch.set_num_threads(1)
        runner_wake = threading.Event()
        self.cameras = [self._camera(spec, runner_wake.set) for spec in self.specs]
        title = self.cameras[0].capture.name if len(self.cameras) == 1 else f"{len(self.cameras)} cameras"
        dashboard = Dashboard(f"{title} | {self.backend.describe()}", enabled=o.dashboard)
        sinks, videos, _ = self._sinks(dashboard)
        self._videos, self._dashboard = videos, dashboard
        # with keep_alive a camera may still come that is not read --fast: the queue never blocks the model
        fast = all(c.fast for c in self.cameras) and not o.keep_alive
        if o.block_sinks is not None:
            fast = o.block_sinks
        dispatcher = self.dispatcher = Dispatcher([*sinks, *self.sinks], block=fast)
        fps = float(self.checkpoint.sampling.get("fps") or 25.0)
        runner = Runner(
            self.backend,
            self.cameras,
            dispatcher.put,
            max_wait_s=o.max_wait_s if o.max_wait_s is not None else 0.5 / fps,
            stop=self._stop,
            paused=self.view.paused,
            max_frames=o.max_frames,
            on_prediction=self._announcing(o.on_prediction),
            wake=runner_wake,
            keep_alive=o.keep_alive,
        )
        with self._changes:
            self.runner = runner
        t_start = self.started_at = time.monotonic()
        for cam in self.cameras:
            cam.capture.start()
        model = threading.Thread(target=self._model_thread, args=(runner, dispatcher), name="glanet-model")
        model.start()
        timer = None
        if o.duration_s is not None:
            timer = threading.Timer(o.duration_s, self.request_stop, args=("duration reached",))
            timer.daemon = True
            timer.start()
        try:
            dispatcher.drain()
        except BaseException:
            self.request_stop("error")
            raise
        finally:
            if timer is not None:
                timer.cancel()
            self._stop.set()
            dispatcher.finish()  # a model thread blocked on a full queue must not wait for sinks now gone
            model.join()
            with self._changes:  # a barrier: an add_camera under way has finished; later ones see the stop
                pass
            for cam in self.cameras:
                cam.capture.close()
            dispatcher.close()
            wall = time.monotonic() - t_start
            summary = self._summary(runner, videos, wall, dispatcher.dropped)
            if not o.quiet:
                for cam in self.cameras:
                    snapshot, last = cam.snapshot(max_age_s=0.0), cam.session.last_prediction
                    dashboard.update(snapshot, last, camera=cam.name)
            dashboard.close(final=not o.quiet and any(c.session.frames for c in self.cameras))
        if runner.error is not None:
            raise runner.error
        return summary

    def _announcing(
        self, on_prediction: Callable[[Prediction], None] | None
    ) -> Callable[[Prediction], None] | None:
        if not self.options.announce:
            return on_prediction
        said = threading.Event()

        def hook(prediction: Prediction) -> None:
            if not said.is_set():
                said.set()
                print(self.options.announce, file=sys.stderr, flush=True)
            if on_prediction is not None:
                on_prediction(prediction)

        return hook

    def _model_thread(self, runner: Runner, dispatcher: Dispatcher) -> None:
        try:
            runner.run()
        finally:
            dispatcher.finish()

    def _summary(
        self, runner: Runner, videos: VideoFiles | None, wall: float, sink_dropped: int
    ) -> RunSummary:
        backend = self.backend.describe() + (f" ({self.backend_note})" if self.backend_note else "")
        out: dict[str, Summary] = {}
        for cam in self.cameras:
            summary = self.camera_summary(cam, wall, backend)
            summary.saved_frames = videos.frames_written(cam.name) if videos else 0
            key, k = cam.name, 2
            while key in out:  # a camera removed, then added again under its name
                key, k = f"{cam.name}#{k}", k + 1
            out[key] = summary
        reasons = {s.reason for s in out.values()}
        reason = self.stop_reason or (reasons.pop() if len(reasons) == 1 else "every camera finished")
        return RunSummary(out, reason, sink_dropped)

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


__all__ = ["CameraSpec", "ModelInfo", "Output", "RunSummary", "StreamApp", "StreamOptions", "Summary"]
