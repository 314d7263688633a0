"""The ring buffer between capture and recognizer: BLOCK loses nothing, DROP_OLDEST keeps the latest,
close wakes everyone. Every test has a timeout so a hang fails instead of blocking the run."""

from __future__ import annotations

import contextlib
import threading
import time

import pytest

from stream.sources.buffer import BufferClosed, BufferPolicy, RingBuffer

pytestmark = pytest.mark.timeout(20)  # a hang fails the test; tests that wait say so themselves


def _start(target, *args) -> threading.Thread:
    t = threading.Thread(target=target, args=args, daemon=True)
    t.start()
    return t


def _wait_until(predicate, limit_s: float = 2.0) -> None:
    deadline = time.monotonic() + limit_s
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.002)


@pytest.mark.timeout(10)
def test_block_with_a_slow_consumer_loses_nothing_and_keeps_order():
    # given a small BLOCK buffer and a producer much faster than the consumer
    buffer: RingBuffer[int] = RingBuffer(4, BufferPolicy.BLOCK)
    results: list[bool] = []

    def produce() -> None:
        for i in range(500):
            results.append(buffer.put(i))
        buffer.close()

    producer = _start(produce)
    # when the consumer takes the items slowly (the producer keeps finding the buffer full)
    got = []
    while (item := buffer.get(timeout=5.0)) is not None:
        got.append(item)
        if len(got) % 50 == 0:
            time.sleep(0.005)
    producer.join(2.0)
    # then every item arrived, once, in order, and nothing was dropped
    assert got == list(range(500))
    assert results == [True] * 500
    assert buffer.dropped == 0
    assert buffer.put_count == 500
    assert buffer.high_water == 4
    assert not producer.is_alive()


@pytest.mark.timeout(5)
def test_block_put_on_a_full_buffer_times_out_with_false():
    # given a full BLOCK buffer and no consumer
    buffer: RingBuffer[int] = RingBuffer(2, BufferPolicy.BLOCK)
    assert buffer.put(0) and buffer.put(1)
    # when a put waits with a timeout
    t0 = time.monotonic()
    ok = buffer.put(2, timeout=0.05)
    # then it gave up after the timeout, and the buffer is unchanged
    assert ok is False
    assert time.monotonic() - t0 >= 0.04
    assert buffer.put(3, timeout=0) is False
    assert len(buffer) == 2
    assert buffer.put_count == 2 and buffer.dropped == 0
    assert [buffer.get(0), buffer.get(0), buffer.get(0)] == [0, 1, None]


@pytest.mark.timeout(5)
def test_block_put_waits_until_a_get_makes_room():
    # given a full BLOCK buffer and a producer waiting to put one more
    buffer: RingBuffer[str] = RingBuffer(1, BufferPolicy.BLOCK)
    buffer.put("a")
    done = threading.Event()
    producer = _start(lambda: (buffer.put("b"), done.set()))
    assert not done.wait(0.05)  # still waiting for room
    # when the consumer takes one
    assert buffer.get(1.0) == "a"
    # then the waiting put goes through
    assert done.wait(2.0)
    producer.join(2.0)
    assert buffer.get(1.0) == "b"


@pytest.mark.timeout(5)
def test_drop_oldest_keeps_the_latest_items_and_counts_drops():
    # given a DROP_OLDEST buffer of 3 and no consumer
    buffer: RingBuffer[int] = RingBuffer(3, BufferPolicy.DROP_OLDEST)
    # when 10 items are put
    t0 = time.monotonic()
    results = [buffer.put(i, timeout=10.0) for i in range(10)]
    # then no put waited, the latest 3 are kept, and exactly 7 were dropped
    assert time.monotonic() - t0 < 1.0
    assert results == [True] * 10
    assert buffer.dropped == 7
    assert buffer.put_count == 10
    assert buffer.high_water == 3
    assert [buffer.get(0) for _ in range(4)] == [7, 8, 9, None]


@pytest.mark.timeout(5)
@pytest.mark.parametrize("policy", list(BufferPolicy))
def test_close_wakes_a_blocked_get_with_none(policy):
    # given a consumer waiting (no timeout) on an empty buffer
    buffer: RingBuffer[int] = RingBuffer(2, policy)
    got: list[object] = []
    consumer = _start(lambda: got.append(buffer.get()))
    time.sleep(0.02)  # let it reach the wait (the outcome is the same if it has not)
    # when the buffer is closed
    buffer.close()
    # then the get returns None: end of stream
    consumer.join(2.0)
    assert not consumer.is_alive()
    assert got == [None]


@pytest.mark.timeout(5)
def test_close_wakes_a_blocked_put_with_buffer_closed():
    # given a producer waiting (no timeout) for room in a full BLOCK buffer
    buffer: RingBuffer[int] = RingBuffer(1, BufferPolicy.BLOCK)
    buffer.put(0)
    raised: list[BaseException] = []

    def produce() -> None:
        try:
            buffer.put(1)
        except BufferClosed as error:
            raised.append(error)

    producer = _start(produce)
    time.sleep(0.02)
    # when the consumer goes away
    buffer.close()
    # then the put raises BufferClosed instead of waiting forever
    producer.join(2.0)
    assert not producer.is_alive()
    assert len(raised) == 1
    assert buffer.put_count == 1


@pytest.mark.timeout(5)
@pytest.mark.parametrize("policy", list(BufferPolicy))
def test_get_drains_what_is_left_after_close(policy):
    # given a buffer holding two items
    buffer: RingBuffer[int] = RingBuffer(4, policy)
    buffer.put(1)
    buffer.put(2)
    # when it is closed
    buffer.close()
    # then get still returns them, then None at once; put raises
    assert buffer.closed
    assert buffer.get(5.0) == 1
    assert buffer.get(5.0) == 2
    t0 = time.monotonic()
    assert buffer.get(5.0) is None
    assert time.monotonic() - t0 < 1.0
    with pytest.raises(BufferClosed):
        buffer.put(3)


@pytest.mark.timeout(5)
def test_get_on_an_empty_open_buffer_times_out_with_none():
    buffer: RingBuffer[int] = RingBuffer(2, BufferPolicy.DROP_OLDEST)
    t0 = time.monotonic()
    assert buffer.get(0.03) is None
    assert time.monotonic() - t0 >= 0.02
    assert not buffer.closed


@pytest.mark.timeout(5)
def test_clear_empties_without_counting_drops():
    buffer: RingBuffer[int] = RingBuffer(3, BufferPolicy.BLOCK)
    for i in range(3):
        buffer.put(i)
    assert buffer.clear() == 3
    assert len(buffer) == 0
    assert buffer.dropped == 0
    assert buffer.put(9, timeout=0)  # room again


@pytest.mark.timeout(5)
@pytest.mark.parametrize("capacity", [0, -1])
def test_capacity_below_one_is_a_value_error(capacity):
    with pytest.raises(ValueError, match=rf"capacity \({capacity}\)"):
        RingBuffer(capacity, BufferPolicy.BLOCK)


@pytest.mark.timeout(5)
def test_waiting_threads_all_end_after_close():
    # given several producers waiting for room in one full buffer
    buffer: RingBuffer[int] = RingBuffer(1, BufferPolicy.BLOCK)
    buffer.put(0)
    before = threading.active_count()

    def put_quietly() -> None:
        with contextlib.suppress(BufferClosed):
            buffer.put(1)

    waiters = [_start(put_quietly) for _ in range(4)]
    _wait_until(lambda: threading.active_count() >= before + 4)
    # when it is closed
    buffer.close()
    # then every one of them ends
    for t in waiters:
        t.join(2.0)
    assert not any(t.is_alive() for t in waiters)
    assert threading.active_count() == before


def test_get_latest_takes_the_newest_and_counts_the_rest_as_dropped():
    buf: RingBuffer[int] = RingBuffer(4, BufferPolicy.DROP_OLDEST)
    for i in range(3):
        buf.put(i)
    assert buf.get_latest(timeout=0.1) == 2
    assert buf.dropped == 2 and len(buf) == 0
    assert buf.get_latest(timeout=0.05) is None  # empty: times out
    for i in range(6):  # 2 dropped by the ring, then 3 more by get_latest
        buf.put(i)
    assert buf.get_latest(timeout=0.1) == 5 and buf.dropped == 2 + 2 + 3
    buf.put(9)
    buf.close()
    assert buf.get_latest() == 9 and buf.get_latest() is None
