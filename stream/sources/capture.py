"""One capture thread per source: open, read, stamp, hand frames to a ring buffer; reconnect live sources.

A live source that fails, or freezes (no new frame for `watchdog_s`, checked by the consumer in `get`),
is reconnected with capped exponential backoff; each connection has a new number (Frame.connection),
so the recognizer resets its temporal state across the gap. A wedged read cannot be interrupted, so a
frozen worker is
abandoned (its frames are ignored) and a fresh one started. `close()` returns at once from any state.
A reconnect attempt counts as failed until a frame arrives, so `max_reconnects` also ends a source that
connects but never delivers. A source configured live that reports `live = False` once open (an http
URL to a video file) is played like a file: every frame, paced, no watchdog, and it ends at its end.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from stream.errors import DecodeError, SourceError, SourceLost, StreamError
from stream.sources.buffer import BufferClosed, BufferPolicy, RingBuffer
from stream.sources.source import Source
from stream.sources.thumbnail import small_copy
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
    # live: this many in a row, then the source counts as lost. Files and folders are finite and skip
    # their bad frames themselves, so they go on to their real end.
    max_decode_errors: int = 100
    take_latest: bool | None = None  # `get` returns the newest frame, dropping older ones (None: live)
    # a live-configured source that turns out to be a file at open (an http URL to a video) is paced
    # at its own frame rate unless this is False (--fast)
    realtime_if_file: bool = True

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
        self._live = config.live  # False once a source configured live says, at open, it is a file
        self._attempts = 0  # reconnect attempts since the last frame (reset by a frame, not by an open)
        self._last_frame = time.monotonic()
        self.error: StreamError | None = None
        self.connections = 0  # connections opened so far (the newest is the frames' `connection`)
        self.frames = 0
        self.decode_errors = 0
        self.reconnects = 0
        self.nominal_fps: float | None = None

    # -- consumer side ------------------------------------------------------------------------------
    @property
    def live(self) -> bool:
        """Whether the source is treated as live: the config's word until a source said otherwise."""
        return self._live

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
        if latest if latest is not None else self._live:
            return self.buffer.get_latest(timeout)  # live: never work on a stale frame
        return self.buffer.get(timeout)

    def close(self, timeout: float = 1.0) -> None:
        """Stop now. Joins the worker for at most `timeout` s: a read wedged in a driver is left behind
        (daemon thread) rather than hanging the program; it leaves within its source's own timeouts.
        The frames still queued are let go of: nobody takes them now, and a closed capture may be kept
        (a camera removed at run time) long after."""
        self._stop.set()
        self.buffer.close()
        self.buffer.clear()
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

    def _spawn(self) -> None:
        with self._lock:
            self._generation += 1
            generation = self._generation
        t = threading.Thread(target=self._run, args=(generation,), name=f"capture-{generation}", daemon=True)
        self._threads = [th for th in self._threads if th.is_alive()] + [t]
        t.start()

    def _watchdog(self) -> None:
        cfg = self.config
        if not self._live or cfg.watchdog_s <= 0 or self._stop.is_set():
            return
        if self._status.status is SourceStatus.LIVE and time.monotonic() - self._last_frame > cfg.watchdog_s:
            log.warning("%s: no frame for %.1f s, reconnecting", self.name, cfg.watchdog_s)
            reason = f"no frame for {cfg.watchdog_s:g} s"
            attempt = self._count_attempt()
            if self._over_limit(attempt):
                self._fail(self._gave_up(attempt, reason), self._generation)
                return
            self._set_status(StatusUpdate(SourceStatus.RECONNECTING, reason, attempt=attempt))
            self._spawn()  # the old worker sees a newer generation and leaves quietly

    def _count_attempt(self) -> int:
        with self._lock:
            self._attempts += 1
            return self._attempts

    def _over_limit(self, attempt: int) -> bool:
        limit = self.config.max_reconnects
        return limit is not None and attempt > limit

    def _gave_up(self, attempt: int, reason: str) -> SourceError:
        return SourceError(
            f"{self.name}: gave up after {attempt - 1} reconnect attempts (last: {reason}); "
            "raise --max-reconnects to keep trying"
        )

    def _retry(self, generation: int, reason: str) -> bool:
        """One more reconnect attempt: announce it and wait its backoff. False: give up (over
        max_reconnects: FAILED) or stop."""
        attempt = self._count_attempt()
        if self._over_limit(attempt):
            self._fail(self._gave_up(attempt, reason), generation)
            return False
        delay = self.config.backoff(attempt)
        self._set_status(
            StatusUpdate(SourceStatus.RECONNECTING, reason, attempt=attempt, retry_in_s=delay), generation
        )
        return not self._stop.wait(delay)

    def _current(self, generation: int) -> bool:
        return generation == self._generation and not self._stop.is_set()

    def _fail(self, error: StreamError, generation: int) -> None:
        if not self._current(generation):
            return
        self.error = error
        self._set_status(StatusUpdate(SourceStatus.FAILED, str(error)), generation)
        self.buffer.close()

    def _run(self, generation: int) -> None:
        while self._current(generation):
            try:
                source = self.factory()
                source.open()
            except SourceError as error:
                if not self._live or not self._connected_once:
                    self._fail(error, generation)  # a bad source at start: say so, don't retry forever
                    return
                if not self._retry(generation, str(error)):
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
                self.connections += 1
                connection = self.connections
            self._adopt(source)
            self._last_frame = time.monotonic()
            self._set_status(StatusUpdate(SourceStatus.LIVE, f"{self.name}"), generation)
            frames_before = self.frames
            try:
                outcome = self._pump(source, generation, connection)
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
            if not self._live:
                self._fail(SourceError(f"{self.name}: reading failed"), generation)
                return
            # lost: try again. A connection that gave no frame is one more failed attempt in a row.
            reason = "connection lost" if self.frames > frames_before else "connected, but no frame came"
            if not self._retry(generation, reason):
                return

    def _adopt(self, source: Source) -> None:
        """Take the source's own word, once open, on what it is: a URL configured live that is a file
        is played like one (every frame, BLOCK buffer, paced unless --fast, no watchdog or reconnect)."""
        self.nominal_fps = source.fps
        if self._live and not source.live:
            self._live = False
            if self.config.policy is None:
                self.buffer.set_policy(BufferPolicy.BLOCK)
            log.info("%s: a video file, not a live stream: every frame, ends at its end", self.name)

    def _pump(self, source: Source, generation: int, connection: int) -> str:
        """Read until the end ('ended'), a failure ('lost'), or stop/abandon ('stopped')."""
        cfg = self.config
        pace = cfg.realtime or (cfg.live and not self._live and cfg.realtime_if_file)
        start_wall: float | None = None
        start_ts = 0.0
        bad = 0
        while self._current(generation):
            try:
                item = source.read()
            except DecodeError:
                self.decode_errors += 1
                bad += 1
                if self._live and bad >= cfg.max_decode_errors:
                    return "lost"
                continue
            except SourceLost:
                return "lost"
            if not self._current(generation):
                return "stopped"
            if item is None:
                return "lost" if self._live else "ended"
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
            # the gate's copy here, on this camera's thread, not on the model's
            frame = Frame(
                image, self.frames, source_ts, now, connection, self.camera, truth, small_copy(image)
            )
            self.frames += 1
            if not self._put(frame, generation):
                return "stopped"
            self._attempts = 0  # a frame arrived: the connection works, the next loss starts at 1
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
