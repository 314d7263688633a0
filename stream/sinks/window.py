"""The window: an OpenCV window with keys (`WindowSink`) and the mosaic of every camera in it
(`MosaicWindow`), with a strip under the picture that names the keys and shows the heat map's colour scale
(`with_legend`). Whether a window can open at all is stream.sinks.display's question.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from types import TracebackType
from typing import Self

import cv2
import numpy as np

from glanet.heatmap import heatmap
from stream.errors import SinkError
from stream.output import Output, View
from stream.overlay import ATTENTION_OFF
from stream.sinks.display import has_display

# Keys polled by WindowSink. Lower case only: cv2.waitKey returns the low byte of the key code, and
# some toolkits' arrow keys (0xFF51..0xFF54) come out as "Q".."T".
_KEY_ACTIONS = {
    ord("q"): "quit",
    27: "quit",  # Esc
    ord(" "): "pause",
    ord("p"): "pause",
    ord("a"): "attention",
}


def key_action(code: int) -> str | None:
    """The action for a cv2.waitKey code: "quit" (q, Esc), "pause" (space, p), "attention" (a), or None."""
    return _KEY_ACTIONS.get(code)


class WindowSink:
    """An OpenCV window that shows frames and reports the keys pressed.

    `show` returns the actions since the last call: "quit" (q, Esc, or the window was closed),
    "pause" (space or p: the caller toggles pausing), "attention" (a: the caller cycles SA → LA → none).
    """

    def __init__(self, title: str) -> None:
        if not has_display():
            raise SinkError(
                f"cannot open window {title!r}: no display (DISPLAY/WAYLAND_DISPLAY unset, or OpenCV "
                "without a GUI toolkit, e.g. opencv-python-headless)"
            )
        self.title = title
        self._opened = False

    def show(self, image: np.ndarray) -> set[str]:
        if not self._opened:
            cv2.namedWindow(self.title, cv2.WINDOW_NORMAL | cv2.WINDOW_KEEPRATIO)
            cv2.resizeWindow(self.title, image.shape[1], image.shape[0])
            self._opened = True
        cv2.imshow(self.title, image)
        actions: set[str] = set()
        action = key_action(cv2.waitKey(1))
        if action is not None:
            actions.add(action)
        if cv2.getWindowProperty(self.title, cv2.WND_PROP_VISIBLE) < 1:  # closed with the mouse
            actions.add("quit")
        return actions

    def close(self) -> None:
        if self._opened:
            self._opened = False
            try:
                cv2.destroyWindow(self.title)
                cv2.waitKey(1)  # lets the toolkit process the destroy event
            except cv2.error:  # already closed by the user
                pass

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def mosaic(images: Sequence[np.ndarray], count: int, max_width: int = 1920) -> np.ndarray:
    """`count` tiles in a near-square grid, each the size of the first image (scaled so the grid fits
    `max_width`); missing tiles are black."""
    cols = int(np.ceil(np.sqrt(count)))
    rows = int(np.ceil(count / cols))
    h, w = images[0].shape[:2]
    scale = min(1.0, max_width / (cols * w))
    tw, th = max(1, int(w * scale)), max(1, int(h * scale))
    grid = np.zeros((rows * th, cols * tw, 3), np.uint8)
    for i, image in enumerate(images[:count]):
        r, c = divmod(i, cols)
        if image.shape[:2] != (th, tw):
            image = cv2.resize(image, (tw, th), interpolation=cv2.INTER_AREA)
        grid[r * th : (r + 1) * th, c * tw : (c + 1) * tw] = image
    return grid


_LEGEND_BG = (28, 28, 28)  # the overlay's panel colour
_LEGEND_TEXT = (210, 210, 210)
_LEGEND_FONT = cv2.FONT_HERSHEY_SIMPLEX


def legend_text(view: View) -> str:
    """The keys, as the window's strip names them: what each does now."""
    pause = "resume" if view.paused.is_set() else "pause"
    return f"q: quit   space: {pause}   a: next heat map"


def with_legend(image: np.ndarray, view: View) -> np.ndarray:
    """`image` (H, W, 3) with a strip below it: the keys on the left and, on the right, the colour scale of
    the heat map shown (the JET colouring of glanet.heatmap, low to high) or "heat map off". Returns a new
    (H + strip, W, 3) uint8 image; the picture itself is untouched, so no key hides what the model saw."""
    strip = _legend_strip(image.shape[1], view.attention, legend_text(view))
    return np.concatenate([image, strip])


@functools.lru_cache(maxsize=16)
def _legend_strip(w: int, attention: str, keys: str) -> np.ndarray:
    """The strip of `with_legend`, drawn once per width and state (it is shown at every frame)."""
    u = min(1.2, max(0.8, w / 700))  # about the overlay's own text size (0.5 font scale on 480 px)
    font, thick, pad = 0.5 * u, 1, round(8 * u)
    strip_h = round(30 * u)
    out = np.empty((strip_h, w, 3), np.uint8)
    out[:] = _LEGEND_BG
    (_, text_h), _ = cv2.getTextSize("Hq", _LEGEND_FONT, font, thick)
    base = (strip_h + text_h) // 2

    def put(text: str, x: int) -> None:
        cv2.putText(out, text, (x, base), _LEGEND_FONT, font, _LEGEND_TEXT, thick, cv2.LINE_AA)

    def width(text: str) -> int:
        return cv2.getTextSize(text, _LEGEND_FONT, font, thick)[0][0]

    put(keys, pad)
    right = w - pad
    if attention == ATTENTION_OFF:
        put("heat map off", right - width("heat map off"))
    else:
        bar_w, bar_h = round(min(140 * u, w / 5)), round(12 * u)
        high_x = right - width("high")
        put("high", high_x)
        x1 = high_x - pad // 2
        x0 = x1 - bar_w
        y0 = (strip_h - bar_h) // 2
        ramp = np.linspace(0.0, 1.0, 256, dtype=np.float32)[None, :]  # (1, 256): low at the left
        out[y0 : y0 + bar_h, x0:x1] = heatmap(ramp, bar_w, bar_h)
        label = f"{attention.upper()} low"
        put(label, x0 - pad // 2 - width(label))
    out.setflags(write=False)  # shared by every frame of that state
    return out


class MosaicWindow:
    """One window: a camera's overlay, or a grid of every camera's newest one; keys act on the View."""

    def __init__(self, title: str, cameras: Sequence[str], view: View, on_quit: Callable[[], None]) -> None:
        self.window = WindowSink(title)
        self.cameras = tuple(cameras)
        self.view, self.on_quit = view, on_quit
        self.tiles: dict[str, Output] = {}

    def write(self, output: Output) -> None:
        if output.removed:
            self.tiles.pop(output.camera, None)
            self.cameras = tuple(c for c in self.cameras if c != output.camera)
        elif output.display:
            if output.camera not in self.cameras:  # added while running
                self.cameras = (*self.cameras, output.camera)
            self.tiles[output.camera] = output
        self._show()

    def idle(self) -> None:
        self._show()

    def _show(self) -> None:
        if not self.tiles:
            return
        images = [self.tiles[c].overlay(self.view) for c in self.cameras if c in self.tiles]
        picture = images[0] if len(self.cameras) == 1 else mosaic(images, len(self.cameras))
        actions = self.window.show(with_legend(picture, self.view))
        if "quit" in actions:
            self.on_quit()
        if "pause" in actions:
            self.view.toggle_pause()
        if "attention" in actions:
            self.view.cycle_attention()

    def close(self) -> None:
        self.window.close()
