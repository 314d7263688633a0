"""A shard: the multi-camera runtime for the cameras the driver gives it, with its own engine, as a Ray actor.

The driver calls `poll` every few tens of milliseconds; each call renews the shard's lease. A shard that has
not been polled for `lease_s` stops every camera by itself (fenced), so that when the driver gives up on it
(after the lease and a margin) and moves its cameras, no camera is ever served by two shards at once, even
when the shard was only cut off rather than dead. A fenced shard that still hears nothing for `exit_after_s`
ends its process (its recordings finalised first): a driver that hangs, alive to Ray, would otherwise hold the
shards' CPUs, and the next run could not start its own.

With --save the shard records its cameras on its node (stream/cluster/parts.py): a part a placement, named
by the driver, reported at every poll.
"""

from __future__ import annotations

import collections
import dataclasses
import logging
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from stream.cluster.parts import PartRecorder, PartState
from stream.cluster.wire import Record, to_record
from stream.output import Output
from stream.runtime.app import StreamApp
from stream.runtime.model import ModelChoice, model_fps, open_model
from stream.runtime.spec import CameraSpec, StreamOptions
from stream.runtime.summary import Summary
from stream.types import StatsSnapshot

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ShardConfig:
    name: str
    model: ModelChoice  # the model and its engine, as the driver was given them
    options: StreamOptions  # how its cameras run (the shard makes it headless, quiet, kept alive)
    max_batch: int
    threads: int | None = None  # the engine's CPU threads (None: its own choice)
    cpus: tuple[int, ...] | None = None  # pin the shard to these cores (local clusters: a node's share)
    cwd: str = ""  # the driver's working folder: relative paths mean the same here, where it exists
    lease_s: float = 3.0
    exit_after_s: float = 10.0  # fenced and still not polled this long after: the shard's process ends
    picture_fps: float = 0.0  # pictures a second a camera to the driver (the web view); 0: none
    jpeg_quality: int = 80
    outbox: int = 2048  # records held for the driver; with `block` the cameras wait beyond it


@dataclass
class CameraState:
    summary: Summary
    stats: StatsSnapshot
    done: bool


@dataclass
class Poll:
    """One poll's answer: the records since the last, and every camera's numbers now."""

    records: list[Record] = field(default_factory=list)
    cameras: dict[str, CameraState] = field(default_factory=dict)
    fenced: bool = False
    error: str | None = None  # the shard's runtime failed (the engine raised): its cameras must move
    dropped: int = 0  # records dropped because the driver collected too slowly (never with block)
    parts: list[PartState] = field(default_factory=list)  # --save: the parts written here (parts.py)


class Outbox:
    """The shard's sink: the outputs worth sending, held until the driver's next poll."""

    def __init__(self, config: ShardConfig, block: bool) -> None:
        self.config, self.block = config, block
        self.items: collections.deque[Record] = collections.deque()
        self.dropped = 0
        self.closed = False
        self._cond = threading.Condition()
        self._picture_at: dict[str, float] = {}
        self._status: dict[str, Any] = {}

    def write(self, output: Output) -> None:
        now = time.monotonic()
        picture = False
        fps = self.config.picture_fps
        due = fps > 0 and now - self._picture_at.get(output.camera, -1e9) >= 1.0 / fps
        if due and output.display and output.frame is not None:
            picture, self._picture_at[output.camera] = True, now
        status = output.status.status
        changed = self._status.get(output.camera) is not status
        self._status[output.camera] = status
        if not (output.fresh or output.events or output.final or output.removed or picture or changed):
            return
        record = to_record(output, picture=picture, quality=self.config.jpeg_quality, send_prediction=changed)
        if output.removed or output.final:
            self._picture_at.pop(output.camera, None)
            self._status.pop(output.camera, None)
        with self._cond:
            if self.block:
                while len(self.items) >= self.config.outbox and not self.closed:
                    self._cond.wait(0.1)
            elif len(self.items) >= self.config.outbox:
                self._drop_one()
            self.items.append(record)

    def _drop_one(self) -> None:
        for i, old in enumerate(self.items):
            if not old.worth_keeping:
                del self.items[i]
                self.dropped += 1
                return
        self.items.popleft()
        self.dropped += 1

    def take(self) -> list[Record]:
        with self._cond:
            items, self.items = list(self.items), collections.deque()
            self._cond.notify_all()
        return items

    def idle(self) -> None:
        pass

    def close(self) -> None:
        with self._cond:
            self.closed = True
            self._cond.notify_all()


class Shard:
    """Loads the model, then runs a kept-alive StreamApp on a thread; the driver adds cameras and polls."""

    def __init__(self, config: ShardConfig) -> None:
        self.config = config
        if config.cpus:
            os.sched_setaffinity(0, config.cpus)
        if config.cwd and os.path.isdir(config.cwd):
            os.chdir(config.cwd)
        save = config.options.save  # --save: a folder, that path on every node (relative: from cwd)
        if save is not None:
            PartRecorder.prepare(Path(save))  # before the model loads: a folder it cannot write fails now
        # the engine's threads are the node's CPUs: torch's too
        choice = dataclasses.replace(config.model, threads=config.threads)
        model = open_model(choice, max_batch=config.max_batch, threads=config.threads)
        self.info, self.backend = model.info, model.backend
        o = config.options
        fast = bool(o.fast)
        options = dataclasses.replace(
            o, headless=True, dashboard=False, quiet=True, keep_alive=True, save=None, events=None,
            duration_s=None, announce="", on_prediction=None, block_sinks=fast,
        )  # fmt: skip
        self.outbox = Outbox(config, block=fast)
        self.app = StreamApp([], self.info, self.backend, options, sinks=[self.outbox])
        self.recorder: PartRecorder | None = None
        if save is not None:
            self.recorder = PartRecorder(Path(save), lambda: self.app.view, self._fps)
            # before the outbox: a camera's part is finalised by the time its last record can be taken
            self.app.sinks.insert(0, self.recorder)
        self.error: str | None = None
        self.fenced = False
        self._polled_fenced = False
        self._renewed = time.monotonic()
        self._thread = threading.Thread(target=self._run, name="glanet-shard", daemon=True)
        self._thread.start()
        while self.app.runner is None and self._thread.is_alive():
            time.sleep(0.01)
        self._watchdog = threading.Thread(target=self._watch, name="glanet-lease", daemon=True)
        self._watchdog.start()

    def _run(self) -> None:
        try:
            self.app.run()
        except BaseException as e:  # reported at the next poll: the driver moves the cameras
            self.error = f"{type(e).__name__}: {e}"
            log.exception("shard %s failed", self.config.name)

    def _watch(self) -> None:
        while not self.app.stopping:
            if time.monotonic() - self._renewed > self.config.lease_s:
                self.fenced = True
                log.warning("shard %s: no word from the driver for %.1f s: stopping", self.config.name,
                            self.config.lease_s)  # fmt: skip
                self.app.request_stop("lease expired")
                self.outbox.close()
                self._exit_unless_polled()
                return
            time.sleep(0.05)

    def _exit_unless_polled(self) -> None:
        """Fenced: a driver that polls again takes the last records and kills this actor itself; one that
        stays silent (hung, or cut off for good) is not waited for: the process ends, Ray frees its CPUs."""
        self._thread.join(timeout=30)  # the sinks closed as the run ended: every part is finalised
        fenced_at = self._renewed + self.config.lease_s
        while time.monotonic() - fenced_at < self.config.exit_after_s:
            if self._polled_fenced:
                return
            time.sleep(0.1)
        log.warning("shard %s: still no word from the driver %.0f s after stopping: exiting",
                    self.config.name, self.config.exit_after_s)  # fmt: skip
        logging.shutdown()
        os._exit(0)

    # -- the driver's calls ------------------------------------------------------------------------------
    def describe(self) -> dict[str, Any]:
        """What the driver needs of the model and where this shard runs."""
        import ray

        spec = self.backend.spec
        return {
            "class_names": tuple(self.info.class_names),
            "preprocessing": dict(self.info.preprocessing),
            "sampling": dict(self.info.sampling),
            "spec": spec,
            "backend": self.backend.describe(),
            "backend_name": self.backend.name,
            "pid": os.getpid(),
            "node": ray.get_runtime_context().get_node_id(),
            "cpus": sorted(os.sched_getaffinity(0)),
        }

    def add(self, spec: CameraSpec, part: int = 1) -> None:
        """Start the camera here; with --save its frames go to its part `part` (parts.part_file)."""
        self._renewed = time.monotonic()
        if self.fenced or self.error:
            raise RuntimeError(f"shard {self.config.name} is stopping")
        if self.recorder is not None:
            self.recorder.begin(spec.name, part)
        try:
            self.app.add_camera(spec)
        except BaseException:
            if self.recorder is not None:
                self.recorder.forget(spec.name)
            raise

    def remove(self, name: str) -> bool:
        self._renewed = time.monotonic()
        return self.app.remove_camera(name)

    def poll(self) -> Poll:
        """Renews the lease; the records since the last poll and the cameras' numbers."""
        if not self.fenced:
            self._renewed = time.monotonic()
        else:
            self._polled_fenced = True  # the driver knows: it kills this actor (controller._lost)
        cameras = self._states()  # before taking the records: a camera done here has its records there
        self.app.forget_removed()  # told so: the driver keeps their numbers
        return Poll(self.outbox.take(), cameras, self.fenced, self.error, self.outbox.dropped, self._parts())

    def stop(self) -> Poll:
        """Stops every camera (their open events close) and answers the last poll."""
        self.app.request_stop("stopped")
        self.outbox.close()
        self._thread.join(timeout=30)  # the sinks closed as the run ended: every part is finalised
        return Poll(
            self.outbox.take(), self._states(), self.fenced, self.error, self.outbox.dropped, self._parts()
        )

    def _fps(self, camera: str) -> float:
        """A recording's frame rate: its source's (known once it opened), else the model's."""
        status = self.app.status(camera)
        return (status.nominal_fps if status is not None else None) or model_fps(self.info)

    def _parts(self) -> list[PartState]:
        return self.recorder.report() if self.recorder is not None else []

    def _states(self) -> dict[str, CameraState]:
        wall = time.monotonic() - (self.app.started_at or time.monotonic())
        backend = self.backend.describe()
        out = {}
        for cam in list(self.app.cameras):
            summary = self.app.camera_summary(cam, wall, backend)
            summary.shard = self.config.name
            if self.recorder is not None:
                summary.saved_frames = self.recorder.frames(cam.name)
            stats = self.app.camera_status(cam, max_age_s=0.0).stats
            out[cam.name] = CameraState(summary, stats, cam.done or cam.removed)
        return out


__all__ = ["CameraState", "Outbox", "Poll", "Shard", "ShardConfig"]
