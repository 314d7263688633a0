"""Resampling a source's frames to the model's frame rate, from timestamps alone (the rule of offline
decoding: model tick k at t0 + k/fps shows the newest source frame at or before it; a live source with no
known rate takes the first frame at or after each tick). A frame may fill several ticks (a slow source, or
frames dropped under load), so the model's time axis stays right."""

from __future__ import annotations

import math

_EPS = 1e-6


class Resampler:
    """Which model ticks (at `fps`) each source frame fills, from timestamps alone."""

    def __init__(self, fps: float, source_fps: float | None = None) -> None:
        if fps <= 0:
            raise ValueError(f"model fps ({fps}) must be positive")
        self.fps = float(fps)
        self.source_fps = source_fps if source_fps and source_fps > 0 else None
        self.t0: float | None = None
        self.next_tick = 0

    def reset(self) -> None:
        self.t0, self.next_tick = None, 0

    def tick_time(self, k: int) -> float:
        assert self.t0 is not None
        return self.t0 + k / self.fps

    def pending(self, ts: float) -> int:
        """Ticks from `next_tick` that fall before `ts` (those a frame at `ts` would skip over)."""
        if self.t0 is None:
            return 0
        return max(0, math.floor((ts - self.t0) * self.fps + _EPS) - self.next_tick + 1)

    def ticks(self, ts: float) -> range:
        """The ticks the frame at `ts` fills (an empty range: the frame is skipped)."""
        if self.t0 is None:
            self.t0 = ts
        # with a known source rate this frame is on screen until ts + 1/source_fps (offline's floor rule);
        # without, it fills the ticks it has reached
        horizon = ts + (1.0 / self.source_fps if self.source_fps else 0.0)
        k = self.next_tick
        if self.source_fps:
            while self.tick_time(k) < horizon - _EPS:
                k += 1
        else:
            while self.tick_time(k) <= horizon + _EPS:
                k += 1
        out = range(self.next_tick, k)
        self.next_tick = k
        return out
