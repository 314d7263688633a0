"""The streaming pipeline put together: source -> capture thread -> ring buffer -> recognizer -> sinks.

`run(options)` runs until the source ends, `max_frames`/`duration_s` is reached, the window's quit key,
or a stop request (`request_stop`, which `run_camera.py` wires to SIGINT/SIGTERM). Whatever ends it,
the saved video is finalised, events are flushed (an open event is closed) and a summary is returned.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from stream.capture import Capture, CaptureConfig
from stream.dashboard import Dashboard
from stream.events import EventConfig, EventDetector
from stream.overlay import draw_overlay
from stream.recognizer import Backend, Recognizer, RecognizerConfig
from stream.sinks import EventLog, VideoSink, WindowSink, has_display
from stream.sources import SourceSpec
from stream.stats import Percentiles, RateMeter
from stream.types import Event, Prediction, SourceStatus, StatsSnapshot

log = logging.getLogger(__name__)
ATTENTION_MODES = ("sa", "la", "none")


class ModelInfo(Protocol):
    """What the loop needs to know of the model: a LoadedCheckpoint or an export's Manifest."""

    @property
    def class_names(self) -> tuple[str, ...]: ...

    @property
    def preprocessing(self) -> dict[str, Any]: ...

    @property
    def sampling(self) -> dict[str, Any]: ...


@dataclass(frozen=True)
class StreamOptions:
    fast: bool = False  # files/folders/demo: every frame as fast as possible instead of real time
    headless: bool | None = None  # None: headless when there is no display
    save: Path | None = None
    events: Path | None = None
    max_frames: int | None = None  # source frames to process, then stop
    duration_s: float | None = None  # wall seconds, then stop
    attention: str = "sa"
    dashboard: bool | None = None  # None: a live dashboard on a terminal, one line every 5 s otherwise
    recognizer: RecognizerConfig = field(default_factory=RecognizerConfig)
    events_config: EventConfig = field(default_factory=EventConfig)
    watchdog_s: float = 5.0
    max_reconnects: int | None = None
    buffer_capacity: int = 0  # 0: the capture default (4 live and real-time files, 64 with --fast)
    # called in the loop with every prediction (benchmarks, embedding): keep it cheap, it adds to latency
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
    latency_p50_ms: float = float("nan")  # p50/p95 over the last 2000 predictions (stats.Percentiles)
    latency_p95_ms: float = float("nan")
    latency_max_ms: float = float("nan")
    wall_s: float = 0.0
    error: str | None = None
    backend: str = ""

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


class StreamApp:
    def __init__(
        self,
        spec: SourceSpec,
        checkpoint: ModelInfo,
        backend: Backend,
        options: StreamOptions = StreamOptions(),
        backend_note: str = "",
    ) -> None:
        if options.attention not in ATTENTION_MODES:
            raise ValueError(f"attention {options.attention!r} must be one of {', '.join(ATTENTION_MODES)}")
        self.spec, self.checkpoint, self.backend, self.options = spec, checkpoint, backend, options
        self.backend_note = backend_note  # why this backend (auto-selection's sentence)
        self._stop = threading.Event()
        self.stop_reason = ""
        self.last_prediction: Prediction | None = None
        self.capture: Capture | None = None  # while running: the source's capture (status, history)
        self.recognizer: Recognizer | None = None  # while running: the recognizer (steps, resets)

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def request_stop(self, reason: str = "stopped") -> None:
        """Ask the loop to finish (safe from a signal handler or another thread)."""
        if not self._stop.is_set():
            self.stop_reason = reason
        self._stop.set()

    def _capture_config(self) -> CaptureConfig:
        o, kind = self.options, self.spec.kind
        realtime = kind in ("file", "folder", "demo") and not o.fast
        # the demo with --fast is a generator read as fast as it goes: every frame, like a file
        live = self.spec.live and not (o.fast and kind == "demo")
        return CaptureConfig(
            live=live,
            realtime=realtime,
            capacity=o.buffer_capacity,
            watchdog_s=o.watchdog_s if kind in ("webcam", "network") else 0.0,
            max_reconnects=o.max_reconnects,
        )

    def run(self) -> Summary:
        o = self.options
        ck = self.checkpoint
        summary = Summary()
        recognizer = Recognizer(
            self.backend,
            preprocessing=ck.preprocessing,
            sampling=ck.sampling,
            class_names=ck.class_names,
            config=o.recognizer,
        )
        self.recognizer = recognizer
        detector = EventDetector(ck.class_names, self.spec.name, o.events_config)
        headless = o.headless if o.headless is not None else not has_display()
        event_log = EventLog(o.events) if o.events else None
        video: VideoSink | None = None
        window = None if headless else WindowSink(f"glanet - {self.spec.name}")
        dashboard = Dashboard(f"{self.spec.name} | {self.backend.describe()}", enabled=o.dashboard)
        capture = Capture(self.spec.factory, self.spec.name, self._capture_config())
        self.capture = capture
        latency = Percentiles()
        rates = {"capture": RateMeter(), "loop": RateMeter(), "model": RateMeter()}
        attention = o.attention
        paused = False
        t_start = time.monotonic()
        last_image = None

        cached: list[tuple[float, StatsSnapshot]] = []

        def snapshot(max_age_s: float = 0.2) -> StatsSnapshot:
            """The numbers now; recomputed at most every `max_age_s` (it runs per frame for the overlay)."""
            now = time.monotonic()
            if cached and now - cached[0][0] < max_age_s and cached[0][1].status is capture.status.status:
                return cached[0][1]
            cached[:] = [(now, fresh_snapshot(now))]
            return cached[0][1]

        def fresh_snapshot(now: float) -> StatsSnapshot:
            status = capture.status
            return StatsSnapshot(
                # capture is timed by the frames' capture stamps, up to the newest seen (a queue may
                # hold older ones than now)
                fps={k: r.rate(r.last if k == "capture" else now) for k, r in rates.items()},
                latency_p50_ms=latency.percentile(50) * 1000,
                latency_p95_ms=latency.percentile(95) * 1000,
                frames_captured=capture.frames,
                frames_dropped=capture.buffer.dropped,
                frames_skipped=summary.frames - summary.predictions,
                decode_errors=capture.decode_errors,
                reconnects=capture.reconnects,
                model_frames=recognizer.steps,
                status=status.status,
                status_message=status.message,
                elapsed_s=now - t_start,
            )

        def emit(events: list[Event]) -> None:
            for ev in events:
                summary.events += 1
                if event_log is not None:
                    event_log.write(ev)
                log.info("event %s %s at %.2f s (peak %.2f)", ev.kind, ev.label, ev.start_ts, ev.peak)

        capture.start()
        try:
            while not self._stop.is_set():
                if o.duration_s is not None and time.monotonic() - t_start >= o.duration_s:
                    self.request_stop("duration reached")
                    break
                if paused:
                    if window is not None and last_image is not None:
                        actions = window.show(
                            draw_overlay(last_image, self.last_prediction, attention=attention,
                                         stats=snapshot(), status=capture.status, paused=True)
                        )  # fmt: skip
                        paused, attention = self._actions(actions, paused, attention)
                    time.sleep(0.03)
                    continue
                frame = capture.get(timeout=0.1)
                if frame is None:
                    if capture.finished:
                        break
                    dashboard.update(snapshot(), self.last_prediction)
                    continue
                now = time.monotonic()
                if summary.frames == 0 and self.spec.kind in ("file", "folder", "demo"):
                    recognizer.resampler.source_fps = capture.nominal_fps  # frames on a fixed clock
                rates["capture"].tick(frame.capture_ts)
                resets_before = recognizer.resets
                prediction = recognizer.push(frame)
                if recognizer.resets != resets_before:  # a new session or a gap: close the open event
                    emit(detector.reset())
                summary.frames += 1
                rates["loop"].tick(now)
                if prediction is not None:
                    summary.predictions += 1
                    rates["model"].tick()
                    latency.add(prediction.latency_s)
                    self.last_prediction = prediction
                    if o.on_prediction is not None:
                        o.on_prediction(prediction)
                    if prediction.warm:
                        emit(detector.update(prediction.probs, frame.source_ts, frame.index))
                if window is not None or o.save is not None:
                    image = draw_overlay(
                        frame.image, self.last_prediction, attention=attention, stats=snapshot(),
                        status=capture.status, paused=False,
                    )  # fmt: skip
                    last_image = frame.image
                    if o.save is not None:
                        if video is None:
                            video = VideoSink(o.save, fps=capture.nominal_fps or self._default_fps())
                        video.write(image)
                    if window is not None:
                        paused, attention = self._actions(window.show(image), paused, attention)
                dashboard.update(snapshot(), self.last_prediction)
                if o.max_frames is not None and summary.frames >= o.max_frames:
                    self.request_stop("max frames reached")
        finally:
            capture.close()
            emit(detector.finish())
            if video is not None:
                video.close()
                summary.saved_frames = video.frames_written
            if event_log is not None:
                event_log.close()
            if window is not None:
                window.close()
            summary.wall_s = time.monotonic() - t_start
            summary.backend = self.backend.describe() + (
                f" ({self.backend_note})" if self.backend_note else ""
            )
            summary.model_ticks = recognizer.steps
            summary.encoded = recognizer.encoded
            summary.resets = recognizer.resets
            summary.dropped = capture.buffer.dropped
            summary.decode_errors = capture.decode_errors
            summary.reconnects = capture.reconnects
            summary.latency_p50_ms = latency.percentile(50) * 1000
            summary.latency_p95_ms = latency.percentile(95) * 1000
            summary.latency_max_ms = latency.maximum * 1000 if latency.count else float("nan")
            dashboard.update(snapshot(max_age_s=0.0), self.last_prediction)
            dashboard.close(final=summary.frames > 0)  # a source that never opened: its one error line only
        if capture.error is not None:
            summary.error = str(capture.error)
            summary.reason = "source failed"
        elif self.stop_reason:
            summary.reason = self.stop_reason
        elif capture.status.status is SourceStatus.ENDED:
            summary.reason = "end of stream"
        else:
            summary.reason = "stopped"
        return summary

    def _default_fps(self) -> float:
        return float(self.checkpoint.sampling.get("fps") or 25.0)

    def _actions(self, actions: set[str], paused: bool, attention: str) -> tuple[bool, str]:
        if "quit" in actions:
            self.request_stop("quit key")
        if "pause" in actions:
            paused = not paused
        if "attention" in actions:
            attention = ATTENTION_MODES[(ATTENTION_MODES.index(attention) + 1) % len(ATTENTION_MODES)]
        return paused, attention
