"""The bounded ring buffer between a capture thread and the recognizer, with named policies.

`BufferPolicy.BLOCK` (files, folders): the producer waits for room, so no frame is ever lost.
`BufferPolicy.DROP_OLDEST` (live sources): the producer never waits; when full, the oldest frame
goes and is counted. A live consumer reads with `get_latest`, which takes the newest and counts the
older ones as dropped, so what it processes is at most one frame old and latency cannot build up.
`close()` wakes everyone: `get` then drains what is left and returns `None` (end of stream).
"""

from __future__ import annotations

import collections
import enum
import threading
import time
from typing import Generic, TypeVar

T = TypeVar("T")


class BufferPolicy(enum.Enum):
    BLOCK = "block"
    DROP_OLDEST = "drop_oldest"


class BufferClosed(Exception):
    """`put` on a closed buffer (the consumer has gone)."""


class RingBuffer(Generic[T]):
    def __init__(self, capacity: int, policy: BufferPolicy) -> None:
        if capacity < 1:
            raise ValueError(f"ring buffer capacity ({capacity}) must be at least 1")
        self.capacity = capacity
        self.policy = policy
        self._items: collections.deque[T] = collections.deque()
        self._cond = threading.Condition()
        self._closed = False
        self.put_count = 0
        self.dropped = 0
        self.high_water = 0

    def __len__(self) -> int:
        with self._cond:
            return len(self._items)

    @property
    def closed(self) -> bool:
        return self._closed

    def put(self, item: T, timeout: float | None = None) -> bool:
        """Add an item; False if BLOCK timed out waiting for room. Raises BufferClosed once closed."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            if self.policy is BufferPolicy.BLOCK:
                while len(self._items) >= self.capacity and not self._closed:
                    remaining = None if deadline is None else deadline - time.monotonic()
                    if remaining is not None and remaining <= 0:
                        return False
                    self._cond.wait(remaining)
            if self._closed:
                raise BufferClosed("the ring buffer is closed")
            if len(self._items) >= self.capacity:  # DROP_OLDEST
                self._items.popleft()
                self.dropped += 1
            self._items.append(item)
            self.put_count += 1
            self.high_water = max(self.high_water, len(self._items))
            self._cond.notify_all()
            return True

    def _wait_for_items(self, timeout: float | None) -> bool:
        """With the lock held: wait until there is an item (True), or closed and empty / timed out (False)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self._items and not self._closed:
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                return False
            self._cond.wait(remaining)
        return bool(self._items)

    def get(self, timeout: float | None = None) -> T | None:
        """The oldest item; None when closed and empty, or when `timeout` passed with nothing."""
        with self._cond:
            if not self._wait_for_items(timeout):
                return None
            item = self._items.popleft()
            self._cond.notify_all()
            return item

    def get_latest(self, timeout: float | None = None) -> T | None:
        """The newest item, dropping (and counting) the older ones: what a live consumer that fell
        behind wants, so what it processes is never older than one item. None as for `get`."""
        with self._cond:
            if not self._wait_for_items(timeout):
                return None
            self.dropped += len(self._items) - 1
            item = self._items.pop()
            self._items.clear()
            self._cond.notify_all()
            return item

    def set_policy(self, policy: BufferPolicy) -> None:
        """Switch policy while running: a capture made for a live URL that turned out to be a file
        needs BLOCK (every frame) from its first frame on."""
        with self._cond:
            self.policy = policy
            self._cond.notify_all()

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def clear(self) -> int:
        """Drop everything queued (not counted as drops); returns how many."""
        with self._cond:
            n = len(self._items)
            self._items.clear()
            self._cond.notify_all()
            return n
