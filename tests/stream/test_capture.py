"""Capture with scripted fake sources: every frame of a file, reconnects with backoff and new sessions,
the watchdog for a frozen live source, and a close() that never hangs, from every state.

The fakes block on Events, never on sleeps; the `rig` fixture sets every Event at the end of a test so
abandoned capture threads can leave, and checks that they all did.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np
import pytest
from capture_helpers import drain

from stream.errors import DecodeError, SourceError, SourceLost, StreamError
from stream.sources.buffer import BufferPolicy
from stream.sources.capture import Capture, CaptureConfig
from stream.sources.readers import DemoSource
from stream.sources.source import Source
from stream.types import Frame, SourceStatus, StatusUpdate

pytestmark = pytest.mark.timeout(20)  # a hang fails the test; tests that wait say so themselves

CLOSE_LIMIT_S = 1.5  # close() joins the worker for at most 1 s, then leaves it behind


@dataclass
class Plan:
    """What one connection of a fake source does."""

    live: bool = False
    frames: int | None = None  # frames before the end (None: endless)
    fps: float = 25.0
    timestamps: tuple[float, ...] | None = None  # source_ts per frame (default i / fps)
    open_error: str | None = None  # open() raises SourceError with this message
    open_gate: threading.Event | None = None  # open() waits on it first (a slow connect)
    lose_after: int | None = None  # read() raises SourceLost once this many frames were read
    block_after: int | None = None  # read() waits on read_gate once this many frames were read
    read_gate: threading.Event | None = None
    decode_errors_at: frozenset[int] = frozenset()  # read() calls (0-based) that raise DecodeError
    crash_after: int | None = None  # read() raises RuntimeError once this many frames were read


class FakeSource(Source):
    def __init__(self, plan: Plan, number: int) -> None:
        self.plan, self.number = plan, number
        self.name = f"fake {number}"
        self.live, self.fps = plan.live, plan.fps
        self.reads = 0
        self.frames = 0
        self.opening = threading.Event()
        self.blocked = threading.Event()
        self.closed = threading.Event()

    def open(self) -> None:
        self.opening.set()
        if self.plan.open_gate is not None:
            self.plan.open_gate.wait()
        if self.plan.open_error is not None:
            raise SourceError(self.plan.open_error)

    def read(self) -> tuple[np.ndarray, float] | None:
        p = self.plan
        call, self.reads = self.reads, self.reads + 1
        if call in p.decode_errors_at:
            raise DecodeError(f"bad frame at read {call}")
        if p.crash_after is not None and self.frames >= p.crash_after:
            raise RuntimeError("boom")
        if p.lose_after is not None and self.frames >= p.lose_after:
            raise SourceLost("the fake stopped delivering")
        if p.block_after is not None and self.frames >= p.block_after:
            assert p.read_gate is not None
            self.blocked.set()
            p.read_gate.wait()
        if p.frames is not None and self.frames >= p.frames:
            return None
        i, self.frames = self.frames, self.frames + 1
        image = np.full((4, 4, 3), i % 256, np.uint8)
        image[0, 0, 1] = self.number  # which connection made it
        ts = p.timestamps[i] if p.timestamps is not None else i / p.fps
        return image, ts

    def close(self) -> None:
        self.closed.set()


class Factory:
    """Makes connection n from plans[n] (the last plan repeats) and notes the capture's status at each
    call: the status a reconnect attempt was announced with."""

    def __init__(self, *plans: Plan) -> None:
        self.plans = plans
        self.sources: list[FakeSource] = []
        self.statuses: list[StatusUpdate] = []
        self.capture: Capture | None = None

    def __call__(self) -> FakeSource:
        n = len(self.sources)
        if self.capture is not None:
            self.statuses.append(self.capture.status)
        source = FakeSource(self.plans[min(n, len(self.plans) - 1)], n)
        self.sources.append(source)
        return source

    @property
    def calls(self) -> int:
        return len(self.sources)


@dataclass
class Rig:
    gates: list[threading.Event] = field(default_factory=list)
    captures: list[Capture] = field(default_factory=list)

    def gate(self) -> threading.Event:
        event = threading.Event()
        self.gates.append(event)
        return event

    def capture(self, factory: Factory, *, live: bool, start: bool = True, **config: object) -> Capture:
        config.setdefault("realtime", False)
        config.setdefault("take_latest", False)  # these tests follow every frame; get_latest: test_buffer
        capture = Capture(factory, "fake", CaptureConfig(live=live, **config))  # type: ignore[arg-type]
        factory.capture = capture
        self.captures.append(capture)
        return capture.start() if start else capture


@pytest.fixture
def rig() -> Iterator[Rig]:
    before = set(threading.enumerate())
    rig = Rig()
    yield rig
    for gate in rig.gates:  # first, so close() need not wait for wedged workers
        gate.set()
    for capture in rig.captures:
        capture.close()
    deadline = time.monotonic() + 3.0
    while (left := [t for t in threading.enumerate() if t not in before and t.is_alive()]) and (
        time.monotonic() < deadline
    ):
        time.sleep(0.01)
    assert not left, f"threads left running after the test: {[t.name for t in left]}"


def wait_for(predicate: Callable[[], bool], limit_s: float = 3.0) -> None:
    deadline = time.monotonic() + limit_s
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.005)


def take(capture: Capture, n: int, limit_s: float = 5.0) -> list[Frame]:
    frames: list[Frame] = []
    deadline = time.monotonic() + limit_s
    while len(frames) < n:
        assert time.monotonic() < deadline, f"got {len(frames)} of {n} frames (status {capture.status})"
        frame = capture.get(timeout=0.05)
        if frame is not None:
            frames.append(frame)
    return frames


def close_timed(capture: Capture) -> float:
    t0 = time.monotonic()
    capture.close()
    elapsed = time.monotonic() - t0
    assert elapsed < CLOSE_LIMIT_S, f"close() took {elapsed:.2f} s"
    return elapsed


def intensity(frame: Frame) -> int:
    return int(frame.image[1, 1, 0])


def connection(frame: Frame) -> int:
    return int(frame.image[0, 0, 1])


# --- files: every frame, in order, then the end --------------------------------------------------------


@pytest.mark.timeout(15)
def test_file_yields_every_frame_once_in_order_then_ends(rig):
    # given a 60-frame file at 1 fps (a minute if it were paced), a small buffer, realtime off
    factory = Factory(Plan(frames=60, fps=1.0))
    t0 = time.monotonic()
    capture = rig.capture(factory, live=False, capacity=4)
    # when the consumer drains it
    frames = drain(capture)
    # then every frame came once, in order, fast, and the capture ended cleanly
    assert time.monotonic() - t0 < 5.0
    assert [f.index for f in frames] == list(range(60))
    assert [intensity(f) for f in frames] == list(range(60))
    assert [f.source_ts for f in frames] == [float(i) for i in range(60)]
    assert {f.connection for f in frames} == {1}
    assert capture.status.status is SourceStatus.ENDED
    assert capture.error is None
    assert capture.finished
    assert capture.frames == 60 and capture.decode_errors == 0 and capture.reconnects == 0
    assert capture.buffer.dropped == 0
    assert capture.nominal_fps == 1.0
    assert factory.calls == 1
    assert factory.sources[0].closed.is_set()
    assert capture.get(timeout=1.0) is None  # and stays at the end, at once


@pytest.mark.timeout(10)
def test_realtime_file_is_paced_by_its_timestamps(rig):
    # given a 5-frame file at 20 fps, paced
    capture = rig.capture(Factory(Plan(frames=5, fps=20.0)), live=False, realtime=True)
    # when drained
    frames = drain(capture)
    # then frame 4 was stamped no earlier than 0.2 s after frame 0
    assert [f.index for f in frames] == [0, 1, 2, 3, 4]
    assert frames[-1].capture_ts - frames[0].capture_ts >= 0.2 - 0.005


@pytest.mark.timeout(10)
def test_decode_errors_are_counted_and_skipped(rig):
    # given a 10-frame file whose 4th and 8th reads fail to decode
    factory = Factory(Plan(frames=10, decode_errors_at=frozenset({3, 7})))
    capture = rig.capture(factory, live=False)
    # when drained
    frames = drain(capture)
    # then the 10 good frames came, numbered without gaps, and the 2 bad ones were counted
    assert [intensity(f) for f in frames] == list(range(10))
    assert [f.index for f in frames] == list(range(10))
    assert capture.decode_errors == 2
    assert capture.status.status is SourceStatus.ENDED
    assert capture.error is None


@pytest.mark.timeout(10)
def test_a_long_run_of_decode_errors_in_a_file_does_not_end_it(rig):
    # given a 10-frame file with 150 undecodable frames after its second (more than max_decode_errors)
    factory = Factory(Plan(frames=10, decode_errors_at=frozenset(range(2, 152))))
    capture = rig.capture(factory, live=False, max_decode_errors=100)
    # when drained, then it went on to the real end: every good frame, every bad one counted
    frames = drain(capture)
    assert [intensity(f) for f in frames] == list(range(10))
    assert capture.decode_errors == 150
    assert capture.status.status is SourceStatus.ENDED and capture.error is None


@pytest.mark.timeout(10)
def test_finished_waits_until_the_last_frame_is_taken(rig):
    # given a file whose only frame is read after the consumer's get has already timed out
    gate = rig.gate()
    factory = Factory(Plan(frames=1, block_after=0, read_gate=gate))
    capture = rig.capture(factory, live=False)
    wait_for(lambda: factory.calls == 1 and factory.sources[0].blocked.is_set())
    assert capture.get(timeout=0.01) is None
    assert not capture.finished
    # when the frame arrives and the source ends before the consumer looks again
    gate.set()
    wait_for(lambda: capture.status.status is SourceStatus.ENDED)
    # then the capture is not finished until that frame has been taken
    assert not capture.finished
    frame = capture.get(timeout=1.0)
    assert frame is not None and frame.index == 0
    assert capture.get(timeout=1.0) is None
    assert capture.finished


@pytest.mark.timeout(10)
def test_open_failure_of_a_file_fails_at_once(rig):
    factory = Factory(Plan(open_error="video file not found: x.mp4"))
    capture = rig.capture(factory, live=False)
    assert drain(capture) == []
    assert capture.status.status is SourceStatus.FAILED
    assert isinstance(capture.error, SourceError)
    assert str(capture.error) == "video file not found: x.mp4"
    assert capture.status.message == "video file not found: x.mp4"


@pytest.mark.timeout(10)
def test_an_unexpected_exception_in_read_is_handed_to_the_consumer(rig):
    # given a source whose read raises a bug-like exception after 2 frames
    capture = rig.capture(Factory(Plan(frames=10, crash_after=2)), live=False)
    # when drained
    frames = drain(capture)
    # then the frames before it arrive, and the capture fails with the exception named
    assert [f.index for f in frames] == [0, 1]
    assert capture.status.status is SourceStatus.FAILED
    assert isinstance(capture.error, StreamError)
    assert "RuntimeError: boom" in str(capture.error)


# --- live sources: reconnect with backoff, sessions --------------------------------------------------------


def test_backoff_doubles_from_the_initial_value_up_to_the_cap():
    config = CaptureConfig(live=True, backoff_initial_s=0.5, backoff_max_s=10.0)
    assert [config.backoff(k) for k in range(1, 8)] == [0.5, 1.0, 2.0, 4.0, 8.0, 10.0, 10.0]
    assert config.backoff(0) == 0.5


@pytest.mark.timeout(10)
def test_lost_live_source_is_reopened_as_a_new_session(rig):
    # given a live source that is lost after 3 frames, and a second connection that gives 3 more
    gate = rig.gate()
    factory = Factory(
        Plan(live=True, lose_after=3), Plan(live=True, block_after=3, read_gate=gate)
    )  # fmt: skip
    capture = rig.capture(factory, live=True, capacity=16, backoff_initial_s=0.01)
    # when the consumer reads 6 frames
    frames = take(capture, 6)
    # then the source was opened again, the frames after the gap carry session 2, indices count on
    assert factory.calls == 2
    assert [connection(f) for f in frames] == [0, 0, 0, 1, 1, 1]
    assert [f.connection for f in frames] == [1, 1, 1, 2, 2, 2]
    assert [f.index for f in frames] == list(range(6))
    assert capture.reconnects == 1
    assert factory.sources[0].closed.is_set()
    # and the reconnect was announced as attempt 1 after the initial backoff
    announced = factory.statuses[1]
    assert announced.status is SourceStatus.RECONNECTING
    assert (announced.attempt, announced.retry_in_s) == (1, 0.01)
    assert capture.status.status is SourceStatus.LIVE
    assert capture.error is None


@pytest.mark.timeout(10)
def test_reopen_failures_back_off_exponentially_then_give_up(rig):
    # given a live source that is lost after 2 frames and then refuses every reconnect
    factory = Factory(Plan(live=True, lose_after=2), Plan(live=True, open_error="connection refused"))
    capture = rig.capture(
        factory, live=True, backoff_initial_s=0.01, backoff_max_s=0.04, max_reconnects=5
    )  # fmt: skip
    # when the consumer reads until the end
    frames = drain(capture)
    # then it tried 5 times, waiting initial, 2x, 4x, then the cap, and then gave up
    assert [f.index for f in frames] == [0, 1]
    assert factory.calls == 1 + 5
    attempts = factory.statuses[1:]
    assert all(s.status is SourceStatus.RECONNECTING for s in attempts)
    assert [s.attempt for s in attempts] == [1, 2, 3, 4, 5]
    assert [s.retry_in_s for s in attempts] == [0.01, 0.02, 0.04, 0.04, 0.04]
    assert all("connection refused" in s.message for s in attempts[1:])
    assert capture.status.status is SourceStatus.FAILED
    assert isinstance(capture.error, SourceError)
    assert "gave up after 5 reconnect attempts" in str(capture.error)
    assert capture.reconnects == 0


@pytest.mark.timeout(10)
def test_live_source_that_cannot_open_at_start_fails_without_retrying(rig):
    # given a live source that cannot be opened at all
    factory = Factory(Plan(live=True, open_error="cannot connect to rtsp://***@cam/x within 1 s"))
    capture = rig.capture(factory, live=True, backoff_initial_s=0.01)
    # when the consumer asks for a frame
    frame = capture.get(timeout=2.0)
    # then it gets the end at once, with the error, and the source was tried once
    assert frame is None
    assert capture.finished
    assert capture.status.status is SourceStatus.FAILED
    assert isinstance(capture.error, SourceError)
    assert "cannot connect" in str(capture.error)
    close_timed(capture)  # joins the worker: no retry loop is left running
    assert factory.calls == 1
    assert capture.status.status is SourceStatus.FAILED  # close keeps the reason


@pytest.mark.timeout(10)
def test_source_that_connects_but_never_delivers_gives_up_after_max_reconnects(rig):
    # given a live source that opens every time but loses the connection before any frame
    factory = Factory(Plan(live=True, lose_after=0))
    capture = rig.capture(factory, live=True, backoff_initial_s=0.01, backoff_max_s=0.02, max_reconnects=3)
    # when the consumer reads until the end
    frames = drain(capture)
    # then each open without a frame counted as a failed attempt: 3 reconnects, then FAILED, one line
    assert frames == []
    assert factory.calls == 1 + 3
    assert [s.attempt for s in factory.statuses[1:]] == [1, 2, 3]
    assert capture.status.status is SourceStatus.FAILED
    message = str(capture.error)
    assert "gave up after 3 reconnect attempts" in message and "no frame" in message and "\n" not in message


@pytest.mark.timeout(10)
def test_a_frame_resets_the_reconnect_count(rig):
    # given a source that, on every connection, gives one frame and then is lost (it works, badly)
    factory = Factory(Plan(live=True, lose_after=1))
    capture = rig.capture(factory, live=True, capacity=16, backoff_initial_s=0.01, max_reconnects=1)
    # when the consumer reads 4 frames, then it has not given up: each frame proved the source alive
    assert [f.connection for f in take(capture, 4)] == [1, 2, 3, 4]
    assert all(s.attempt == 1 for s in factory.statuses[1:])
    assert capture.status.status is not SourceStatus.FAILED


# --- watchdog ----------------------------------------------------------------------------------------------


@pytest.mark.timeout(10)
def test_watchdog_replaces_a_frozen_live_source_and_ignores_its_late_frames(rig):
    # given a live source whose read freezes after 3 frames, and a second connection that delivers 3
    frozen, second = rig.gate(), rig.gate()
    factory = Factory(
        Plan(live=True, block_after=3, read_gate=frozen), Plan(live=True, block_after=3, read_gate=second)
    )
    capture = rig.capture(factory, live=True, capacity=16, watchdog_s=0.2)
    # when the consumer keeps asking for frames
    frames = take(capture, 6)
    # then after about watchdog_s without a frame a new connection was made, as a new session
    assert factory.calls == 2
    assert [connection(f) for f in frames] == [0, 0, 0, 1, 1, 1]
    assert [f.connection for f in frames] == [1, 1, 1, 2, 2, 2]
    assert frames[3].capture_ts - frames[2].capture_ts >= 0.2
    announced = factory.statuses[1]
    assert announced.status is SourceStatus.RECONNECTING
    assert announced.attempt == 1
    assert "no frame for 0.2 s" in announced.message
    assert capture.reconnects == 1
    assert capture.status.status is SourceStatus.LIVE
    # and when the frozen read finally returns a frame, that frame is not delivered
    wedged = factory.sources[0]
    assert not wedged.closed.is_set()
    frozen.set()
    assert wedged.closed.wait(2.0)  # the old worker left quietly and released its source
    assert wedged.frames == 4
    assert capture.get(timeout=0.1) is None
    assert capture.frames == 6
    assert capture.status.status is SourceStatus.LIVE


@pytest.mark.timeout(10)
def test_watchdog_reconnect_attempts_count_from_one(rig):
    # given a live source that freezes after 1 frame and then cannot be reopened, 2 attempts allowed
    gate = rig.gate()
    factory = Factory(
        Plan(live=True, block_after=1, read_gate=gate), Plan(live=True, open_error="camera gone")
    )  # fmt: skip
    capture = rig.capture(
        factory, live=True, watchdog_s=0.1, backoff_initial_s=0.01, backoff_max_s=0.04, max_reconnects=2
    )
    # when the consumer reads until the end
    frames = drain(capture)
    # then exactly 2 reconnect attempts were made, numbered 1 and 2, before giving up
    assert len(frames) == 1
    assert factory.calls == 1 + 2
    assert [s.attempt for s in factory.statuses[1:]] == [1, 2]
    assert capture.status.status is SourceStatus.FAILED
    assert "gave up after 2 reconnect attempts" in str(capture.error)


@pytest.mark.timeout(10)
def test_watchdog_gives_up_on_a_source_that_connects_and_freezes_before_any_frame(rig):
    # given a live source whose every connection opens and then freezes before its first frame
    gates = [rig.gate() for _ in range(4)]
    factory = Factory(*(Plan(live=True, block_after=0, read_gate=g) for g in gates))
    capture = rig.capture(factory, live=True, watchdog_s=0.05, max_reconnects=2)
    # when the consumer reads until the end
    frames = drain(capture)
    # then the watchdog's reconnects counted 1, 2, and the third freeze ended it
    assert frames == []
    assert factory.calls == 1 + 2
    assert [s.attempt for s in factory.statuses[1:]] == [1, 2]
    assert capture.status.status is SourceStatus.FAILED
    assert "gave up after 2 reconnect attempts" in str(capture.error)


@pytest.mark.timeout(15)
def test_repeated_freezes_leave_no_threads_behind(rig):
    # given a live source that freezes after every frame, 4 connections in a row
    gates = [rig.gate() for _ in range(4)]
    before = threading.active_count()
    factory = Factory(*(Plan(live=True, block_after=1, read_gate=g) for g in gates))
    capture = rig.capture(factory, live=True, capacity=16, watchdog_s=0.05)
    # when the watchdog abandons 3 wedged workers
    frames = take(capture, 4)
    assert [f.connection for f in frames] == [1, 2, 3, 4]
    # then each wedged read holds at most one thread, and all of them end once released
    assert threading.active_count() <= before + 4
    for g in gates:
        g.set()
    close_timed(capture)
    wait_for(lambda: threading.active_count() == before)
    assert all(s.closed.is_set() for s in factory.sources)


# --- a source configured live that says, once open, it is a file (an http URL to a video) ------------


@pytest.mark.timeout(10)
@pytest.mark.parametrize("realtime_if_file", [True, False])
def test_live_config_with_a_file_source_plays_every_frame_then_ends(rig, realtime_if_file):
    # given a capture set up for a live URL (drop-oldest buffer of 2, newest-frame reads, a watchdog),
    # whose source reports live = False: a 20-frame file at 20 fps
    factory = Factory(Plan(live=False, frames=20, fps=20.0))
    fast = {} if realtime_if_file else {"realtime_if_file": False}
    capture = rig.capture(
        factory, live=True, capacity=2, take_latest=None, watchdog_s=0.05, backoff_initial_s=0.01, **fast
    )
    # when a consumer slower than the source drains it
    frames: list[Frame] = []
    deadline = time.monotonic() + 8.0
    while not capture.finished and time.monotonic() < deadline:
        frame = capture.get(timeout=0.05)
        if frame is not None:
            frames.append(frame)
            time.sleep(0.01)
    # then every frame came, once, in order, and it ended: no drops, no watchdog, no reconnect
    assert [intensity(f) for f in frames] == list(range(20))
    assert capture.status.status is SourceStatus.ENDED and capture.error is None
    assert factory.calls == 1 and capture.reconnects == 0
    assert capture.buffer.dropped == 0
    assert not capture.live
    # paced at its own rate (19 frames at 20 fps: 0.95 s) unless asked not to
    span = frames[-1].capture_ts - frames[0].capture_ts
    assert span >= 0.95 - 0.01 if realtime_if_file else span < 0.9


# --- close() never hangs, from every state -------------------------------------------------------------


@pytest.mark.timeout(10)
def test_close_while_open_is_blocked(rig):
    # given a live source stuck connecting
    gate = rig.gate()
    before = threading.active_count()
    factory = Factory(Plan(live=True, open_gate=gate))
    capture = rig.capture(factory, live=True)
    wait_for(lambda: factory.calls == 1 and factory.sources[0].opening.is_set())
    # when closed
    close_timed(capture)
    # then it is stopped and at its end, and the late connection is released when open returns
    assert capture.status.status is SourceStatus.STOPPED
    assert capture.get(timeout=0) is None and capture.finished
    assert capture.error is None
    gate.set()
    assert factory.sources[0].closed.wait(2.0)
    wait_for(lambda: threading.active_count() == before)
    assert factory.calls == 1


@pytest.mark.timeout(10)
def test_close_while_waiting_to_reconnect(rig):
    # given a lost live source waiting 30 s before its next attempt
    before = threading.active_count()
    factory = Factory(Plan(live=True, lose_after=1))
    capture = rig.capture(factory, live=True, backoff_initial_s=30.0, backoff_max_s=60.0)
    wait_for(lambda: capture.status.status is SourceStatus.RECONNECTING)
    assert capture.status.retry_in_s == 30.0
    # when closed
    close_timed(capture)
    # then the worker is gone at once, without another attempt
    assert threading.active_count() == before
    assert capture.status.status is SourceStatus.STOPPED
    assert factory.calls == 1


@pytest.mark.timeout(10)
@pytest.mark.parametrize("live", [True, False])
def test_close_while_read_is_blocked_forever(rig, live):
    # given a source whose first read never returns
    gate = rig.gate()
    before = threading.active_count()
    factory = Factory(Plan(live=live, block_after=0, read_gate=gate))
    capture = rig.capture(factory, live=live)
    wait_for(lambda: factory.calls == 1 and factory.sources[0].blocked.is_set())
    # when closed
    close_timed(capture)
    # then close returned, leaving the wedged worker behind, which leaves once its read returns
    assert capture.status.status is SourceStatus.STOPPED
    assert capture.get(timeout=0) is None
    gate.set()
    assert factory.sources[0].closed.wait(2.0)
    wait_for(lambda: threading.active_count() == before)
    assert capture.frames == 0


@pytest.mark.timeout(10)
def test_close_while_a_blocking_put_waits_on_a_full_buffer(rig):
    # given an endless file, a BLOCK buffer of 2 and no consumer
    before = threading.active_count()
    factory = Factory(Plan(frames=None))
    capture = rig.capture(factory, live=False, capacity=2, policy=BufferPolicy.BLOCK)
    wait_for(lambda: factory.calls == 1 and factory.sources[0].frames >= 3 and len(capture.buffer) == 2)
    # when closed
    close_timed(capture)
    # then the waiting put gave up and the worker released the source and ended
    assert factory.sources[0].closed.is_set()
    assert threading.active_count() == before
    assert capture.status.status is SourceStatus.STOPPED
    assert factory.sources[0].frames == 3


@pytest.mark.timeout(10)
def test_close_while_pacing_a_file(rig):
    # given a paced file whose second frame is 100 s after the first
    before = threading.active_count()
    factory = Factory(Plan(frames=2, timestamps=(0.0, 100.0)))
    capture = rig.capture(factory, live=False, realtime=True)
    assert take(capture, 1)[0].index == 0
    wait_for(lambda: factory.sources[0].reads == 2)
    # when closed while the worker waits for the second frame's time
    close_timed(capture)
    # then it stopped at once, without delivering it
    assert threading.active_count() == before
    assert capture.get(timeout=0) is None
    assert capture.frames == 1


@pytest.mark.timeout(10)
def test_close_after_the_end_keeps_ended(rig):
    capture = rig.capture(Factory(Plan(frames=3)), live=False)
    assert len(drain(capture)) == 3
    close_timed(capture)
    assert capture.status.status is SourceStatus.ENDED
    assert capture.error is None


@pytest.mark.timeout(10)
def test_close_twice_and_close_before_start(rig):
    # given a live source delivering 100 frames a second, and a capture never started
    before = threading.active_count()
    running = rig.capture(Factory(Plan(live=True, fps=100.0)), live=True, realtime=True)
    idle = rig.capture(Factory(Plan(live=True)), live=True, start=False)
    take(running, 2)
    # when each is closed twice
    for capture in (running, idle):
        close_timed(capture)
        close_timed(capture)
    # then both are stopped and no thread is left
    assert running.status.status is SourceStatus.STOPPED
    assert idle.status.status is SourceStatus.STOPPED
    assert threading.active_count() == before


@pytest.mark.timeout(10)
def test_context_manager_closes(rig):
    before = threading.active_count()
    factory = Factory(Plan(live=True, fps=100.0))
    with Capture(factory, "fake", CaptureConfig(live=True)) as capture:
        assert take(capture, 1)[0].index == 0
    assert capture.status.status is SourceStatus.STOPPED
    wait_for(lambda: threading.active_count() == before, limit_s=1.5)


# --- the demo source through capture ------------------------------------------------------------------


@pytest.mark.timeout(10)
def test_demo_source_streams_in_real_time(rig):
    # given the live demo at 30 fps, paced
    capture = Capture(
        lambda: DemoSource(seed=0, size=32, fps=30.0), "demo", CaptureConfig(live=True, capacity=64)
    )
    rig.captures.append(capture)
    capture.start()
    # when the consumer takes 10 frames
    frames = take(capture, 10)
    # then they came about 1/30 s apart, stamped i / 30 on the source's clock
    span = frames[-1].capture_ts - frames[0].capture_ts
    assert 9 / 30 - 0.01 <= span < 2.0
    assert [f.index for f in frames] == list(range(10))
    assert [f.source_ts for f in frames] == pytest.approx([i / 30 for i in range(10)])
    assert {f.connection for f in frames} == {1}
    assert frames[0].image.shape == (32, 32, 3) and frames[0].image.dtype == np.uint8
    assert capture.nominal_fps == 30.0
    assert capture.status.status is SourceStatus.LIVE


@pytest.mark.timeout(10)
def test_a_live_consumer_that_falls_behind_gets_the_newest_frame(rig):
    # given a live source that delivered 5 frames while nobody read
    gate = rig.gate()
    factory = Factory(Plan(live=True, block_after=5, read_gate=gate))
    capture = rig.capture(factory, live=True, capacity=8, take_latest=None)
    deadline = time.monotonic() + 5
    while capture.frames < 5 and time.monotonic() < deadline:
        time.sleep(0.01)
    # when the consumer reads, it gets the newest, and the 4 older frames count as dropped
    frame = capture.get(timeout=1.0)
    assert frame is not None and frame.index == 4
    assert capture.buffer.dropped == 4
