"""The web view's side of the runtime: a sink that keeps each camera's newest output, encodes it to JPEG
at most once per frame and map (whatever the number of viewers, and only when someone looks), keeps the
recent events for the API and Server-Sent Events, and counts what /metrics reports.

The sink runs on the dispatcher's thread; the server on its own event loop. Viewers never queue frames:
each asks for the newest one when it is ready for the next, so a slow viewer skips frames and never holds
back the model or the other viewers.
"""

from __future__ import annotations

import asyncio
import bisect
import collections
import contextlib
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import cv2

from stream.output import Output, View

# prediction latency histogram buckets, seconds (capture -> prediction)
LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5, 5.0)
EVENTS_KEPT = 1000  # recent events kept for /api/events and for SSE clients that resume
SUBSCRIBER_QUEUE = 256  # events waiting for one SSE client; beyond, that client misses some (counted)


@dataclass
class Histogram:
    """Cumulative-bucket latency histogram, as Prometheus wants it."""

    counts: list[int] = field(default_factory=lambda: [0] * (len(LATENCY_BUCKETS) + 1))
    total: float = 0.0

    def observe(self, seconds: float) -> None:
        self.counts[bisect.bisect_left(LATENCY_BUCKETS, seconds)] += 1
        self.total += seconds

    def buckets(self) -> list[tuple[str, int]]:
        out, running = [], 0
        for bound, count in zip((*LATENCY_BUCKETS, float("inf")), self.counts, strict=True):
            running += count
            out.append(("+Inf" if bound == float("inf") else f"{bound:g}", running))
        return out


@dataclass
class Tile:
    """One camera in the web view: its newest output and that output's JPEGs, one per map shown."""

    output: Output | None = None
    seq: int = 0  # bumped at every new picture
    jpegs: dict[str, tuple[int, bytes]] = field(default_factory=dict)  # attention -> (seq, JPEG)
    encoded: int = 0  # JPEG encodings made (at most one per picture and map)
    viewers: int = 0  # MJPEG streams open now (the page's tiles ask picture by picture)
    latency: Histogram = field(default_factory=Histogram)
    lock: threading.Lock = field(default_factory=threading.Lock)


class WebHub:
    """A sink (write / idle / close) for the web view; `attach(loop)` once the server's loop runs."""

    def __init__(self, maps: Sequence[str], view: View, jpeg_quality: int = 80) -> None:
        self.modes = (*maps, "none")
        # one View per map, sharing the run's pause: tiles may each show another map than the window
        self.views: dict[str, View] = {}
        for mode in self.modes:
            v = View(maps, mode, view.note)
            v.paused = view.paused
            self.views[mode] = v
        self.quality = jpeg_quality
        self.tiles: dict[str, Tile] = {}
        self.events: collections.deque[dict[str, Any]] = collections.deque(maxlen=EVENTS_KEPT)
        self.last_event_id = 0
        self.events_missed = 0  # events an SSE client was too slow to take
        self.closed = False
        self._lock = threading.Lock()  # tiles and events against the server's threads
        self._loop: asyncio.AbstractEventLoop | None = None
        self._waiters: dict[str, asyncio.Event] = {}  # camera -> set at its next picture (loop thread)
        self._subscribers: set[asyncio.Queue[dict[str, Any] | None]] = set()

    # -- the sink (dispatcher thread) ------------------------------------------------------------------
    def write(self, output: Output) -> None:
        with self._lock:
            if output.removed:
                self.tiles.pop(output.camera, None)
                self._call(self._wake, output.camera)
                return
            tile = self.tiles.setdefault(output.camera, Tile())
            if output.fresh and output.prediction is not None:
                tile.latency.observe(output.prediction.latency_s)
            records = []
            for event in output.events:
                self.last_event_id += 1
                records.append({"id": self.last_event_id, **event.to_dict()})
            self.events.extend(records)
        if output.display:
            with tile.lock:
                tile.output, tile.seq = output, tile.seq + 1
            self._call(self._wake, output.camera)
        elif tile.output is not None and (output.final or output.status != tile.output.status):
            # an ended camera's final numbers, or a new status (a cluster's camera moving): same picture
            with tile.lock:
                tile.output, tile.seq = _restated(tile.output, output), tile.seq + 1
            self._call(self._wake, output.camera)
        for record in records:
            self._call(self._publish, record)

    def idle(self) -> None:
        pass

    def close(self) -> None:
        self.closed = True
        self._call(self._close_all)

    # -- the server's side -------------------------------------------------------------------------------
    def attach(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop

    def _call(self, fn: Any, *args: Any) -> None:
        loop = self._loop
        if loop is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile: the server has stopped
                loop.call_soon_threadsafe(fn, *args)

    def _wake(self, camera: str) -> None:
        waiter = self._waiters.pop(camera, None)
        if waiter is not None:
            waiter.set()

    def _publish(self, record: dict[str, Any]) -> None:
        for queue in self._subscribers:
            try:
                queue.put_nowait(record)
            except asyncio.QueueFull:
                self.events_missed += 1

    def _close_all(self) -> None:
        for waiter in self._waiters.values():
            waiter.set()
        self._waiters.clear()
        for queue in self._subscribers:
            try:
                queue.put_nowait(None)
            except asyncio.QueueFull:
                queue.get_nowait()
                queue.put_nowait(None)

    def tile(self, camera: str) -> Tile | None:
        return self.tiles.get(camera)

    async def newer(self, camera: str, seq: int, timeout: float) -> int | None:
        """The camera's picture number once it is above `seq`, or at `timeout` (then it may equal `seq`);
        None when the camera is gone or the hub closed."""
        tile = self.tiles.get(camera)
        if tile is None or self.closed:
            return None
        if tile.seq <= seq:
            waiter = self._waiters.get(camera)
            if waiter is None:
                waiter = self._waiters[camera] = asyncio.Event()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(waiter.wait(), timeout)
        tile = self.tiles.get(camera)
        return None if tile is None or self.closed else tile.seq

    def cached_jpeg(self, camera: str, attention: str) -> tuple[int, bytes] | None:
        """The newest picture's JPEG for this map if it is already made (cheap: for the event loop)."""
        tile = self.tiles.get(camera)
        if tile is None:
            return None
        hit = tile.jpegs.get(attention)
        return hit if hit is not None and hit[0] == tile.seq else None

    def jpeg(self, camera: str, attention: str) -> tuple[int, bytes] | None:
        """The newest picture with the overlay for `attention`, as (picture number, JPEG); encoded once
        per picture and map, whoever asks. Blocking: call it off the event loop."""
        tile = self.tiles.get(camera)
        if tile is None:
            return None
        with tile.lock:
            output, seq = tile.output, tile.seq
            if output is None or output.frame is None:
                return None
            hit = tile.jpegs.get(attention)
            if hit is not None and hit[0] == seq:
                return hit
            image = output.overlay(self.views[attention])
            ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, self.quality])
            if not ok:
                return None
            tile.encoded += 1
            tile.jpegs[attention] = (seq, buf.tobytes())
            return tile.jpegs[attention]

    def subscribe(self) -> asyncio.Queue[dict[str, Any] | None]:
        queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue(SUBSCRIBER_QUEUE)
        self._subscribers.add(queue)
        return queue

    def unsubscribe(self, queue: asyncio.Queue[dict[str, Any] | None]) -> None:
        self._subscribers.discard(queue)

    def events_since(self, since: int, limit: int = EVENTS_KEPT) -> list[dict[str, Any]]:
        """The kept events with an id above `since`, oldest first, at most `limit` (the newest)."""
        with self._lock:
            out = [e for e in self.events if e["id"] > since]
        return out[-limit:] if limit else []


def _restated(shown: Output, final: Output) -> Output:
    """The picture last shown with a camera's new status and numbers (it ended, or a cluster moves it: no
    new picture). A prediction that came without its maps (a cluster's, between pictures) is not drawn."""
    prediction = final.prediction if final.prediction is not None and final.prediction.maps else None
    return Output(shown.camera, shown.frame, prediction or shown.prediction, False, final.status,
                  final.stats, [], True)  # fmt: skip
