"""The single-camera recognizer: source frames in, predictions out, incrementally.

A `Session` (resampling, staggered rows, smoothing, events) driven one frame at a time through the same
round (`stream.runtime.batch.step_batch`) the multi-camera runner uses, so one camera alone and one of N
batched cameras compute the same thing. For embedding, tests and benchmarks; `run_camera.py` runs the
multi-camera runtime (stream/runtime/app.py) even for one source.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from engines.backend import Backend
from stream.runtime.batch import Work, step_batch
from stream.runtime.events import EventConfig
from stream.runtime.resample import Resampler
from stream.runtime.session import RecognizerConfig, Session
from stream.types import Event, Frame, Prediction

__all__ = ["Recognizer", "RecognizerConfig", "Resampler"]


class Recognizer:
    def __init__(
        self,
        backend: Backend,
        *,
        preprocessing: Mapping[str, Any],
        sampling: Mapping[str, Any],
        class_names: tuple[str, ...],
        config: RecognizerConfig | None = None,
        events: EventConfig | None = None,
        source_fps: float | None = None,
        camera: str = "",
    ) -> None:
        self.backend = backend
        self.session = Session(
            backend.spec,
            preprocessing=preprocessing,
            sampling=sampling,
            class_names=class_names,
            config=config,
            events=events,
            camera=camera,
            source_fps=source_fps,
        )
        self.events: list[Event] = []  # fired since the last `take_events`

    # the session's numbers, under the names the single-camera API has always had
    @property
    def steps(self) -> int:
        return self.session.steps

    @property
    def resets(self) -> int:
        return self.session.resets

    @property
    def encoded(self) -> int:
        return self.session.encoded

    @property
    def resampler(self) -> Resampler:
        return self.session.resampler

    @property
    def num_states(self) -> int:
        return self.session.num_rows

    def reset(self) -> None:
        self.events += self.session.reset()

    def push(self, frame: Frame, since: float | None = None) -> Prediction | None:
        """Feed one source frame; a Prediction when it made at least one model tick, else None."""
        ticks, events = self.session.admit(frame)
        self.events += events
        if not ticks:
            return None
        start = frame.capture_ts if since is None else since
        ((prediction, fired),) = step_batch(self.backend, [Work(self.session, frame, ticks, start)])
        self.events += fired
        return prediction

    def take_events(self) -> list[Event]:
        events, self.events = self.events, []
        return events
