"""Events from per-step probabilities, with hysteresis: an action starts when its probability stays at or
above `enter` for `min_duration_s` (source time) and ends when it falls under `exit`."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from stream.types import Event, Prediction


@dataclass(frozen=True)
class EventConfig:
    enter: float = 0.6
    exit: float = 0.4
    min_duration_s: float = 0.5

    def __post_init__(self) -> None:
        # written so that nan fails: every comparison with nan is False
        if not 0.0 < self.exit <= self.enter <= 1.0:
            raise ValueError(f"event thresholds need 0 < exit ({self.exit}) <= enter ({self.enter}) <= 1")
        if not 0.0 <= self.min_duration_s < math.inf:
            raise ValueError(
                f"minimum event duration ({self.min_duration_s}) must be a finite number, not negative"
            )


class EventDetector:
    """Feed `update(probs, ts, frame_index)` in time order; it returns the events that fired."""

    def __init__(
        self,
        class_names: tuple[str, ...],
        source: str,
        config: EventConfig = EventConfig(),
        camera: str = "",
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.class_names, self.source, self.config, self.camera = class_names, source, config, camera
        self._clock = clock
        self.events_fired = 0
        self._candidate: int | None = None  # above `enter`, not yet for long enough
        self._candidate_since = 0.0
        self._active: int | None = None
        self._start = 0.0
        self._peak = 0.0
        self._peak_ts = 0.0
        self._peak_prediction: Prediction | None = None
        self._last_ts = 0.0
        self._last_index = 0

    @property
    def active(self) -> str | None:
        return None if self._active is None else self.class_names[self._active]

    def _event(self, kind: str, end: float | None, frame_index: int) -> Event:
        assert self._active is not None
        self.events_fired += 1
        return Event(
            kind, self.class_names[self._active], self._active, self.source, self._start, end,
            self._peak, self._peak_ts, frame_index, self.camera, self._clock(), self._peak_prediction,
        )  # fmt: skip

    def update(
        self, probs: np.ndarray, ts: float, frame_index: int, prediction: Prediction | None = None
    ) -> list[Event]:
        """`prediction`: the one these probabilities are from; the event carries the one at its peak."""
        cfg = self.config
        self._last_ts, self._last_index = ts, frame_index
        events: list[Event] = []
        if self._active is not None:
            p = float(probs[self._active])
            if p < cfg.exit:
                events.append(self._event("end", ts, frame_index))
                self._active = None
            else:
                if p > self._peak:
                    self._peak, self._peak_ts, self._peak_prediction = p, ts, prediction
                return events
        top = int(np.argmax(probs))
        p = float(probs[top])
        if p < cfg.enter:
            self._candidate = None
            return events
        if self._candidate != top:
            self._candidate, self._candidate_since = top, ts
            self._peak, self._peak_ts, self._peak_prediction = p, ts, prediction
        elif p > self._peak:
            self._peak, self._peak_ts, self._peak_prediction = p, ts, prediction
        if ts - self._candidate_since >= cfg.min_duration_s - 1e-9:
            self._active, self._start = top, self._candidate_since
            self._candidate = None
            events.append(self._event("start", None, frame_index))
        return events

    def reset(self) -> list[Event]:
        """Close the active event (at the last time seen): a gap in the stream, or its end."""
        events = [self._event("end", self._last_ts, self._last_index)] if self._active is not None else []
        self._active = self._candidate = None
        self._peak_prediction = None
        return events

    finish = reset
