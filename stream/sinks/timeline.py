"""A video's timeline as a picture (an archive's `timeline.png`): its top classes' probabilities over the
video's seconds, the event threshold, and its events as bars beneath, each class in its own colour. The
class names are not drawn: the report's legend names them (in HTML, where any name can be written)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

# a qualitative palette (Tableau 10 and two more); a model with more classes reuses them in turn
PALETTE = (
    "#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948",
    "#b07aa1", "#ff9da7", "#9c755f", "#a0a0a0", "#17becf", "#7b3fe4",
)  # fmt: skip
SCALE = 2  # drawn at twice the size the report shows it: sharp on high-density screens
WIDTH, HEIGHT = 640, 150  # as shown, in CSS pixels
_LEFT, _RIGHT, _TOP = 30, 12, 8
_LANE, _AXIS = 14, 20  # the events' lane and the time axis beneath the curves
_TICK_STEPS = (0.1, 0.2, 0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 14400, 28800)
_INK, _GRID, _FAINT = (60, 60, 60), (225, 225, 225), (150, 150, 150)  # BGR


@dataclass(frozen=True)
class Action:
    """One action the events found: its start line and its end line as one."""

    label: str
    class_index: int
    start: float  # seconds into the video
    end: float | None  # None: still going when the run stopped
    peak: float


def actions(events: Iterable[dict[str, Any]]) -> list[Action]:
    """The actions of an archive's event lines: each end line (which repeats its start), and a start line
    whose end never came."""
    found: list[Action] = []
    open_: Action | None = None
    for e in events:
        action = Action(e["label"], int(e["class_index"]), float(e["start_ts"]),
                        None if e["end_ts"] is None else float(e["end_ts"]), float(e["peak"]))  # fmt: skip
        if e["event"] == "start":
            open_ = action
        else:
            found.append(action)
            open_ = None
    return [*found, open_] if open_ is not None else found


def class_colour(index: int) -> str:
    """The class's colour in the picture and in the report's legend (#rrggbb)."""
    return PALETTE[index % len(PALETTE)]


def _bgr(hex_colour: str) -> tuple[int, int, int]:
    r, g, b = (int(hex_colour[i : i + 2], 16) for i in (1, 3, 5))
    return b, g, r


def clock(seconds: float) -> str:
    """Seconds as the report writes them: 4.3 s, 1:02.5, 1:02:03."""
    if seconds < 60:
        return f"{seconds:.1f} s"
    m, s = divmod(seconds, 60)
    if m < 60:
        return f"{int(m)}:{s:04.1f}"
    h, m = divmod(int(m), 60)
    return f"{h}:{m:02d}:{int(s):02d}"


def top_classes(probs: np.ndarray, found: Sequence[Action], duration: float, most: int = 5) -> list[int]:
    """The classes drawn: those of the actions found (the longest in all first), then the most probable on
    average, up to `most` (every class with an action is drawn even past it: its bars need their curve).
    `probs` (N, K)."""
    time_in: dict[int, float] = {}
    for a in found:
        end = duration if a.end is None else a.end
        time_in[a.class_index] = time_in.get(a.class_index, 0.0) + end - a.start
    chosen = sorted(time_in, key=lambda c: -time_in[c])
    if len(probs):
        for c in np.argsort(-probs.mean(axis=0), kind="stable"):
            if len(chosen) >= most:
                break
            if int(c) not in chosen:
                chosen.append(int(c))
    return chosen


def _tick_step(duration: float, most: int = 10) -> float:
    return next((s for s in _TICK_STEPS if duration / s <= most), _TICK_STEPS[-1])


def _tick_label(t: float, duration: float) -> str:
    if duration < 60:
        return f"{t:g}s"
    m, s = divmod(round(t), 60)
    return f"{m}:{s:02d}" if m < 60 else f"{m // 60}:{m % 60:02d}:{s:02d}"


def _curve(times: np.ndarray, values: np.ndarray, x0: int, width: int, duration: float) -> np.ndarray:
    """The points of one class's curve, (N, 2) int32: one per pixel column (its mean) where there are more
    predictions than columns."""
    x = x0 + times / duration * (width - 1)
    if len(times) > width:
        col = np.clip(np.round(x - x0).astype(int), 0, width - 1)
        counts = np.bincount(col, minlength=width)
        sums = np.bincount(col, weights=values, minlength=width)
        keep = counts > 0
        x, values = (np.arange(width) + x0)[keep], sums[keep] / counts[keep]
    return np.stack([x, values], axis=1)


def draw_timeline(
    times: np.ndarray,
    probs: np.ndarray,
    found: Sequence[Action],
    duration: float,
    classes: Sequence[int],
    enter: float,
) -> np.ndarray:
    """The picture, (HEIGHT*SCALE, WIDTH*SCALE, 3) uint8 BGR. `times` (N,): seconds into the video of each
    prediction; `probs` (N, K); `found`: the actions, drawn as bars; `classes`: the curves drawn."""
    k = SCALE
    image = np.full((HEIGHT * k, WIDTH * k, 3), 255, np.uint8)
    x0, x1 = _LEFT * k, (WIDTH - _RIGHT) * k
    y0, y1 = _TOP * k, (HEIGHT - _LANE - _AXIS) * k  # the curves' area: probability 1 at y0, 0 at y1
    lane0, lane1 = y1 + 3 * k, y1 + (_LANE - 2) * k
    duration = max(duration, float(times[-1]) if len(times) else 0.0, 1e-3)
    font, small = cv2.FONT_HERSHEY_SIMPLEX, 0.4 * k

    def x_at(t: float) -> int:
        return round(x0 + min(max(t, 0.0), duration) / duration * (x1 - x0))

    def y_at(p: float) -> int:
        return round(y1 - p * (y1 - y0))

    step = _tick_step(duration)
    for t in np.arange(0.0, duration + 1e-9, step):
        x = x_at(float(t))
        cv2.line(image, (x, y0), (x, y1), _GRID, 1)
        label = _tick_label(float(t), duration)
        (w, _), _ = cv2.getTextSize(label, font, small, 1)
        cv2.putText(image, label, (min(max(x - w // 2, 0), WIDTH * k - w), HEIGHT * k - 5 * k), font,
                    small, _INK, 1, cv2.LINE_AA)  # fmt: skip
    for p in (0.0, 0.5, 1.0):
        cv2.line(image, (x0, y_at(p)), (x1, y_at(p)), _GRID, 1)
        cv2.putText(image, f"{p:g}", (4 * k, y_at(p) + 4 * k), font, small, _INK, 1, cv2.LINE_AA)
    for a in found:  # a faint band over the curves, a bar in the events' lane
        colour = _bgr(class_colour(a.class_index))
        xa = x_at(a.start)
        xb = max(x_at(duration if a.end is None else a.end), xa + k)
        band = image[y0:y1, xa:xb]
        band[:] = (0.88 * band + 0.12 * np.array(colour)).astype(np.uint8)
        cv2.rectangle(image, (xa, lane0), (xb, lane1), colour, -1)
    dash = 6 * k
    for x in range(x0, x1, 2 * dash):  # the threshold an event starts at
        cv2.line(image, (x, y_at(enter)), (min(x + dash, x1), y_at(enter)), _FAINT, 1, cv2.LINE_AA)
    if len(times):
        for c in reversed(list(classes)):  # the first (longest in events) drawn last: on top
            points = _curve(times, probs[:, c], x0, x1 - x0, duration)
            pts = np.stack([points[:, 0], [y_at(float(p)) for p in points[:, 1]]], axis=1)
            cv2.polylines(image, [pts.round().astype(np.int32)], False, _bgr(class_colour(c)), k + 1,
                          cv2.LINE_AA)  # fmt: skip
    else:
        cv2.putText(image, "no predictions", (x0 + 8 * k, (y0 + y1) // 2), font, 0.5 * k, _FAINT, 1,
                    cv2.LINE_AA)  # fmt: skip
    cv2.rectangle(image, (x0, y0), (x1, y1), _FAINT, 1)
    return image


def write_timeline(path: Path, image: np.ndarray) -> None:
    if not cv2.imwrite(str(path), image):
        raise OSError(f"cannot write {path} (OpenCV could not encode the PNG)")


__all__ = [
    "HEIGHT",
    "PALETTE",
    "WIDTH",
    "Action",
    "actions",
    "class_colour",
    "clock",
    "draw_timeline",
    "top_classes",
    "write_timeline",
]
