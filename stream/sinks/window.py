"""The window: an OpenCV window with keys (`WindowSink`) and the mosaic of every camera in it
(`MosaicWindow`). Whether a window can open at all is stream.sinks.display's question.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from types import TracebackType
from typing import Self

import cv2
import numpy as np

from stream.errors import SinkError
from stream.output import Output, View
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
        actions = self.window.show(images[0] if len(self.cameras) == 1 else mosaic(images, len(self.cameras)))
        if "quit" in actions:
            self.on_quit()
        if "pause" in actions:
            self.view.toggle_pause()
        if "attention" in actions:
            self.view.cycle_attention()

    def close(self) -> None:
        self.window.close()
