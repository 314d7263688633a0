"""--save over a cluster: every shard records its own cameras on its own node, one file a placement (a part).

A camera's first part is <camera>.mp4 in --save's folder, as in one process; each time it starts on a shard
again (its shard was lost, or it was removed and added again) it goes on in <camera>.part<N>.mp4. The
folder is that path on every node: on a mount every node shares, all the parts are in one folder. The files
are those of one process (stream/sinks/recording.py: a fragment a second), so a part whose node died plays
up to about a second before it died; every other part is finalised when its camera ends, leaves the shard,
or the shard stops. The shard (`PartRecorder`, a sink) reports each part; the driver (`Part`) keeps them
for --summary-json (`ClusterSummary.recordings`: every part, its node and how it ended).
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from stream.errors import SinkError
from stream.output import Output, View
from stream.runtime.summary import Summary
from stream.sinks.video import VideoSink

log = logging.getLogger(__name__)


def part_file(camera: str, part: int) -> str:
    """The file of a camera's part: <camera>.mp4 first (as in one process), then <camera>.part<N>.mp4."""
    return f"{camera}.mp4" if part <= 1 else f"{camera}.part{part}.mp4"


@dataclass
class PartState:
    """One part as its shard says it is: its file there, frames written, closed (finalised) or failed."""

    camera: str
    part: int
    path: str
    frames: int = 0
    closed: bool = False
    error: str | None = None


class PartRecorder:
    """The shard's --save: each of its cameras' frames, with their overlay, into the part the driver named
    (`begin`); a part is finalised when its camera ends or is removed here, or at `close`. A write error
    (a full disk) ends that part alone and is reported: the camera goes on, and so do the others."""

    def __init__(self, folder: Path, view: Callable[[], View], fps: Callable[[str], float]) -> None:
        self.folder = folder.absolute()
        self.view, self.fps = view, fps
        self.parts: dict[str, PartState] = {}  # the camera's part being written here
        self.videos: dict[str, VideoSink] = {}
        self._done: list[PartState] = []  # parts ended here and not yet reported
        self._written: dict[str, int] = {}  # frames of each camera's newest part here, ended or not
        # begin/forget/report come on the actor's thread, write on the dispatcher's: one at a time (a part
        # ended while reported would be lost; a video closed while written to would be cut)
        self._lock = threading.RLock()

    @staticmethod
    def prepare(folder: Path) -> None:
        """The folder made and writable: a shard that cannot record says so as it starts, in one line."""
        try:
            import stream.sinks.recording  # noqa: F401  (PyAV: loaded now, not by the first frame)
        except ImportError:
            why = "cannot write videos: PyAV is not installed on this node (pip install av)"
            raise SinkError(why) from None
        try:
            folder.mkdir(parents=True, exist_ok=True)
            probe = folder / f".glanet-write-test-{os.getpid()}"
            probe.touch()
            probe.unlink()
        except OSError as e:
            raise SinkError(f"cannot write videos into {folder.absolute()}: {e.strerror or e}") from None

    def begin(self, camera: str, part: int) -> None:
        """The camera's frames from now on go to its part `part` (a part it had here is finalised)."""
        with self._lock:
            self._end(camera)
            self.parts[camera] = PartState(camera, part, str(self.folder / part_file(camera, part)))
            self._written[camera] = 0

    def forget(self, camera: str) -> None:
        """The camera did not start here after all: no part of it."""
        with self._lock:
            self.parts.pop(camera, None)
            self._written.pop(camera, None)

    def write(self, output: Output) -> None:
        with self._lock:
            part = self.parts.get(output.camera)
            if part is None:
                return
            if output.removed or output.final:
                self._end(output.camera)
                return
            if not output.display or output.frame is None or part.error is not None:
                return
            try:
                video = self.videos.get(output.camera)
                if video is None:
                    video = self.videos[output.camera] = VideoSink(part.path, self.fps(output.camera))
                video.write(output.overlay(self.view()))
                part.frames = self._written[output.camera] = video.frames_written
            except SinkError as e:
                self._failed(part, e)

    def frames(self, camera: str) -> int:
        """Frames written to the camera's newest part here (its summary's saved_frames)."""
        with self._lock:
            return self._written.get(camera, 0)

    def _failed(self, part: PartState, error: SinkError) -> None:
        part.error = str(error)
        log.warning("camera %s: %s; its recording stops here (the camera goes on)", part.camera, error)
        video = self.videos.pop(part.camera, None)
        if video is not None:
            with contextlib.suppress(SinkError):  # the first error is the one reported
                video.close()

    def _end(self, camera: str) -> None:
        part = self.parts.pop(camera, None)
        if part is None:
            return
        video = self.videos.pop(camera, None)
        if video is not None:
            try:
                video.close()
                part.frames = video.frames_written
            except SinkError as e:
                part.error = part.error or str(e)
        part.closed = part.error is None
        self._done.append(part)

    def report(self) -> list[PartState]:
        """Every part being written here now, and those ended since the last report (told once)."""
        with self._lock:
            done, self._done = self._done, []
            return [*done, *(PartState(**asdict(p)) for p in list(self.parts.values()))]

    def idle(self) -> None:
        pass

    def close(self) -> None:
        with self._lock:
            for camera in list(self.parts):
                self._end(camera)


@dataclass
class Part:
    """One part as the driver knows it: where it was placed and what its shard last said of it."""

    camera: str
    part: int
    shard: str
    node: str  # the node's address
    node_id: str
    path: str  # the shard's file (before it says: the driver's guess, the same path)
    frames: int = 0  # frames written, as last reported (a part whose node died may hold a second fewer)
    state: str = "recording"  # then: finalised | failed: ... | node lost (plays up to about its last second)

    def update(self, said: PartState) -> None:
        self.path, self.frames = said.path, said.frames
        if said.error is not None:
            self.state = f"failed: {said.error}"
        elif said.closed:
            self.state = "finalised"

    def lost(self) -> None:
        if self.state == "recording":
            self.state = "node lost"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class ClusterSummary(Summary):
    """A camera's Summary on a cluster run with --save: every part of its recording, in order."""

    recordings: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    def of(cls, summary: Summary, parts: list[Part]) -> ClusterSummary:
        values = {f.name: getattr(summary, f.name) for f in fields(Summary)}
        return cls(**values, recordings=[p.to_dict() for p in parts])


__all__ = ["ClusterSummary", "Part", "PartRecorder", "PartState", "part_file"]
