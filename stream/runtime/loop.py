"""What a run is to those who drive it, and the one loop that drives every kind.

A run in this process (`StreamApp`) and a run over a cluster's shards (`stream.cluster.ClusterApp`) offer
the same surface, `Run`: start, run, add and remove a camera, stop, the cameras' status, close. The command
line, the web view and the archive use a run only through it.

`RunLoop` is the loop both share, written once: the dashboard, the event file, the dispatcher and the sinks,
the duration timer, the stop, and the same shutdown whatever ended the run (the window's quit key, a signal,
an error, the last camera's end). What differs is the work: a model thread in this process, a thread polling
the shards for a cluster (`_start_work`), and what is closed after it (`_after_work`).
"""

from __future__ import annotations

import sys
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol

from stream.output import View
from stream.runtime.dispatch import Dispatcher, Sink
from stream.runtime.summary import RunSummary, Summary
from stream.sinks.dashboard import Dashboard, DashboardSink
from stream.sinks.eventlog import EventFile, EventLog
from stream.types import CameraStatus

if TYPE_CHECKING:
    from stream.runtime.spec import CameraSpec, StreamOptions


class Run(Protocol):
    """A run of cameras, local or on a cluster, as the command line, the web view and the archive see it."""

    options: StreamOptions
    specs: list[CameraSpec]
    sinks: list[Sink]  # more sinks (web view, MQTT), given before `run`
    dispatcher: Dispatcher | None
    started_at: float | None  # time.monotonic() when the cameras started

    @property
    def view(self) -> View | None: ...

    @property
    def backend(self) -> Any: ...  # what runs the model: `describe()` and its `spec` (maps, branches)

    @property
    def stopping(self) -> bool: ...

    def start(self) -> None: ...

    def run(self) -> RunSummary: ...

    def request_stop(self, reason: str = "stopped") -> None: ...

    def add_camera(self, spec: CameraSpec) -> CameraStatus: ...

    def remove_camera(self, name: str) -> bool: ...

    def statuses(self) -> list[CameraStatus]: ...

    def status(self, name: str) -> CameraStatus | None: ...

    def close(self) -> None: ...


class RunLoop(ABC):
    """The loop a run goes through, and what every run does the same way: stopping, finding its cameras,
    summarising them. A subclass holds `cameras` (objects with `name` and `removed`) and gives the work."""

    def __init__(self, options: StreamOptions, sinks: Sequence[Sink] = ()) -> None:
        self.options = options
        self.sinks: list[Sink] = list(sinks)
        self.cameras: list[Any] = []
        self.dispatcher: Dispatcher | None = None
        self.started_at: float | None = None
        self.stop_reason = ""
        self._stop = threading.Event()
        self._changes = threading.RLock()  # the cameras against the web API's threads and the loop
        self._dashboard: Dashboard | None = None

    # -- stopping ---------------------------------------------------------------------------------------
    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def request_stop(self, reason: str = "stopped") -> None:
        """Ask the run to finish (safe from a signal handler or another thread)."""
        if not self._stop.is_set():
            self.stop_reason = reason
        self._stop.set()

    # -- the cameras -------------------------------------------------------------------------------------
    def live_cameras(self) -> list[Any]:
        """The cameras in the run now, in order (not those removed)."""
        with self._changes:
            return [c for c in self.cameras if not c.removed]

    def camera(self, name: str) -> Any:
        with self._changes:
            return next((c for c in self.cameras if c.name == name and not c.removed), None)

    def statuses(self) -> list[CameraStatus]:
        """Every live camera's status now, in order (its numbers at most a fraction of a second old)."""
        return [self.camera_status(c) for c in self.live_cameras()]

    def status(self, name: str) -> CameraStatus | None:
        cam = self.camera(name)
        return None if cam is None else self.camera_status(cam)

    @abstractmethod
    def camera_status(self, cam: Any, max_age_s: float = 0.2) -> CameraStatus:
        """One camera's status, its numbers at most `max_age_s` old."""

    def _name_taken(self, name: str) -> bool:
        return any(c.name.lower() == name.lower() for c in self.live_cameras())

    def _camera_added(self, name: str) -> None:
        """A camera joined at run time: the dashboard shows it (the sinks learn of it by its outputs)."""
        if self._dashboard is not None:
            self._dashboard.order = (*self._dashboard.order, name)

    # -- the loop ----------------------------------------------------------------------------------------
    def run(self) -> RunSummary:
        """Run until every camera ends (unless kept alive), the duration, or a stop; the summary per camera.
        The sinks run on the calling thread (where a GUI toolkit wants its window), the work on its own."""
        o = self.options
        names = self._prepare()
        dashboard = self._dashboard = Dashboard(self._title(), enabled=o.dashboard)
        sinks: list[Sink] = [] if o.quiet else [DashboardSink(dashboard, names)]
        if o.events:
            sinks.append(EventFile(EventLog(o.events)))
        sinks += self._own_sinks()
        dispatcher = self.dispatcher = Dispatcher([*sinks, *self.sinks], block=self._blocks())
        worker = self._start_work(dispatcher)
        timer = None
        if o.duration_s is not None:
            timer = threading.Timer(o.duration_s, self.request_stop, args=("duration reached",))
            timer.daemon = True
            timer.start()
        error: BaseException | None = None
        try:
            dispatcher.drain()
        except BaseException as e:
            self.request_stop("error")
            error = e
        finally:
            if timer is not None:
                timer.cancel()
            self._stop.set()
            dispatcher.finish()  # a worker blocked on a full queue must not wait for sinks now gone
            worker.join()
            with self._changes:  # a barrier: an add_camera under way has finished; later ones see the stop
                pass
            self._after_work()
            dispatcher.close()
            wall = time.monotonic() - (self.started_at or time.monotonic())
            summary = self._summary(wall, dispatcher.dropped)
            every = [self.camera_status(c, max_age_s=0.0) for c in list(self.cameras)]
            if not o.quiet:
                for s in every:
                    dashboard.update(s.stats, s.last_prediction, camera=s.name)
            dashboard.close(final=not o.quiet and any(s.frames for s in every))
        if error is not None:
            raise error
        self._raise_work_error()
        return summary

    def _run_summary(self, summaries: Sequence[tuple[str, Summary]], dropped: int) -> RunSummary:
        """The run's summary from each camera's, in order; a name used twice (a camera removed, then added
        again) is told apart by #2, #3 ..."""
        out: dict[str, Summary] = {}
        for name, summary in summaries:
            key, k = name, 2
            while key in out:
                key, k = f"{name}#{k}", k + 1
            out[key] = summary
        reasons = {s.reason for s in out.values()}
        reason = self.stop_reason or (reasons.pop() if len(reasons) == 1 else "every camera finished")
        return RunSummary(out, reason, dropped)

    def announcing(self) -> Any:
        """The hook for every fresh prediction: says `options.announce` once, then calls `on_prediction`."""
        o = self.options
        if not o.announce:
            return o.on_prediction
        said = threading.Event()

        def hook(prediction: Any) -> None:
            if not said.is_set():
                said.set()
                print(o.announce, file=sys.stderr, flush=True)
            if o.on_prediction is not None:
                o.on_prediction(prediction)

        return hook

    # -- what each kind of run gives ---------------------------------------------------------------------
    @abstractmethod
    def _prepare(self) -> list[str]:
        """Make the cameras ready (not started); the names the dashboard shows, in order."""

    @abstractmethod
    def _title(self) -> str:
        """The dashboard's title."""

    def _own_sinks(self) -> list[Sink]:
        """Sinks of this kind of run, after the dashboard and the event file (a window, videos)."""
        return []

    @abstractmethod
    def _blocks(self) -> bool:
        """Whether the sinks' queue blocks the work instead of dropping (nothing may be lost)."""

    @abstractmethod
    def _start_work(self, dispatcher: Dispatcher) -> threading.Thread:
        """Start the cameras and the thread that feeds the dispatcher; it calls `dispatcher.finish()`."""

    @abstractmethod
    def _after_work(self) -> None:
        """After the work has stopped, before the sinks close (the cameras' sources close here)."""

    @abstractmethod
    def _summary(self, wall: float, dropped: int) -> RunSummary:
        """Every camera's summary, and how the run ended."""

    @abstractmethod
    def _raise_work_error(self) -> None:
        """The error that ended the work, raised once the sinks are closed."""


__all__ = ["Run", "RunLoop"]
