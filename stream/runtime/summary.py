"""What a run says at its end: a `Summary` per camera (its numbers and how it ended) and the `RunSummary`
(every camera's, and the run's reason): the final lines on stderr and --summary-json."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any


@dataclass
class Summary:
    reason: str = ""
    frames: int = 0  # source frames that went through the loop
    predictions: int = 0
    model_ticks: int = 0
    encoded: int = 0  # predictions made on a frame through the backbone
    reused: int = 0  # predictions that reused the last encoded features (the static-scene gate)
    events: int = 0
    dropped: int = 0
    decode_errors: int = 0
    reconnects: int = 0
    resets: int = 0
    saved_frames: int = 0
    latency_p50_ms: float = float("nan")  # over the last 2000 predictions (stats.Percentiles)
    latency_p95_ms: float = float("nan")
    latency_max_ms: float = float("nan")
    wall_s: float = 0.0
    error: str | None = None
    backend: str = ""
    source: str = ""
    shard: str = ""  # a cluster run: the shard (node) that served it last
    moves: int = 0  # a cluster run: times it moved to another shard (its shard was lost)

    @property
    def fps(self) -> float:
        return self.frames / self.wall_s if self.wall_s > 0 else 0.0

    def line(self) -> str:
        return (
            f"{self.reason}: {self.frames} frames in {self.wall_s:.1f} s ({self.fps:.1f} FPS), "
            f"{self.predictions} predictions, "
            f"latency p50 {self.latency_p50_ms:.0f} ms / p95 {self.latency_p95_ms:.0f} ms, "
            f"{self.dropped} dropped, {self.decode_errors} decode errors, {self.reconnects} reconnects, "
            f"{self.events} events; backend {self.backend}"
        )

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["processed_fps"] = round(self.fps, 3)
        return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in d.items()}


@dataclass
class RunSummary:
    """The run: a Summary per camera, in order, and how it ended."""

    cameras: dict[str, Summary]
    reason: str
    sink_dropped: int = 0  # outputs the sinks could not keep up with (never with --fast)

    @property
    def error(self) -> str | None:
        """The error that ended the run: every camera's source failed (or one did, alone)."""
        errors = [s.error for s in self.cameras.values() if s.error is not None]
        return errors[0] if errors and len(errors) == len(self.cameras) else None

    def __getattr__(self, name: str) -> Any:
        """A lone camera's Summary fields (frames, latency_p95_ms, ...) read as the run's own."""
        cameras = self.__dict__.get("cameras", {})
        if len(cameras) == 1 and not name.startswith("_"):
            return getattr(next(iter(cameras.values())), name)
        raise AttributeError(name)

    def line(self) -> str:
        if len(self.cameras) == 1:
            return next(iter(self.cameras.values())).line()
        total = sum(s.frames for s in self.cameras.values())
        wall = max((s.wall_s for s in self.cameras.values()), default=0.0)
        p95 = max(
            (s.latency_p95_ms for s in self.cameras.values() if math.isfinite(s.latency_p95_ms)),
            default=math.nan,
        )
        failed = [n for n, s in self.cameras.items() if s.error]
        return (
            f"{self.reason}: {len(self.cameras)} cameras, {total} frames in {wall:.1f} s, worst latency p95 "
            f"{p95:.0f} ms" + (f", failed: {', '.join(failed)}" if failed else "")
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "reason": self.reason,
            "sink_dropped": self.sink_dropped,
            "cameras": {name: s.to_dict() for name, s in self.cameras.items()},
        }
