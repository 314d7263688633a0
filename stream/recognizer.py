"""The recognizer: source frames in, predictions out, incrementally, with W/S staggered SRU states.

1. Frames are resampled by timestamp to the checkpoint's frame rate (the rule of offline decoding:
   model tick k at t0 + k/fps shows the newest source frame at or before it; a live source with no
   known rate takes the first frame at or after each tick). A frame may fill several ticks (a slow
   source, or frames dropped under load): it is encoded once and stepped once per tick, so the model's
   time axis stays right.
2. `encode` runs once per model frame; its features advance K = ceil(W/S) states in one batch. State k
   restarts every W ticks, offset by k*S; the prediction shown comes from the state with the longest
   history, so once warm it is exactly the offline prediction for the clip of that state's frames.
3. A new source session (reconnect), time going backwards, or a gap longer than a window resets all.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import torch
from torch import Tensor

from glanet.data.transforms import EvalTransform
from glanet.models.glanet import Features, State, StepOutput, reset_state
from stream.types import Frame, Prediction

_EPS = 1e-6


class Backend(Protocol):
    name: str

    @property
    def stream_names(self) -> tuple[str, ...]: ...

    def encode(self, frames: Tensor) -> Features: ...

    def temporal_step(
        self, features: Features | tuple[Tensor, ...], state: State
    ) -> tuple[StepOutput, State]: ...

    def init_state(self, batch: int) -> State: ...


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


@dataclass(frozen=True)
class RecognizerConfig:
    smoothing: float = 0.0  # exponential smoothing of the fused probabilities: p = a*p_prev + (1-a)*p_new
    max_gap_s: float | None = None  # reset when this much source time passes with no frame (None: W/fps)


def _numpy(x: Tensor) -> np.ndarray:
    return x.detach().float().cpu().numpy()


class Recognizer:
    def __init__(
        self,
        backend: Backend,
        *,
        preprocessing: Mapping[str, Any],
        sampling: Mapping[str, Any],
        class_names: tuple[str, ...],
        config: RecognizerConfig = RecognizerConfig(),
        source_fps: float | None = None,
    ) -> None:
        self.backend = backend
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
        self.class_names = class_names
        self.config = config
        self.num_states = math.ceil(self.window / self.stride)
        self.max_gap_s = config.max_gap_s if config.max_gap_s is not None else self.window / self.fps
        self.resampler = Resampler(self.fps, source_fps)
        self.steps = 0  # model ticks since the start (never reset: it keys nothing but the display)
        self.resets = 0
        self.encoded = 0
        self._session: int | None = None
        self._last_ts: float | None = None
        self._smoothed: np.ndarray | None = None
        self._tick = 0  # ticks since the last reset: what the staggering is counted from
        self._state = backend.init_state(self.num_states)
        self._offsets = torch.arange(self.num_states) * self.stride  # state k starts at tick k*S

    def reset(self) -> None:
        self._state = self.backend.init_state(self.num_states)
        self._tick = 0
        self._smoothed = None
        self.resampler.reset()
        self.resets += 1

    def _restarting(self) -> Tensor:
        """(K,) bool: the states that begin a new clip at this tick (or have not begun yet)."""
        t = self._tick
        rel = t - self._offsets
        return (rel < 0) | (rel % self.window == 0)

    def push(self, frame: Frame) -> Prediction | None:
        """Feed one source frame; a Prediction when it made at least one model tick, else None."""
        ts = frame.source_ts
        new_session = self._session is not None and frame.session != self._session
        backwards = self._last_ts is not None and ts < self._last_ts - _EPS
        gap = self.resampler.t0 is not None and self.resampler.pending(ts) * (1.0 / self.fps) > self.max_gap_s
        if new_session or backwards or gap:
            self.reset()
        self._session, self._last_ts = frame.session, ts
        ticks = self.resampler.ticks(ts)
        if not ticks:
            return None
        x = self.transform([frame.image]).to(torch.float32)  # (1, 3, crop, crop)
        feats = self.backend.encode(x)
        self.encoded += 1
        streams = tuple(s.expand(self.num_states, -1) for s in feats.streams)  # (K, D): one row per state
        out: StepOutput | None = None
        for _ in ticks:
            rows = self._restarting().to(self._state.steps.device)
            self._state = reset_state(self._state, rows)
            out, self._state = self.backend.temporal_step(streams, self._state)
            self._tick += 1
            self.steps += 1
        assert out is not None
        steps = self._state.steps
        best = int(torch.argmax(steps).item())
        raw = _numpy(out.fused[best])
        if self.config.smoothing > 0 and self._smoothed is not None:
            a = self.config.smoothing
            probs = a * self._smoothed + (1 - a) * raw
        else:
            probs = raw
        self._smoothed = probs
        h, w = frame.image.shape[:2]
        return Prediction(
            frame=frame,
            step=self.steps - 1,
            history=int(steps[best].item()),
            window=self.window,
            probs=probs,
            raw_probs=raw,
            stream_probs=_numpy(out.probs[best]),
            stream_names=tuple(self.backend.stream_names),
            class_names=self.class_names,
            sa_map=_numpy(feats.sa_map[0]),
            la_map=_numpy(feats.la_map[0]),
            crop_box=self.transform.crop_box(h, w),
            latency_s=time.monotonic() - frame.capture_ts,
            ticks_since_reset=self._tick,
        )
