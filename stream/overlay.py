"""Drawing on frames: SA/LA heat maps over the model's crop, and a panel with the top classes and stats.

Every function here is pure: it returns a new image and leaves its inputs untouched.

Output size rule (`overlay_size`), so that a video writer gets a constant size for a given source:
- frames shorter than 360 px are first enlarged by the smallest integer factor k that makes them at
  least 360 px high (nearest neighbour, so pixels stay sharp), because text on a 96-px frame is not
  legible;
- every size below (font, line height, panel width) scales with that height, u = height / 480;
- the panel (250·u px wide) is drawn inside the frame, translucent, at the top left, when the frame is
  at least three panel widths wide (wide frames such as 16:9); otherwise it is drawn beside the frame on
  a canvas extended to the right by the panel width (4:3 and narrower frames), so it never hides the
  model's crop.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import NamedTuple

import cv2
import numpy as np

from glanet.heatmap import heatmap
from stream.types import Prediction, SourceStatus, StatsSnapshot, StatusUpdate

ATTENTION_OFF = "none"

_MIN_HEIGHT = 360  # frames are enlarged to at least this height, for legible text
_FONT = cv2.FONT_HERSHEY_SIMPLEX
_UNICODE_TEXT = int(cv2.__version__.split(".")[0]) >= 5  # OpenCV 5 draws any text with a built-in font
_WHITE = (255, 255, 255)
_GREY = (190, 190, 190)
_AMBER = (0, 190, 255)
_GREEN = (90, 220, 90)
_PANEL_BG = (28, 28, 28)
_BAR_BG = (70, 70, 70)
_BAR_TOP1 = (40, 150, 40)
_BAR_OTHER = (150, 100, 40)
_BANNER_BG = (0, 0, 150)
_BOX = (255, 255, 0)


def blend_attention(
    image: np.ndarray,
    attn: np.ndarray,
    box: tuple[float, float, float, float],
    alpha: float = 0.45,
) -> np.ndarray:
    """A copy of `image` with the heat map of `attn` alpha-blended into `box` = (x0, y0, x1, y1).

    The heat map spans the whole box, so it stays aligned with what the model saw; only the part of the
    box inside the image is drawn. Pixels outside the box are unchanged.
    """
    _check_image(image)
    out = image.copy()
    _blend_into(out, attn, box, alpha)
    return out


@dataclass(frozen=True)
class _Layout:
    scale: int  # integer enlargement of the input frame
    width: int  # the (enlarged) frame
    height: int
    unit: float  # height / 480: sizes are in units of a 480-px frame
    font: float
    thick: int
    line: int  # line height
    pad: int
    panel_w: int
    inside: bool  # panel over the frame (True) or beside it on an extended canvas

    @property
    def out_size(self) -> tuple[int, int]:
        return (self.width if self.inside else self.width + self.panel_w), self.height


@functools.lru_cache(maxsize=32)
def _layout(width: int, height: int) -> _Layout:
    if width < 1 or height < 1:
        raise ValueError(f"frame size must be positive, got {width}x{height}")
    k = max(1, math.ceil(_MIN_HEIGHT / height))
    w, h = width * k, height * k
    u = h / 480.0
    panel_w = round(250 * u)
    return _Layout(
        scale=k,
        width=w,
        height=h,
        unit=u,
        font=0.5 * u,
        thick=max(1, round(u)),
        line=round(20 * u),
        pad=round(8 * u),
        panel_w=panel_w,
        inside=w >= 3 * panel_w,
    )


def overlay_size(width: int, height: int) -> tuple[int, int]:
    """(width, height) of `draw_overlay`'s output for an input frame of this size (see the module doc)."""
    return _layout(int(width), int(height)).out_size


def draw_overlay(
    image: np.ndarray,
    prediction: Prediction | None,
    *,
    attention: str = "sa",
    stats: StatsSnapshot | None = None,
    status: StatusUpdate | None = None,
    paused: bool = False,
    note: str = "",
    label_camera: bool = True,
    text: bool = True,
) -> np.ndarray:
    """The frame with the attention heat map, crop box, a panel (top-5, per-branch top class, FPS,
    latency, warm-up), a banner when the source is not live, and "PAUSED".

    image: (H, W, 3) uint8 BGR; the crop box is taken in `prediction.frame`'s pixels and scaled to
    `image` if their sizes differ. attention: the name of one of the model's maps ("sa", "la") or "none".
    note: a line for the panel about the model (e.g. what it was trained on). label_camera: the frame's
    camera name as the panel's first row (off for a lone camera's run). The source status comes from
    `status`, or from `stats` when `status` is None. text: False draws the heat map and the crop box only
    (no panel, banner or "PAUSED": a web page says those in its own text), on the enlarged frame itself.
    Returns a new (h, w, 3) uint8 image with (w, h) = overlay_size(W, H) (the enlarged frame's size when
    `text` is False).
    """
    _check_image(image)
    if prediction is not None and attention != "none" and attention not in prediction.maps:
        raise ValueError(f"attention = {attention!r} must be one of {', '.join([*prediction.maps, 'none'])}")
    lay = _layout(image.shape[1], image.shape[0])
    base = image
    if lay.scale > 1:
        base = cv2.resize(image, (lay.width, lay.height), interpolation=cv2.INTER_NEAREST)

    if lay.inside or not text:
        out = base.copy()
        video = out
    else:
        out = np.empty((lay.height, lay.width + lay.panel_w, 3), np.uint8)
        out[:, : lay.width] = base
        out[:, lay.width :] = _PANEL_BG
        video = out[:, : lay.width]  # a view: drawing on it draws on `out`

    if prediction is not None:
        box = _scaled_box(prediction, image.shape, lay.scale)
        if attention != "none":
            _blend_into(video, prediction.maps[attention], box)
        p0 = (round(box[0]), round(box[1]))
        p1 = (round(box[2]) - 1, round(box[3]) - 1)
        cv2.rectangle(video, p0, p1, _BOX, lay.thick, cv2.LINE_AA)

    if not text:
        return out
    _draw_panel(out, lay, prediction, attention, stats, note, label_camera)
    banner = _status_lines(status, stats)
    if banner:
        _draw_banner(video, lay, banner)
    if paused:
        _draw_paused(video, lay)
    return out


# --- internals ---------------------------------------------------------------------------------------


def _check_image(image: np.ndarray) -> None:
    if not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        shape = getattr(image, "shape", None)
        dtype = getattr(image, "dtype", type(image).__name__)
        raise ValueError(f"image must be (H, W, 3) uint8 BGR, got shape {shape} dtype {dtype}")


def _blend_into(
    out: np.ndarray, attn: np.ndarray, box: tuple[float, float, float, float], alpha: float = 0.45
) -> None:
    """Blend the heat map into `out` in place, over the part of `box` inside `out`."""
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha = {alpha} must be in [0, 1]")
    bx0, by0, bx1, by1 = (round(float(v)) for v in box)
    bw, bh = bx1 - bx0, by1 - by0
    if bw < 1 or bh < 1:
        return
    h, w = out.shape[:2]
    x0, y0, x1, y1 = max(bx0, 0), max(by0, 0), min(bx1, w), min(by1, h)
    if x1 <= x0 or y1 <= y0:
        return
    heat = heatmap(attn, bw, bh)[y0 - by0 : y1 - by0, x0 - bx0 : x1 - bx0]
    roi = out[y0:y1, x0:x1]
    cv2.addWeighted(heat, alpha, roi, 1.0 - alpha, 0.0, dst=roi)


def _scaled_box(prediction: Prediction, shape: tuple[int, ...], k: int) -> tuple[float, float, float, float]:
    fh, fw = prediction.frame.image.shape[:2]
    sx, sy = k * shape[1] / fw, k * shape[0] / fh
    x0, y0, x1, y1 = prediction.crop_box
    return x0 * sx, y0 * sy, x1 * sx, y1 * sy


def _drawable(text: str) -> str:
    if _UNICODE_TEXT:
        return text
    return text.encode("ascii", "replace").decode("ascii")  # OpenCV 4's Hershey fonts draw ASCII only


def _text_w(text: str, lay: _Layout) -> int:
    return cv2.getTextSize(text, _FONT, lay.font, lay.thick)[0][0]


def _fit(text: str, max_w: int, lay: _Layout) -> str:
    """`text`, cut and ended with ".." if it is wider than max_w pixels."""
    text = _drawable(text)
    if _text_w(text, lay) <= max_w:
        return text
    lo, hi = 0, len(text)  # the longest prefix that fits, by bisection
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if _text_w(text[:mid] + "..", lay) <= max_w:
            lo = mid
        else:
            hi = mid - 1
    return text[:lo] + ".."


def _put(img: np.ndarray, text: str, x: int, y: int, lay: _Layout, color: tuple[int, int, int]) -> None:
    """Text on the line whose top is at y."""
    base = y + round(lay.line * 0.72)
    cv2.putText(img, text, (x, base), _FONT, lay.font, color, lay.thick, cv2.LINE_AA)


def _fmt_ms(v: float) -> str:
    return "-" if not math.isfinite(v) else f"{v:.0f} ms"


class _Row(NamedTuple):
    text: str
    right: str = ""  # right-aligned (a percentage)
    color: tuple[int, int, int] = _WHITE
    frac: float | None = None  # a bar behind the text, filled to this fraction
    bar: tuple[int, int, int] = _BAR_OTHER


def _panel_rows(
    prediction: Prediction | None,
    attention: str,
    stats: StatsSnapshot | None,
    max_w: int,
    lay: _Layout,
    note: str = "",
    label_camera: bool = True,
) -> list[_Row]:
    rows: list[_Row] = []
    label = "attention: off" if attention == "none" else f"attention: {attention.upper()}"
    if label_camera and prediction is not None and prediction.frame.camera:
        rows.append(_Row(prediction.frame.camera))
    if prediction is None:
        rows += [_Row("no prediction yet", color=_AMBER), _Row(label, color=_GREY)]
    else:
        rows.append(_Row(label, f"step {prediction.step}", _GREY))
        if not prediction.warm:
            frac = prediction.history / max(prediction.window, 1)
            rows.append(_Row(f"warming up {prediction.history}/{prediction.window}", frac=frac, bar=_AMBER))
        top = prediction.top(5)
        for i, (name, p) in enumerate(top):
            rows.append(_Row(name, f"{100 * p:.1f}%", frac=p, bar=_BAR_TOP1 if i == 0 else _BAR_OTHER))
        truth = prediction.frame.truth
        if truth is not None:  # the demo knows what it shows: let the viewer judge the model
            rows.append(_Row(f"truth: {truth}", color=_GREEN if top[0][0] == truth else _AMBER))
        sp = np.asarray(prediction.branch_probs)
        for s, sname in enumerate(prediction.branch_names[: sp.shape[0]]):
            i = int(np.argmax(sp[s]))
            rows.append(_Row(f"{sname}: {prediction.class_names[i]}", f"{100 * sp[s, i]:.0f}%", _GREY))
    if stats is not None:
        line, n = "fps", 0
        for k, v in stats.fps.items():  # greedy wrap: as many stages per line as fit
            item = f"{k} {v:.1f}"
            if n and _text_w(_drawable(f"{line}  {item}"), lay) > max_w:
                rows.append(_Row(line, color=_GREY))
                line, n = "   ", 0
            line, n = f"{line}  {item}", n + 1
        if n:
            rows.append(_Row(line, color=_GREY))
        lat = f"latency p50 {_fmt_ms(stats.latency_p50_ms)}  p95 {_fmt_ms(stats.latency_p95_ms)}"
        rows.append(_Row(lat, color=_GREY))
    if note:
        rows.append(_Row(note, color=_AMBER))
    return rows


def _draw_panel(
    out: np.ndarray,
    lay: _Layout,
    prediction: Prediction | None,
    attention: str,
    stats: StatsSnapshot | None,
    note: str = "",
    label_camera: bool = True,
) -> None:
    x_panel = 0 if lay.inside else lay.width
    inner_x = x_panel + lay.pad
    inner_w = lay.panel_w - 2 * lay.pad
    rows = _panel_rows(prediction, attention, stats, inner_w, lay, note, label_camera)
    rows = rows[: max(1, (lay.height - 2 * lay.pad) // lay.line)]
    if lay.inside:  # darken the frame behind the panel so the text reads on any picture
        y1 = min(lay.height, 2 * lay.pad + len(rows) * lay.line)
        roi = out[:y1, x_panel : x_panel + lay.panel_w]
        cv2.convertScaleAbs(roi, dst=roi, alpha=0.3)
    y = lay.pad
    gap = max(1, round(2 * lay.unit))
    for row in rows:
        if row.frac is not None:
            top, bottom = y + gap, y + lay.line - gap
            cv2.rectangle(out, (inner_x, top), (inner_x + inner_w - 1, bottom), _BAR_BG, -1)
            fill = round(inner_w * min(max(float(row.frac), 0.0), 1.0))
            if fill > 0:
                cv2.rectangle(out, (inner_x, top), (inner_x + fill - 1, bottom), row.bar, -1)
        avail = inner_w - 4 * gap
        if row.right:
            rw = _text_w(row.right, lay)
            _put(out, row.right, inner_x + inner_w - 2 * gap - rw, y, lay, row.color)
            avail -= rw + 3 * gap
        _put(out, _fit(row.text, avail, lay), inner_x + 2 * gap, y, lay, row.color)
        y += lay.line


def _status_lines(status: StatusUpdate | None, stats: StatsSnapshot | None) -> list[str]:
    if status is not None:
        st, msg, attempt, retry = status.status, status.message, status.attempt, status.retry_in_s
    elif stats is not None:
        st, msg, attempt, retry = stats.status, stats.status_message, 0, 0.0
    else:
        return []
    if st is SourceStatus.LIVE:
        return []
    if st is SourceStatus.RECONNECTING and attempt > 0:
        head = f"reconnecting (attempt {attempt}, retry in {retry:.1f} s)"
    else:
        head = st.value
    return [head, msg] if msg else [head]


def _draw_banner(video: np.ndarray, lay: _Layout, lines: list[str]) -> None:
    h, w = video.shape[:2]
    bh = len(lines) * lay.line + 2 * lay.pad
    y0 = max(0, h - bh)
    roi = video[y0:h]
    bg = np.empty_like(roi)
    bg[:] = _BANNER_BG
    cv2.addWeighted(bg, 0.6, roi, 0.4, 0.0, dst=roi)
    y = y0 + lay.pad
    for i, text in enumerate(lines):
        _put(video, _fit(text, w - 2 * lay.pad, lay), lay.pad, y, lay, _WHITE if i == 0 else _GREY)
        y += lay.line


def _draw_paused(video: np.ndarray, lay: _Layout) -> None:
    h, w = video.shape[:2]
    scale, thick = 2.5 * lay.font, max(2, 2 * lay.thick)
    (tw, th), _ = cv2.getTextSize("PAUSED", _FONT, scale, thick)
    org = ((w - tw) // 2, (h + th) // 2)
    cv2.putText(video, "PAUSED", org, _FONT, scale, (0, 0, 0), thick + 2 * lay.thick, cv2.LINE_AA)
    cv2.putText(video, "PAUSED", org, _FONT, scale, _WHITE, thick, cv2.LINE_AA)
