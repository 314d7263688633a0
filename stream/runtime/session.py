"""One camera's recognition: resampling to the model's rate, its own rows of the model's state, smoothing,
events and statistics. A session never calls the engine: `batch.step_batch` runs every session's
due ticks in one `encode` and one `temporal_step`, and hands each session its rows back.

Staggering (for models whose temporal state accumulates from a start, `spec.restarts`): a session owns
K = ceil(W/S) rows; row k restarts every W ticks, offset by k*S, and the prediction shown comes from the
row with the longest history, so once warm it is exactly the offline prediction for that row's clip.
A new connection to the source (reconnect), time going backwards, or a gap longer than a window resets this
session's rows only.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from glanet.data.transforms import EvalTransform
from glanet.models.online import OnlineSpec, State, StepOutput, init_rows, reset_rows
from stream.runtime.events import EventConfig, EventDetector
from stream.runtime.resample import _EPS, Resampler
from stream.runtime.still import DEFAULT_SHARE, StillGate
from stream.stats import Percentiles
from stream.types import Event, Frame, Prediction


@dataclass(frozen=True)
class RecognizerConfig:
    smoothing: float = 0.0  # exponential smoothing of the fused probabilities: p = a*p_prev + (1-a)*p_new
    max_gap_s: float | None = None  # reset when this much source time passes with no frame (None: W/fps)
    # the static-scene gate (stream/runtime/still.py): a frame where less than this share of the scene
    # changed since the last encoded one reuses its features; 0: off, every frame is encoded
    static_gate: float = DEFAULT_SHARE


def _numpy(x: Tensor) -> np.ndarray:
    return x.detach().float().cpu().numpy()


class Session:
    def __init__(
        self,
        spec: OnlineSpec,
        *,
        preprocessing: Mapping[str, Any],
        sampling: Mapping[str, Any],
        class_names: tuple[str, ...],
        config: RecognizerConfig | None = None,
        events: EventConfig | None = None,
        camera: str = "",
        source_name: str = "",
        source_fps: float | None = None,
    ) -> None:
        config = config or RecognizerConfig()
        self.spec = spec
        self.camera = camera
        self.transform = EvalTransform.from_preprocessing(preprocessing)
        self.fps = float(sampling["fps"]) if sampling.get("fps") else None
        if self.fps is None:
            raise ValueError(
                "the checkpoint's sampling has no fps: cannot resample a stream to the model's rate"
            )
        self.window, self.stride = int(sampling["window"]), int(sampling["stride"])
        if self.window < 1 or not 1 <= self.stride <= self.window:
            raise ValueError(
                f"sampling window ({self.window}) and stride ({self.stride}) need 1 <= stride <= window"
            )
        if not 0.0 <= config.smoothing < 1.0:
            raise ValueError(f"smoothing ({config.smoothing}) must be in [0, 1)")
        if not 0.0 <= config.static_gate <= 1.0:
            raise ValueError(f"static_gate ({config.static_gate}) must be in [0, 1]")
        if len(class_names) != spec.num_classes:
            raise ValueError(f"{len(class_names)} class names for a model of {spec.num_classes} classes")
        self.class_names = class_names
        self.config = config
        self.num_rows = math.ceil(self.window / self.stride) if spec.restarts else 1
        self.max_gap_s = config.max_gap_s if config.max_gap_s is not None else self.window / self.fps
        self.resampler = Resampler(self.fps, source_fps)
        self.detector = EventDetector(class_names, source_name or camera, events or EventConfig(), camera)
        self.latency = Percentiles()
        self.steps = 0  # model ticks since the start (never reset: it keys nothing but the display)
        self.resets = 0
        self.encoded = 0  # model frames that went through the backbone
        self.reused = 0  # model frames that reused the last encoded features (the scene showed nothing new)
        self.frames = 0  # source frames admitted
        self.predictions = 0
        self.last_prediction: Prediction | None = None
        self._connection: int | None = None
        self._last_ts: float | None = None
        self._smoothed: np.ndarray | None = None
        self._tick = 0  # ticks since the last reset: what the staggering is counted from
        self._offsets = torch.arange(self.num_rows) * self.stride  # row k starts at tick k*S
        self.step_state: State = init_rows(spec.step_state, self.num_rows)
        self.encode_state: State = init_rows(spec.encode_state, 1)
        # a backbone with state must see every frame: only a stateless encode is gated
        gated = config.static_gate > 0 and not spec.encode_state
        self.gate = StillGate(config.static_gate) if gated else None
        self._encoded: tuple[dict[str, Tensor], dict[str, Tensor]] | None = None  # features, maps (1 row)

    # -- what the batch runner calls ------------------------------------------------------------------
    def admit(self, frame: Frame) -> tuple[int, list[Event]]:
        """Take one source frame: how many model ticks it fills (0: skipped by resampling), and the
        events a reset closed (a new connection, time going backwards, a gap longer than a window)."""
        ts = frame.source_ts
        new_connection = self._connection is not None and frame.connection != self._connection
        backwards = self._last_ts is not None and ts < self._last_ts - _EPS
        gap = self.resampler.t0 is not None and self.resampler.pending(ts) / self.fps > self.max_gap_s
        events = self.reset() if new_connection or backwards or gap else []
        self._connection, self._last_ts = frame.connection, ts
        self.frames += 1
        return len(self.resampler.ticks(ts)), events

    def reset(self) -> list[Event]:
        """Restart this session's rows (no other camera's); closes an open event."""
        self.step_state = init_rows(self.spec.step_state, self.num_rows)
        self.encode_state = init_rows(self.spec.encode_state, 1)
        self._tick = 0
        self._smoothed = None
        self._forget_encoded()
        self.resampler.reset()
        self.resets += 1
        return self.detector.reset()

    def reusable(self, frame: Frame) -> tuple[dict[str, Tensor], dict[str, Tensor]] | None:
        """The last encoded features and maps (a row each) when this frame shows nothing new, else None
        (the frame is to be encoded; then `keep_encoded`)."""
        if self.gate is None:
            return None
        still = self.gate.shows_nothing_new(frame)
        return self._encoded if still else None

    def keep_encoded(self, features: dict[str, Tensor], maps: dict[str, Tensor]) -> None:
        """This frame was encoded: its features and maps are what a still scene reuses from now on."""
        if self.gate is not None:
            self.gate.encoded()
            self._encoded = (features, maps)

    def _forget_encoded(self) -> None:
        if self.gate is not None:
            self.gate.forget()
        self._encoded = None

    def begin_tick(self) -> None:
        """Before a temporal step: restart the rows whose new clip begins at this tick."""
        if self.spec.restarts:
            rel = self._tick - self._offsets
            self.step_state = reset_rows(
                self.spec.step_state, self.step_state, (rel < 0) | (rel % self.window == 0)
            )

    def end_tick(self, state: State) -> None:
        self.step_state = state
        self._tick += 1
        self.steps += 1

    def _histories(self) -> list[int]:
        """Model frames behind each row's state after the last tick (a row not yet begun has one)."""
        t = self._tick - 1
        if not self.spec.restarts:
            return [min(self._tick, self.window)]
        return [int(r) % self.window + 1 if r >= 0 else 1 for r in (t - self._offsets).tolist()]

    def predict(
        self, frame: Frame, out: StepOutput, maps: Mapping[str, Tensor], since: float, reused: bool = False
    ) -> tuple[Prediction, list[Event]]:
        """The prediction after this frame's ticks (`out`: this session's rows; `maps`: (h, w) each), and
        the events it fired. Latency is measured from `since` (the capture time, for a live source)."""
        histories = self._histories()
        best = int(np.argmax(histories))  # the longest history: the first such row
        raw = _numpy(out.fused[best])
        if self.config.smoothing > 0 and self._smoothed is not None:
            a = self.config.smoothing
            probs = a * self._smoothed + (1 - a) * raw
        else:
            probs = raw
        self._smoothed = probs
        h, w = frame.image.shape[:2]
        latency = time.monotonic() - since
        prediction = Prediction(
            frame=frame,
            step=self.steps - 1,
            history=histories[best],
            window=self.window,
            probs=probs,
            raw_probs=raw,
            branch_probs=_numpy(out.probs[best]),
            branch_names=self.spec.branch_names,
            class_names=self.class_names,
            maps={name: _numpy(m) for name, m in maps.items()},
            crop_box=self.transform.crop_box(h, w),
            latency_s=latency,
            ticks_since_reset=self._tick,
            reused=reused,
        )
        if reused:
            self.reused += 1
        else:
            self.encoded += 1
        self.predictions += 1
        self.latency.add(latency)
        self.last_prediction = prediction
        events: list[Event] = []
        if prediction.warm:
            events = self.detector.update(probs, frame.source_ts, frame.index, prediction)
        return prediction, events
