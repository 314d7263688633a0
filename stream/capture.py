"""One capture thread per source: open, read, stamp, hand frames to a ring buffer; reconnect live sources.

A live source that fails, or freezes (no new frame for `watchdog_s`, checked by the consumer in `get`),
is reconnected with capped exponential backoff; each connection is a new `session` so the recognizer
resets its temporal state across the gap. A wedged read cannot be interrupted, so a frozen worker is
abandoned (its frames are ignored) and a fresh one started. `close()` returns at once from any state.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from stream.buffer import BufferClosed, BufferPolicy, RingBuffer
from stream.errors import DecodeError, SourceError, SourceLost, StreamError
from stream.sources import Source
from stream.types import Frame, SourceStatus, StatusUpdate

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CaptureConfig:
    live: bool
    realtime: bool = True  # pace a non-live source at its own frame rate (files: False with --fast)
    capacity: int = 0  # ring buffer size; 0: 4 for live sources and real-time files, 64 with --fast
    policy: BufferPolicy | None = None  # None: DROP_OLDEST for live, BLOCK otherwise
    watchdog_s: float = 5.0  # live: no new frame for this long -> reconnect
    backoff_initial_s: float = 0.5
    backoff_max_s: float = 10.0
    max_reconnects: int | None = None  # None: forever
    max_decode_errors: int = 100  # in a row, then the source counts as lost (live) or ended (file)
    take_latest: bool | None = None  # `get` returns the newest frame, dropping older ones (None: live)

    def buffer(self) -> RingBuffer[Frame]:
        policy = self.policy or (BufferPolicy.DROP_OLDEST if self.live else BufferPolicy.BLOCK)
        # files in real time: a short queue, so a model slower than the video slows the playback
        # instead of letting frames wait (latency); --fast: a long one, for throughput
        default = 4 if self.live or self.realtime else 64
        return RingBuffer(self.capacity or default, policy)

    def backoff(self, attempt: int) -> float:
        """Seconds before reconnect attempt `attempt` (1-based): initial, 2x, 4x, ... capped."""
        return min(self.backoff_max_s, self.backoff_initial_s * 2 ** max(0, attempt - 1))


class Capture:
    """Start with `start()`; consume with `get(timeout)`; `None` from `get` with `finished` means the
    end (see `error`). Counters are read by the consumer's stats."""

    def __init__(
        self,
        factory: Callable[[], Source],
        name: str,
        config: CaptureConfig,
        *,
        camera: str = "",
        wake: Callable[[], None] | None = None,
    ) -> None:
        """`camera` names the frames' camera; `wake` is called after each frame is queued and each status
        change (the multi-camera runner's wake-up), from the capture thread: quick, and never raising."""
        self.factory, self.name, self.config = factory, name, config
        self.camera, self._wake = camera, wake
        self.buffer = config.buffer()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._generation = 0
        self._threads: list[threading.Thread] = []
        self._status = StatusUpdate(SourceStatus.CONNECTING, f"connecting to {name}")
        self.history: collections.deque[StatusUpdate] = collections.deque([self._status], maxlen=256)
        self._connected_once = False
        self._last_frame = time.monotonic()
        self.error: StreamError | None = None
        self.session = 0
        self.frames = 0
        self.decode_errors = 0
        self.reconnects = 0
        self.nominal_fps: float | None = None

    # -- consumer side ------------------------------------------------------------------------------
    @property
    def status(self) -> StatusUpdate:
        return self._status

    @property
    def finished(self) -> bool:
        """The end, and every frame taken: status first, then the buffer, so a frame put just before the
        status changed is never lost to a consumer that saw `get` time out a moment earlier."""
        return self._terminal() and len(self.buffer) == 0

    def _terminal(self) -> bool:
        return self._status.status in (SourceStatus.ENDED, SourceStatus.FAILED, SourceStatus.STOPPED)

    def start(self) -> Capture:
        self._spawn()
        return self

    def get(self, timeout: float = 0.1) -> Frame | None:
        """The next frame, or None (nothing within `timeout`, or the end: check `finished`)."""
        self._watchdog()
        latest = self.config.take_latest
        if latest if latest is not None else self.config.live:
            return self.buffer.get_latest(timeout)  # live: never work on a stale frame
        return self.buffer.get(timeout)

    def close(self, timeout: float = 1.0) -> None:
        """Stop now. Joins the worker for at most `timeout` s: a read wedged in a driver is left behind
        (daemon thread) rather than hanging the program."""
        self._stop.set()
        self.buffer.close()
        if not self._terminal():
            self._set_status(StatusUpdate(SourceStatus.STOPPED, "stopped"))
        deadline = time.monotonic() + timeout
        for t in self._threads:
            t.join(max(0.0, deadline - time.monotonic()))

    def __enter__(self) -> Capture:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- internals ----------------------------------------------------------------------------------
    def _set_status(self, update: StatusUpdate, generation: int | None = None) -> None:
        with self._lock:
            if generation is not None and generation != self._generation:
                return
            if self._status.status in (SourceStatus.FAILED, SourceStatus.STOPPED) and update.status not in (
                SourceStatus.FAILED,
                SourceStatus.STOPPED,
            ):
                return
            self._status = update
            self.history.append(update)
        log.info("%s: %s %s", self.name, update.status.value, update.message)
        if self._wake is not None:
            self._wake()

    def _spawn(self, attempt: int = 0) -> None:
        with self._lock:
            self._generation += 1
            generation = self._generation
        t = threading.Thread(
            target=self._run, args=(generation, attempt), name=f"capture-{generation}", daemon=True
        )
        self._threads = [th for th in self._threads if th.is_alive()] + [t]
        t.start()

    def _watchdog(self) -> None:
        cfg = self.config
        if not cfg.live or cfg.watchdog_s <= 0 or self._stop.is_set():
            return
        if self._status.status is SourceStatus.LIVE and time.monotonic() - self._last_frame > cfg.watchdog_s:
            log.warning("%s: no frame for %.1f s, reconnecting", self.name, cfg.watchdog_s)
            self._set_status(
                StatusUpdate(SourceStatus.RECONNECTING, f"no frame for {cfg.watchdog_s:g} s", attempt=1)
            )
            self._spawn(attempt=1)  # the old worker sees a newer generation and leaves quietly

    def _current(self, generation: int) -> bool:
        return generation == self._generation and not self._stop.is_set()

    def _fail(self, error: StreamError, generation: int) -> None:
        if not self._current(generation):
            return
        self.error = error
        self._set_status(StatusUpdate(SourceStatus.FAILED, str(error)), generation)
        self.buffer.close()

    def _run(self, generation: int, attempt: int = 0) -> None:
        """`attempt`: reconnect attempts already begun (1 for a worker started by the watchdog)."""
        cfg = self.config
        while self._current(generation):
            try:
                source = self.factory()
                source.open()
            except SourceError as error:
                if not cfg.live or not self._connected_once:
                    self._fail(error, generation)  # a bad source at start: say so, don't retry forever
                    return
                attempt += 1
                if cfg.max_reconnects is not None and attempt > cfg.max_reconnects:
                    self._fail(
                        SourceError(f"{self.name}: gave up after {attempt - 1} reconnect attempts"),
                        generation,
                    )
                    return
                delay = cfg.backoff(attempt)
                self._set_status(
                    StatusUpdate(SourceStatus.RECONNECTING, str(error), attempt=attempt, retry_in_s=delay),
                    generation,
                )
                if self._stop.wait(delay):
                    return
                continue
            except Exception as error:  # a bug or an unexpected library error: hand it to the consumer
                self._fail(StreamError(f"{self.name}: {type(error).__name__}: {error}"), generation)
                log.exception("opening %s", self.name)
                return
            if not self._current(generation):
                source.close()
                return
            with self._lock:
                if self._connected_once:
                    self.reconnects += 1
                self._connected_once = True
                self.session += 1
                session = self.session
            self.nominal_fps = source.fps
            self._last_frame = time.monotonic()
            self._set_status(StatusUpdate(SourceStatus.LIVE, f"{self.name}"), generation)
            attempt = 0
            try:
                outcome = self._pump(source, generation, session)
            except Exception as error:
                self._fail(StreamError(f"{self.name}: {type(error).__name__}: {error}"), generation)
                log.exception("reading %s", self.name)
                return
            finally:
                source.close()
            if outcome == "ended":
                if self._current(generation):
                    self._set_status(StatusUpdate(SourceStatus.ENDED, "end of stream"), generation)
                    self.buffer.close()
                return
            if outcome == "stopped":
                return
            # lost: try again, first after the initial backoff
            if not cfg.live:
                self._fail(SourceError(f"{self.name}: reading failed"), generation)
                return
            attempt = 1
            delay = cfg.backoff(attempt)
            self._set_status(
                StatusUpdate(SourceStatus.RECONNECTING, "connection lost", attempt=attempt, retry_in_s=delay),
                generation,
            )
            if self._stop.wait(delay):
                return

    def _pump(self, source: Source, generation: int, session: int) -> str:
        """Read until the end ('ended'), a failure ('lost'), or stop/abandon ('stopped')."""
        cfg = self.config
        pace = cfg.realtime
        start_wall: float | None = None
        start_ts = 0.0
        bad = 0
        while self._current(generation):
            try:
                item = source.read()
            except DecodeError:
                self.decode_errors += 1
                bad += 1
                if bad >= cfg.max_decode_errors:
                    return "lost" if cfg.live else "ended"
                continue
            except SourceLost:
                return "lost"
            if not self._current(generation):
                return "stopped"
            if item is None:
                return "lost" if cfg.live else "ended"
            bad = 0
            image, source_ts = item
            now = time.monotonic()
            if pace:
                if start_wall is None:
                    start_wall, start_ts = now, source_ts
                wait = start_wall + (source_ts - start_ts) - now
                if wait > 0:
                    if self._stop.wait(wait):
                        return "stopped"
                    now = time.monotonic()
            self._last_frame = now
            truth = getattr(source, "truth", None)  # the demo knows the action it draws
            frame = Frame(image, self.frames, source_ts, now, session, self.camera, truth)
            self.frames += 1
            if not self._put(frame, generation):
                return "stopped"
            if self._wake is not None:
                self._wake()
        return "stopped"

    def _put(self, frame: Frame, generation: int) -> bool:
        while self._current(generation):
            try:
                if self.buffer.put(frame, timeout=0.1):
                    return True
            except BufferClosed:
                return False
        return False
