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
import threading
from collections.abc import Sequence
from typing import Protocol

from stream.output import Output


class Sink(Protocol):
    def write(self, output: Output) -> None: ...

    def idle(self) -> None: ...

    def close(self) -> None: ...


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
