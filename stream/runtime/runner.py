"""The model thread of a multi-camera run: each round it gathers the frames that are due from every
camera, runs one batched round of the model (runtime/batch.py) and hands the outputs to the sinks' queue.

Gathering never waits on a camera that is not about to deliver: a round starts once one camera has a due
frame and closes at `first + max_wait_s` (at most one model frame interval), or as soon as every camera
expected before then has delivered. A camera is expected only if its own recent frame rhythm says its
next frame comes before the deadline, so one that stalls, reconnects or hangs is not waited for at all.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from engines.backend import Backend
from stream.output import Output
from stream.runtime.batch import Work, step_batch
from stream.runtime.session import Session
from stream.sources.capture import Capture
from stream.stats import RateMeter
from stream.types import Event, Frame, Prediction, SourceStatus, StatsSnapshot, StatusUpdate

log = logging.getLogger(__name__)

_TERMINAL = (SourceStatus.ENDED, SourceStatus.FAILED, SourceStatus.STOPPED)


@dataclass
class Camera:
    """A camera as the runner sees it: its capture, its session, and its rhythm and numbers."""

    name: str
    capture: Capture
    session: Session
    fast: bool  # read as fast as it goes: latency counts from when a frame is taken, not captured
    started: float = 0.0
    done: bool = False
    last_arrival: float | None = None  # monotonic time its newest frame was taken
    interval: float | None = None  # recent mean time between its frames
    frames: int = 0
    last_event: str = ""
    removed: bool = False  # taken out of the run while it went on (web API): its numbers stay in the summary

    def __post_init__(self) -> None:
        self.rates = {"capture": RateMeter(), "model": RateMeter()}
        self._snapshot: tuple[float, StatsSnapshot] | None = None

    def poll(self) -> Frame | None:
        frame = self.capture.get(timeout=0.0)
        if frame is not None:
            now = time.monotonic()
            if self.last_arrival is not None:
                gap = now - self.last_arrival
                self.interval = gap if self.interval is None else 0.8 * self.interval + 0.2 * gap
            self.last_arrival = now
            self.frames += 1
            self.rates["capture"].tick(frame.capture_ts)
        return frame

    def expected_by(self, deadline: float, now: float) -> bool:
        """Will its next frame come before `deadline`? Only a camera keeping its rhythm is waited for."""
        if self.done or self.last_arrival is None or self.interval is None:
            return False
        due = self.last_arrival + self.interval
        return due <= deadline and now - self.last_arrival < 2.5 * self.interval

    def status(self) -> StatusUpdate:
        """As the viewer of the frame just taken should see it: a source that reached its end while
        frames were still queued is shown live until the last of them."""
        st = self.capture.status
        if st.status in _TERMINAL and not self.capture.finished:
            return StatusUpdate(SourceStatus.LIVE, "")
        return st

    def snapshot(self, max_age_s: float = 0.2) -> StatsSnapshot:
        """The numbers now; recomputed at most every `max_age_s` (it is asked for at every frame)."""
        now = time.monotonic()
        status = self.status()
        if (
            self._snapshot
            and now - self._snapshot[0] < max_age_s
            and self._snapshot[1].status is status.status
        ):
            return self._snapshot[1]
        s, c = self.session, self.capture
        snap = StatsSnapshot(
            # capture is timed by the frames' capture stamps, up to the newest seen
            fps={k: r.rate(r.last if k == "capture" else now) for k, r in self.rates.items()},
            latency_p50_ms=s.latency.percentile(50) * 1000,
            latency_p95_ms=s.latency.percentile(95) * 1000,
            frames_captured=c.frames,
            frames_dropped=c.buffer.dropped,
            frames_skipped=s.frames - s.predictions,
            decode_errors=c.decode_errors,
            reconnects=c.reconnects,
            model_frames=s.steps,
            model_reused=s.reused,
            status=status.status,
            status_message=status.message,
            attempt=status.attempt,
            retry_at=status.since + status.retry_in_s if status.retry_in_s > 0 else None,
            elapsed_s=now - self.started,
            last_event=self.last_event,
        )
        self._snapshot = (now, snap)
        return snap

    def output(
        self, frame: Frame, prediction: Prediction | None, events: list[Event], display: bool = True
    ) -> Output:
        for ev in events:
            at = ev.end_ts if ev.end_ts is not None else ev.start_ts
            self.last_event = f"{ev.label} {ev.kind} at {at:.1f} s"
        fresh = prediction is not None
        return Output(
            self.name, frame, prediction or self.session.last_prediction, fresh, self.status(),
            self.snapshot(max_age_s=0.2 if display else 0.0), events, display,
        )  # fmt: skip


class Runner:
    """The only place that calls the engine. `run()` returns when every camera has finished or `stop`."""

    def __init__(
        self,
        backend: Backend,
        cameras: Sequence[Camera],
        emit: Callable[[Output], None],
        *,
        max_wait_s: float,
        stop: threading.Event,
        paused: threading.Event | None = None,
        max_frames: int | None = None,  # per camera: source frames to process, then that camera is done
        on_prediction: Callable[[Prediction], None] | None = None,
        wake: threading.Event | None = None,
        keep_alive: bool = False,
    ) -> None:
        """`wake`: set by the capture threads at every frame and status change (their `wake` callback).
        `keep_alive`: go on when every camera has finished (cameras may still be added), until `stop`."""
        self.backend, self.cameras, self.emit = backend, list(cameras), emit
        self.max_wait_s = max_wait_s
        self.stop, self.paused = stop, paused or threading.Event()
        self.max_frames = max_frames
        self.on_prediction = on_prediction
        self.wake = wake or threading.Event()
        self.keep_alive = keep_alive
        self._changes: list[tuple[str, Camera]] = []  # ("add" | "remove", camera), from other threads
        self._changes_lock = threading.Lock()
        self.rounds = 0
        self.batch_sizes: list[int] = []  # how many cameras each round served (for benchmarks)
        self.error: BaseException | None = None

    def add(self, cam: Camera) -> None:
        """Take a camera into the run from another thread (its capture already started): it joins at the
        next round."""
        with self._changes_lock:
            self._changes.append(("add", cam))
        self.wake.set()

    def remove(self, cam: Camera) -> None:
        """Take a camera out from another thread: its open event is closed and it gets no more rounds; the
        caller closes its capture."""
        with self._changes_lock:
            self._changes.append(("remove", cam))
        self.wake.set()

    def _apply_changes(self) -> list[str]:
        """The cameras added and removed since the last call take effect; the names removed."""
        with self._changes_lock:
            changes, self._changes = self._changes, []
        removed = []
        for kind, cam in changes:
            if kind == "add":
                cam.started = time.monotonic()
                self.cameras.append(cam)
            elif cam in self.cameras:
                self.cameras.remove(cam)
                removed.append(cam.name)
                if not cam.done:
                    self._finish(cam)
                # the last of this camera the sinks get: they let go of it (tile, video, dashboard row)
                self.emit(Output(cam.name, None, cam.session.last_prediction, False, cam.status(),
                                 cam.snapshot(max_age_s=0.0), display=False, removed=True))  # fmt: skip
        return removed

    def run(self) -> None:
        now = time.monotonic()
        for cam in self.cameras:
            cam.started = now
        try:
            while not self.stop.is_set():
                if self.paused.is_set():
                    time.sleep(0.03)
                    continue
                work = self._gather()
                if work:
                    self._round(work)
                elif all(cam.done for cam in self.cameras):
                    if not self.keep_alive:
                        break
                    self.wake.wait(0.1)
                    self.wake.clear()
            # a stop (Ctrl-C, SIGTERM, --duration, the window's quit key): every camera still going ends
            # here, its open event closed at its last time seen, as when its source ends
            self._apply_changes()
            for cam in self.cameras:
                if not cam.done:
                    self._finish(cam)
        except BaseException as e:  # handed to the app, which reports it after the sinks are closed
            self.error = e
            self.stop.set()

    def _finish(self, cam: Camera) -> None:
        """The camera is done: close its open event, and show its final status (nothing to draw)."""
        cam.done = True
        last = cam.session.last_prediction
        if last is not None:
            out = cam.output(last.frame, None, cam.session.detector.finish(), display=False)
        else:  # nothing was predicted (a source that never opened): its final status, no picture
            snapshot = cam.snapshot(max_age_s=0.0)
            out = Output(cam.name, None, None, False, cam.status(), snapshot, display=False)
        out.final = True
        self.emit(out)

    def _take(self, cam: Camera) -> Work | None:
        """The camera's next frame that fills model ticks; frames that fill none go to the sinks as they
        are (they are still shown and saved)."""
        while True:
            if self.max_frames is not None and cam.session.frames >= self.max_frames:
                self._finish(cam)
                return None
            frame = cam.poll()
            if frame is None:
                if cam.capture.finished:
                    self._finish(cam)
                return None
            ticks, events = cam.session.admit(frame)
            if ticks:
                return Work(cam.session, frame, ticks, time.monotonic() if cam.fast else frame.capture_ts)
            self.emit(cam.output(frame, None, events))

    def _gather(self) -> list[Work]:
        work: dict[str, Work] = {}
        first: float | None = None
        while not self.stop.is_set():
            self.wake.clear()  # before polling: a frame arriving after this sets it again
            for name in self._apply_changes():
                work.pop(name, None)
            for cam in self.cameras:
                if cam.name not in work and not cam.done:
                    item = self._take(cam)
                    if item is not None:
                        work[cam.name] = item
            now = time.monotonic()
            if work and first is None:
                first = now
            if first is None:
                if all(cam.done for cam in self.cameras):
                    return []
                self.wake.wait(0.1)
                continue
            deadline = first + self.max_wait_s
            waiting = [c for c in self.cameras if c.name not in work and c.expected_by(deadline, now)]
            if not waiting or now >= deadline:
                break
            self.wake.wait(deadline - now)
        return list(work.values())

    def _round(self, work: list[Work]) -> None:
        results = step_batch(self.backend, work)
        self.rounds += 1
        self.batch_sizes.append(len(work))
        by_session = {id(c.session): c for c in self.cameras}
        for item, (prediction, events) in zip(work, results, strict=True):
            cam = by_session[id(item.session)]
            cam.rates["model"].tick()
            if self.on_prediction is not None:
                self.on_prediction(prediction)
            self.emit(cam.output(item.frame, prediction, events))
