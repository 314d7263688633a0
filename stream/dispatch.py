"""What the model's results become, off the model's thread: one `Output` per processed frame goes into a
bounded queue, and the sinks (window mosaic, video files, event log, dashboard, later a web view) take
it from there, so a slow disk or window never delays the model.

A sink is a small class: `write(output)` for each output, `idle()` when there is none for a while (a
paused window keeps showing, the dashboard redraws), `close()`. The overlay of an output is drawn at most
once, whichever sinks want it. The queue blocks the model when every source is read as fast as it goes
(`--fast`: nothing may be lost); otherwise the oldest output is dropped and counted (its events are kept).
"""

from __future__ import annotations

import collections
import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import cv2
import numpy as np

from stream.dashboard import Dashboard
from stream.overlay import ATTENTION_OFF, draw_overlay
from stream.sinks import EventLog, VideoSink, WindowSink
from stream.types import Event, Frame, Prediction, StatsSnapshot, StatusUpdate

log = logging.getLogger(__name__)


class View:
    """What the viewer chose: the heat map shown (a map name or "none"), paused. Shared by the window's keys,
    the sinks that draw, and the runner (which stops taking frames while paused)."""

    def __init__(
        self, maps: Sequence[str], attention: str, note: str = "", *, label_cameras: bool = True
    ) -> None:
        self.modes = (*maps, ATTENTION_OFF)
        if attention not in self.modes:
            raise ValueError(f"attention {attention!r} must be one of {', '.join(self.modes)}")
        self.attention = attention
        self.note = note  # a line about the model, on every overlay
        self.label_cameras = label_cameras  # the camera's name on its overlay
        self.paused = threading.Event()

    def cycle_attention(self) -> None:
        self.attention = self.modes[(self.modes.index(self.attention) + 1) % len(self.modes)]

    def toggle_pause(self) -> None:
        if self.paused.is_set():
            self.paused.clear()
        else:
            self.paused.set()


@dataclass
class Output:
    """One processed frame of one camera, with what the viewer should see at that frame."""

    camera: str
    frame: Frame | None  # None only on the `removed` output, which has no picture
    prediction: Prediction | None  # the camera's newest prediction (made on this frame when `fresh`)
    fresh: bool
    status: StatusUpdate  # the source's status as of this frame (not the capture's, which may be ahead)
    stats: StatsSnapshot
    events: list[Event] = field(default_factory=list)
    display: bool = True  # False: the camera's final numbers only, no new picture (it has ended)
    removed: bool = False  # the camera was taken out of the run: nothing more of it comes; let it go
    final: bool = False  # the camera has finished (its source ended or failed, max frames): its last output
    # the camera starts over (a cluster moved it to another shard): its source and state restart, so what
    # a sink gathered of it by position in the source (an archive's per-second predictions) is superseded
    restart: bool = False
    _drawn: dict[tuple[str, bool], np.ndarray] = field(default_factory=dict, repr=False)

    def overlay(self, view: View) -> np.ndarray:
        """The frame with the overlay as the viewer sees it now, drawn once whichever sinks ask."""
        key = (view.attention, view.paused.is_set())
        if self.frame is None:
            raise ValueError(f"camera {self.camera!r}: this output has no picture")
        if key not in self._drawn:
            self._drawn[key] = draw_overlay(
                self.frame.image, self.prediction, attention=view.attention, stats=self.stats,
                status=self.status, paused=key[1], note=view.note, label_camera=view.label_cameras,
            )  # fmt: skip
        return self._drawn[key]


class Sink(Protocol):
    def write(self, output: Output) -> None: ...

    def idle(self) -> None: ...

    def close(self) -> None: ...


class VideoFiles:
    """Every processed frame of each camera, with its overlay, into that camera's .mp4."""

    def __init__(self, paths: Mapping[str, Path], fps: Callable[[str], float], view: View) -> None:
        """`fps(camera)` is asked when that camera's first frame is written (a capture learns its source's
        rate only once it has opened it)."""
        self.paths, self.fps, self.view = dict(paths), fps, view
        self.videos: dict[str, VideoSink] = {}
        self._closed_frames: dict[str, int] = {}  # frames of the videos of cameras removed at run time

    def write(self, output: Output) -> None:
        if output.removed and output.camera in self.videos:  # finalised now (one added again gets a new file)
            video = self.videos.pop(output.camera)
            video.close()
            done = self._closed_frames
            done[output.camera] = done.get(output.camera, 0) + video.frames_written
            return
        path = self.paths.get(output.camera)
        if path is None or not output.display:
            return
        video = self.videos.get(output.camera)
        if video is None:
            video = self.videos[output.camera] = VideoSink(path, self.fps(output.camera))
        video.write(output.overlay(self.view))

    def idle(self) -> None:
        pass

    def close(self) -> None:
        for video in self.videos.values():
            video.close()

    def frames_written(self, camera: str) -> int:
        video = self.videos.get(camera)
        return (video.frames_written if video is not None else 0) + self._closed_frames.get(camera, 0)


class EventFile:
    """Every event of every camera, one JSON line each (with its camera and wall-clock time)."""

    def __init__(self, log_file: EventLog) -> None:
        self.log = log_file

    def write(self, output: Output) -> None:
        for event in output.events:
            self.log.write(event)

    def idle(self) -> None:
        pass

    def close(self) -> None:
        self.log.close()


class MosaicWindow:
    """One window: a camera's overlay, or a grid of every camera's newest one; keys act on the View."""

    def __init__(self, title: str, cameras: Sequence[str], view: View, on_quit: Callable[[], None]) -> None:
        self.window = WindowSink(title)
        self.cameras = tuple(cameras)
        self.view, self.on_quit = view, on_quit
        self.tiles: dict[str, Output] = {}

    def write(self, output: Output) -> None:
        if output.removed:
            self.tiles.pop(output.camera, None)
            self.cameras = tuple(c for c in self.cameras if c != output.camera)
        elif output.display:
            if output.camera not in self.cameras:  # added while running
                self.cameras = (*self.cameras, output.camera)
            self.tiles[output.camera] = output
        self._show()

    def idle(self) -> None:
        self._show()

    def _show(self) -> None:
        if not self.tiles:
            return
        images = [self.tiles[c].overlay(self.view) for c in self.cameras if c in self.tiles]
        actions = self.window.show(images[0] if len(self.cameras) == 1 else mosaic(images, len(self.cameras)))
        if "quit" in actions:
            self.on_quit()
        if "pause" in actions:
            self.view.toggle_pause()
        if "attention" in actions:
            self.view.cycle_attention()

    def close(self) -> None:
        self.window.close()


def mosaic(images: Sequence[np.ndarray], count: int, max_width: int = 1920) -> np.ndarray:
    """`count` tiles in a near-square grid, each the size of the first image (scaled so the grid fits
    `max_width`); missing tiles are black."""
    cols = int(np.ceil(np.sqrt(count)))
    rows = int(np.ceil(count / cols))
    h, w = images[0].shape[:2]
    scale = min(1.0, max_width / (cols * w))
    tw, th = max(1, int(w * scale)), max(1, int(h * scale))
    grid = np.zeros((rows * th, cols * tw, 3), np.uint8)
    for i, image in enumerate(images[:count]):
        r, c = divmod(i, cols)
        if image.shape[:2] != (th, tw):
            image = cv2.resize(image, (tw, th), interpolation=cv2.INTER_AREA)
        grid[r * th : (r + 1) * th, c * tw : (c + 1) * tw] = image
    return grid


class DashboardSink:
    """The terminal dashboard: one camera as a panel, several as a table with totals."""

    def __init__(self, dashboard: Dashboard, cameras: Sequence[str] = ()) -> None:
        self.dashboard = dashboard
        dashboard.order = tuple(cameras)

    def write(self, output: Output) -> None:
        if output.removed:
            self.dashboard.forget(output.camera)
        else:
            self.dashboard.update(output.stats, output.prediction, camera=output.camera)

    def idle(self) -> None:
        self.dashboard.redraw()

    def close(self) -> None:
        pass  # the app closes the dashboard last, with the final numbers


class Dispatcher:
    """The queue between the model and the sinks; `drain` runs the sinks (on the caller's thread)."""

    def __init__(self, sinks: Sequence[Sink], *, block: bool, capacity: int = 64) -> None:
        self.sinks = list(sinks)
        self.block = block
        self.capacity = capacity
        self.dropped = 0  # outputs dropped because the sinks fell behind (never with `block`)
        self._items: collections.deque[Output] = collections.deque()
        self._cond = threading.Condition()
        self._closed = False

    def put(self, output: Output) -> None:
        with self._cond:
            while self.block and len(self._items) >= self.capacity and not self._closed:
                self._cond.wait(0.1)
            if len(self._items) >= self.capacity:
                # a camera's last output (it ended, or was removed) is never the one dropped
                at = next((i for i, o in enumerate(self._items) if not (o.final or o.removed)), 0)
                old = self._items[at]
                del self._items[at]
                self.dropped += 1
                if old.events:  # an event is never lost with the frame it came with
                    nxt = self._items[at] if at < len(self._items) else output
                    nxt.events[:0] = old.events
            self._items.append(output)
            self._cond.notify_all()

    def finish(self) -> None:
        """No more outputs will come: `drain` returns once the queue is empty."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def drain(self, idle_s: float = 0.05) -> None:
        """Feed the sinks until `finish` and an empty queue. Runs on the caller's thread (the main one,
        where a GUI toolkit wants its window)."""
        while True:
            with self._cond:
                if not self._items and not self._closed:
                    self._cond.wait(idle_s)
                item = self._items.popleft() if self._items else None
                done = item is None and self._closed
                self._cond.notify_all()
            if item is None:
                if done:
                    return
                for sink in self.sinks:
                    sink.idle()
                continue
            for sink in self.sinks:
                sink.write(item)

    def close(self) -> None:
        """Close every sink, even when one fails (the others' files must be finalised); then raise the
        first failure (a recording whose last write failed is a failed run, not a quiet one)."""
        first: Exception | None = None
        for sink in self.sinks:
            try:
                sink.close()
            except Exception as e:
                first = first or e
        if first is not None:
            raise first
