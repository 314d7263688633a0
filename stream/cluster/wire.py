"""What travels from a shard to the driver: a `Record` per output worth sending, rebuilt into an `Output`.

A shard sends an output when it carries a fresh prediction, an event, a status change, the camera's end or
removal, or a picture (the web view: at most `picture_fps` a camera, as a JPEG with the prediction's maps).
The frames between model ticks stay on the shard; so do the pictures when nobody asked for them. On the
driver an output without a picture has `display=False` (nothing is drawn), and one with a picture carries
the decoded JPEG as its frame.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import cv2
import numpy as np

from stream.output import Output
from stream.types import Event, Frame, Prediction, StatsSnapshot, StatusUpdate

_BLACK = np.zeros((1, 1, 3), np.uint8)


def no_picture(shape: tuple[int, int]) -> np.ndarray:
    """The image of a frame whose picture stayed on the shard: its size, no memory (read-only, black)."""
    return np.broadcast_to(_BLACK, (*shape, 3))


@dataclass
class PredictionData:
    """A Prediction without its frame's picture and (unless a picture goes with it) without its maps."""

    index: int
    source_ts: float
    connection: int
    shape: tuple[int, int]  # its frame's (height, width): where the crop box lies
    step: int
    history: int
    window: int
    probs: np.ndarray
    raw_probs: np.ndarray
    branch_probs: np.ndarray
    crop_box: tuple[float, float, float, float]
    latency_s: float
    ticks_since_reset: int
    maps: dict[str, np.ndarray] = field(default_factory=dict)


@dataclass
class Record:
    camera: str
    shape: tuple[int, int]  # the output's frame's (height, width)
    index: int  # the output's frame (-1: none)
    source_ts: float
    connection: int
    truth: str | None
    fresh: bool
    prediction: PredictionData | None  # sent when fresh or with a picture; else the driver keeps the last
    status: StatusUpdate
    stats: StatsSnapshot
    events: list[Event]
    final: bool = False
    removed: bool = False
    jpeg: bytes | None = None

    @property
    def worth_keeping(self) -> bool:
        """Dropped last when the driver is slow to collect: it says something that is not said again."""
        return bool(self.events or self.final or self.removed)


def to_record(output: Output, *, picture: bool, quality: int = 80, send_prediction: bool = False) -> Record:
    """The record of `output`; `picture`: with its frame as a JPEG (and the prediction's maps)."""
    frame, pred = output.frame, output.prediction
    data = None
    if pred is not None and (output.fresh or picture or send_prediction):
        data = PredictionData(
            pred.frame.index, pred.frame.source_ts, pred.frame.connection, pred.frame.image.shape[:2],
            pred.step, pred.history, pred.window,
            pred.probs, pred.raw_probs, pred.branch_probs, pred.crop_box, pred.latency_s,
            pred.ticks_since_reset, dict(pred.maps) if picture else {},
        )  # fmt: skip
    jpeg = None
    if picture and frame is not None:
        ok, buf = cv2.imencode(".jpg", frame.image, [cv2.IMWRITE_JPEG_QUALITY, quality])
        jpeg = buf.tobytes() if ok else None
    return Record(
        output.camera,
        frame.image.shape[:2] if frame is not None else (0, 0),
        frame.index if frame is not None else -1,
        frame.source_ts if frame is not None else 0.0,
        frame.connection if frame is not None else 0,
        frame.truth if frame is not None else None,
        output.fresh,
        data,
        output.status,
        output.stats,
        list(output.events),
        output.final,
        output.removed,
        jpeg,
    )


class Rebuilder:
    """Turns a camera's records back into Outputs on the driver, keeping its newest prediction."""

    def __init__(self, class_names: tuple[str, ...], branch_names: tuple[str, ...]) -> None:
        self.class_names, self.branch_names = class_names, branch_names
        self.last: dict[str, Prediction] = {}

    def forget(self, camera: str) -> None:
        self.last.pop(camera, None)

    def output(self, rec: Record) -> Output:
        now = time.monotonic()
        image = no_picture(rec.shape)
        if rec.jpeg is not None:
            decoded = cv2.imdecode(np.frombuffer(rec.jpeg, np.uint8), cv2.IMREAD_COLOR)
            image = decoded if decoded is not None else image
        frame = None
        if rec.index >= 0:
            frame = Frame(image, rec.index, rec.source_ts, now, rec.connection, rec.camera, rec.truth)
        pred = self.last.get(rec.camera)
        if rec.prediction is not None:
            d = rec.prediction
            same = frame is not None and d.index == rec.index and d.connection == rec.connection
            pframe = frame
            if not same:
                made = now - d.latency_s
                pframe = Frame(no_picture(d.shape), d.index, d.source_ts, made, d.connection, rec.camera)
            pred = Prediction(
                pframe, d.step, d.history, d.window, d.probs, d.raw_probs, d.branch_probs, self.branch_names,
                self.class_names, d.maps, d.crop_box, d.latency_s, d.ticks_since_reset,
            )  # fmt: skip
            self.last[rec.camera] = pred
        return Output(
            rec.camera, frame, pred, rec.fresh, rec.status, rec.stats, list(rec.events),
            display=rec.jpeg is not None and frame is not None, removed=rec.removed, final=rec.final,
        )  # fmt: skip


__all__ = ["PredictionData", "Rebuilder", "Record", "no_picture", "to_record"]
