"""The web view's side of the runtime: a sink that keeps each camera's newest output, encodes it to JPEG
at most once per frame and map (whatever the number of viewers, and only when someone looks), keeps the
recent events for the API and Server-Sent Events with a small JPEG of each one's peak frame, and counts
what /metrics reports. The pictures carry the heat map and the crop box only: the page writes the text.

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
from stream.overlay import draw_overlay
from stream.types import Event

# prediction latency histogram buckets, seconds (capture -> prediction)
LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5, 5.0)
EVENTS_KEPT = 1000  # recent events kept for /api/events and for SSE clients that resume
SUBSCRIBER_QUEUE = 256  # events waiting for one SSE client; beyond, that client misses some (counted)
THUMBNAIL_SIZE = (192, 144)  # an event's peak frame fits in this (width, height)
THUMBNAIL_QUALITY = 70
THUMBNAIL_MAX = 48 * 1024  # one JPEG over this is not kept (a 192 x 144 one is ~5-10 kB)
THUMBNAILS_BYTES = 8 * 1024 * 1024  # the kept thumbnails' JPEGs together; the oldest go first


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
    jpegs: dict[str, tuple[int, bytes]] = field(default_factory=dict)  # map[+text] -> (seq, JPEG)
    encoded: int = 0  # JPEG encodings made (at most one per picture and map)
    viewers: int = 0  # MJPEG streams open now (the page's tiles ask picture by picture)
    latency: Histogram = field(default_factory=Histogram)
    lock: threading.Lock = field(default_factory=threading.Lock)


class WebHub:
    """A sink (write / idle / close) for the web view; `attach(loop)` once the server's loop runs."""

    def __init__(
        self,
        maps: Sequence[str],
        view: View,
        jpeg_quality: int = 80,
        thumbnails_bytes: int = THUMBNAILS_BYTES,
    ) -> None:
        self.modes = (*maps, "none")  # tiles may each show another map than the window
        self.paused = view.paused  # the run's pause (the page says so; the picture does not)
        self.quality = jpeg_quality
        self.tiles: dict[str, Tile] = {}
        self.events: collections.deque[dict[str, Any]] = collections.deque(maxlen=EVENTS_KEPT)
        # event id -> JPEG of its peak frame, oldest first: at most EVENTS_KEPT, at most thumbnails_bytes
        self.thumbnails: collections.OrderedDict[int, bytes] = collections.OrderedDict()
        self.thumbnails_bytes = thumbnails_bytes
        self._thumbnail_total = 0
        self._started: dict[tuple[str, int], dict[str, Any]] = {}  # (camera, class) -> its start's record
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
            records = [self._record(event) for event in output.events]
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

    def _record(self, event: Event) -> dict[str, Any]:
        """The event as the API and SSE give it: an id, its fields, `thumbnail` (whether its peak frame is
        kept), and its pair: a start's `end_id` (None while it goes on), an end's `start_id` and
        `start_time` (the start's wall-clock time; None where its start was not seen)."""
        self.last_event_id += 1
        record: dict[str, Any] = {"id": self.last_event_id, **event.to_dict()}
        key = (event.camera, event.class_index)
        if event.kind == "start":
            record["end_id"] = None
            self._started[key] = record
        else:
            start = self._started.pop(key, None)
            record["start_id"] = start["id"] if start is not None else None
            record["start_time"] = start["time"] if start is not None else None
            if start is not None:
                start["end_id"] = record["id"]  # a key it has: the dict never changes size once kept
        record["thumbnail"] = self._keep_thumbnail(self.last_event_id, event)
        return record

    def _keep_thumbnail(self, event_id: int, event: Event) -> bool:
        """A small JPEG of the event's peak frame with the model's crop box, kept under the bounds."""
        peak = event.peak_prediction
        if peak is None or peak.frame is None:
            return False
        image = draw_overlay(peak.frame.image, peak, attention="none", text=False)
        h, w = image.shape[:2]
        scale = min(THUMBNAIL_SIZE[0] / w, THUMBNAIL_SIZE[1] / h, 1.0)
        size = (max(1, round(w * scale)), max(1, round(h * scale)))
        small = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
        ok, buf = cv2.imencode(".jpg", small, [cv2.IMWRITE_JPEG_QUALITY, THUMBNAIL_QUALITY])
        if not ok or buf.size > min(THUMBNAIL_MAX, self.thumbnails_bytes):
            return False
        self.thumbnails[event_id] = data = buf.tobytes()
        self._thumbnail_total += len(data)
        while len(self.thumbnails) > EVENTS_KEPT or self._thumbnail_total > self.thumbnails_bytes:
            _, old = self.thumbnails.popitem(last=False)
            self._thumbnail_total -= len(old)
        return True

    def thumbnail(self, event_id: int) -> bytes | None:
        """The JPEG of event `event_id`'s peak frame; None where it is unknown or no longer kept."""
        with self._lock:
            return self.thumbnails.get(event_id)

    @property
    def thumbnail_total(self) -> int:
        return self._thumbnail_total

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

    def cached_jpeg(self, camera: str, attention: str, text: bool = False) -> tuple[int, bytes] | None:
        """The newest picture's JPEG for this map if it is already made (cheap: for the event loop)."""
        tile = self.tiles.get(camera)
        if tile is None:
            return None
        hit = tile.jpegs.get(_picture_key(attention, text))
        return hit if hit is not None and hit[0] == tile.seq else None

    def jpeg(self, camera: str, attention: str, text: bool = False) -> tuple[int, bytes] | None:
        """The newest picture with the overlay for `attention`, as (picture number, JPEG); encoded once
        per picture, map and `text`, whoever asks. `text`: the overlay's text burned in as the window
        draws it (for players of the MJPEG stream); without, the heat map and box only (the page writes
        the text beside the picture). Blocking: call it off the event loop."""
        tile = self.tiles.get(camera)
        if tile is None:
            return None
        with tile.lock:
            output, seq = tile.output, tile.seq
            if output is None or output.frame is None:
                return None
            key = _picture_key(attention, text)
            hit = tile.jpegs.get(key)
            if hit is not None and hit[0] == seq:
                return hit
            image = draw_overlay(  # text: as the window draws it (the panel: top-5, branches, fps, status)
                output.frame.image, output.prediction, attention=attention, stats=output.stats,
                status=output.status, text=text,
            )  # fmt: skip
            ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, self.quality])
            if not ok:
                return None
            tile.encoded += 1
            tile.jpegs[key] = (seq, buf.tobytes())
            return tile.jpegs[key]

    def subscribe(self) -> asyncio.Queue[dict[str, Any] | None]:
        queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue(SUBSCRIBER_QUEUE)
        self._subscribers.add(queue)
        return queue

    def unsubscribe(self, queue: asyncio.Queue[dict[str, Any] | None]) -> None:
        self._subscribers.discard(queue)

    def events_since(
        self, since: int, limit: int = EVENTS_KEPT, before: int | None = None, camera: str | None = None
    ) -> list[dict[str, Any]]:
        """The kept events with an id above `since` (and under `before`; of `camera` only), oldest first,
        at most `limit` (the newest of them)."""
        with self._lock:
            out = [
                e for e in self.events
                if e["id"] > since and (before is None or e["id"] < before)
                and (camera is None or e["camera"] == camera)
            ]  # fmt: skip
        return out[-limit:] if limit else []


def _restated(shown: Output, final: Output) -> Output:
    """The picture last shown with a camera's new status and numbers (it ended, or a cluster moves it: no
    new picture). A prediction that came without its maps (a cluster's, between pictures) is not drawn."""
    prediction = final.prediction if final.prediction is not None and final.prediction.maps else None
    return Output(shown.camera, shown.frame, prediction or shown.prediction, False, final.status,
                  final.stats, [], True)  # fmt: skip


def _picture_key(attention: str, text: bool) -> str:
    return f"{attention}+text" if text else attention
