"""The values that move through the streaming pipeline: frames, source status, predictions, stats."""

from __future__ import annotations

import datetime
import enum
import time
from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class Frame:
    """One decoded frame, stamped when it was read."""

    image: np.ndarray  # (H, W, 3) uint8 BGR
    index: int  # the source's frame counter, 0-based, counting on across reconnects
    source_ts: float  # seconds on the source's clock: position in a file, capture clock for live
    capture_ts: float  # time.monotonic() when the capture thread got it
    connection: int = 0  # the source's connection: a new number after a reconnect (its state resets)
    camera: str = ""  # the camera's name (multi-camera runs); "" for a lone source
    truth: str | None = None  # the action really shown, where the source knows it (the demo)
    # the static-scene gate's small grey copy (stream/sources/thumbnail.py), made on the capture thread
    small: np.ndarray | None = field(default=None, repr=False, compare=False)


class SourceStatus(enum.Enum):
    CONNECTING = "connecting"
    LIVE = "live"
    RECONNECTING = "reconnecting"
    ENDED = "ended"  # a file or folder came to its end
    FAILED = "failed"  # gave up: could not open, or retries exhausted
    STOPPED = "stopped"  # closed by us


@dataclass(frozen=True)
class StatusUpdate:
    status: SourceStatus
    message: str = ""  # one line for people; never holds credentials
    attempt: int = 0  # reconnect attempt (1-based) while RECONNECTING
    retry_in_s: float = 0.0  # wait before the next attempt
    since: float = field(default_factory=time.time, compare=False)  # time.time() when the status began


@dataclass(frozen=True)
class Prediction:
    """What the recognizer says after one model frame."""

    frame: Frame  # the source frame this model step was made on
    step: int  # model frames since the recognizer started
    history: int  # model frames behind this prediction (the clip it equals, offline)
    window: int  # the checkpoint's clip length W: `history` reaches it once warm
    probs: np.ndarray  # (K,) fused class probabilities, smoothed if smoothing is on
    raw_probs: np.ndarray  # (K,) fused probabilities of this step before smoothing
    branch_probs: np.ndarray  # (S, K) per branch (GLANet: GS, GL, GP or GP, SA, LA)
    branch_names: tuple[str, ...]
    class_names: tuple[str, ...]
    maps: dict[str, np.ndarray]  # the model's spatial maps of this frame, (h, w) each, summing to 1
    crop_box: tuple[float, float, float, float]  # (x0, y0, x1, y1): the part of `frame` the model saw
    latency_s: float  # capture -> prediction (time.monotonic() now minus frame.capture_ts)
    ticks_since_reset: int = 0  # model frames since the temporal state last started (or was reset)
    reused: bool = False  # the scene showed nothing new: the last encoded frame's features and maps

    @property
    def warm(self) -> bool:
        """A full window has been seen since the last reset (after that, `history` cycles W-S+1..W)."""
        return max(self.history, self.ticks_since_reset) >= self.window

    def top(self, k: int = 5) -> list[tuple[str, float]]:
        order = np.argsort(-self.probs)[:k]
        return [(self.class_names[i], float(self.probs[i])) for i in order]


@dataclass(frozen=True)
class Event:
    """An action that started (kind "start") or ended ("end"), on the source's clock."""

    kind: str  # "start" | "end"
    label: str
    class_index: int
    source: str  # the source's display name (credentials removed)
    start_ts: float  # source seconds when it passed the enter threshold
    end_ts: float | None  # source seconds when it fell under the exit threshold (None on "start")
    peak: float  # highest confidence so far
    peak_ts: float
    frame_index: int  # source frame index of the step that fired the event
    camera: str = ""  # the camera's name
    wall_time: float | None = None  # time.time() when the event fired (written as ISO 8601 UTC)
    # the prediction at the peak so far (its frame: the web view's thumbnail); kept in this process only
    peak_prediction: Prediction | None = field(default=None, repr=False, compare=False)

    def __getstate__(self) -> dict[str, object]:
        # a cluster's events cross the wire without the peak's picture (a frame is large, events are not)
        return {k: v for k, v in self.__dict__.items() if k != "peak_prediction"}

    def to_dict(self) -> dict[str, object]:
        stamp = None
        if self.wall_time is not None:
            when = datetime.datetime.fromtimestamp(self.wall_time, datetime.UTC)
            stamp = when.isoformat(timespec="milliseconds").replace("+00:00", "Z")
        return {
            "event": self.kind,
            "camera": self.camera,
            "time": stamp,
            "label": self.label,
            "class_index": self.class_index,
            "source": self.source,
            "start_ts": round(self.start_ts, 4),
            "end_ts": None if self.end_ts is None else round(self.end_ts, 4),
            "duration_s": None if self.end_ts is None else round(self.end_ts - self.start_ts, 4),
            "peak": round(self.peak, 4),
            "peak_ts": round(self.peak_ts, 4),
            "frame_index": self.frame_index,
        }


@dataclass(frozen=True)
class StatsSnapshot:
    """The pipeline's numbers at one moment, for the dashboard and the overlay."""

    fps: dict[str, float] = field(default_factory=dict)  # per stage: capture, model, display ...
    latency_p50_ms: float = float("nan")  # capture -> prediction
    latency_p95_ms: float = float("nan")
    frames_captured: int = 0
    frames_dropped: int = 0  # by the ring buffer (live sources)
    frames_skipped: int = 0  # by resampling to the model's frame rate
    decode_errors: int = 0
    reconnects: int = 0
    model_frames: int = 0
    model_reused: int = 0  # model frames that reused the last encoded features (a still scene)
    status: SourceStatus = SourceStatus.CONNECTING
    status_message: str = ""
    elapsed_s: float = 0.0
    last_event: str = ""  # e.g. "wave_one_hand start at 12.4 s"
    attempt: int = 0  # reconnect attempt (1-based) while reconnecting
    retry_at: float | None = None  # time.time() of the next attempt, while reconnecting with a wait


@dataclass(frozen=True)
class CameraStatus:
    """A camera of a run as those who watch it see it (the web API, the dashboard, the cluster's driver): a
    copy of its numbers at one moment, the same for a camera in this process and one on a cluster shard.
    Readers never reach into the runtime's own objects (capture, session)."""

    name: str
    source: str  # redacted: no user, password or query value
    stats: StatsSnapshot  # status and its message, rates, latency, reconnects
    last_prediction: Prediction | None = None
    frames: int = 0  # source frames through the loop
    frames_captured: int = 0  # decoded from the source
    predictions: int = 0
    dropped: int = 0  # by the capture buffer (live sources)
    decode_errors: int = 0
    reconnects: int = 0
    events: int = 0  # fired, start and end
    encoded: int = 0  # model frames through the backbone
    reused: int = 0  # model frames that reused the last encoded features (the static-scene gate)
    nominal_fps: float | None = None  # the source's own frame rate, where it says one
    shard: str = ""  # a cluster run: the shard serving it ("" in one process, or while it moves)
