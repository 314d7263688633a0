"""Running numbers of the pipeline: per-stage rates over a sliding window, latency percentiles."""

from __future__ import annotations

import collections
import time

import numpy as np


class RateMeter:
    """Events per second over the last `window_s` seconds."""

    def __init__(self, window_s: float = 2.0) -> None:
        self.window_s = window_s
        self._times: collections.deque[float] = collections.deque()

    def tick(self, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        self._times.append(now)
        self._trim(now)

    @property
    def last(self) -> float | None:
        """The time of the newest tick still in the window (None when empty)."""
        return self._times[-1] if self._times else None

    def _trim(self, now: float) -> None:
        while self._times and now - self._times[0] > self.window_s:
            self._times.popleft()

    def rate(self, now: float | None = None) -> float:
        now = time.monotonic() if now is None else now
        self._trim(now)
        if len(self._times) < 2:
            return 0.0
        span = self._times[-1] - self._times[0]
        return (len(self._times) - 1) / span if span > 0 else 0.0


class Percentiles:
    """The last `size` samples, for p50/p95; the count and maximum of all of them."""

    def __init__(self, size: int = 2000) -> None:
        self._recent: collections.deque[float] = collections.deque(maxlen=size)
        self.count = 0
        self.maximum = 0.0

    def add(self, value: float) -> None:
        self._recent.append(value)
        self.count += 1
        self.maximum = max(self.maximum, value)

    def percentile(self, q: float) -> float:
        if not self._recent:
            return float("nan")
        return float(np.percentile(np.fromiter(self._recent, dtype=np.float64), q))
