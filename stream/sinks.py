"""Where the recognizer's output goes: a window (with keys), an mp4 file, and a JSONL event log."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from types import TracebackType
from typing import IO, Self

import cv2
import numpy as np

from stream.display import _opencv_has_gui, has_display  # noqa: F401
from stream.errors import StreamError
from stream.types import Event

log = logging.getLogger(__name__)

# Keys polled by WindowSink. Lower case only: cv2.waitKey returns the low byte of the key code, and
# some toolkits' arrow keys (0xFF51..0xFF54) come out as "Q".."T".
_KEY_ACTIONS = {
    ord("q"): "quit",
    27: "quit",  # Esc
    ord(" "): "pause",
    ord("p"): "pause",
    ord("a"): "attention",
}


class SinkError(StreamError):
    """A sink could not be opened or written; the message is one line naming the path."""


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


class VideoSink:
    """Writes frames to an mp4 file (fourcc "mp4v") at a fixed frame rate.

    The writer opens on the first frame, with that frame's size. A later frame of another size (e.g. a
    camera that came back at another resolution after a reconnect) is resized to it, with one warning,
    rather than ending the recording. The file is complete once `close()` has run; with no frame
    written, no file is created.
    """

    def __init__(self, path: str | os.PathLike[str], fps: float) -> None:
        self.path = Path(path)
        if not fps > 0:
            raise ValueError(f"fps ({fps}) must be positive")
        self.fps = float(fps)
        if not self.path.parent.is_dir():  # fail before the first frame, not minutes into a run
            raise SinkError(f"cannot write video {self.path}: folder {self.path.parent} does not exist")
        self.frames_written = 0
        self.size: tuple[int, int] | None = None  # (width, height), fixed by the first frame
        self._writer: cv2.VideoWriter | None = None
        self._closed = False
        self._warned_resize = False

    def write(self, image: np.ndarray) -> None:
        """Append one (H, W, 3) uint8 BGR frame."""
        if self._closed:
            raise ValueError(f"video {self.path} is closed")
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(f"video frames must be (H, W, 3) uint8 BGR, got {image.shape} {image.dtype}")
        h, w = image.shape[:2]
        if self._writer is None:
            self._open(w, h)
        assert self.size is not None and self._writer is not None
        if (w, h) != self.size:
            if not self._warned_resize:
                log.warning("video %s: frame size %dx%d resized to %dx%d", self.path, w, h, *self.size)
                self._warned_resize = True
            shrink = w * h > self.size[0] * self.size[1]
            image = cv2.resize(image, self.size, interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
        self._writer.write(np.ascontiguousarray(image))
        self.frames_written += 1

    def _open(self, width: int, height: int) -> None:
        fourcc = cv2.VideoWriter.fourcc(*"mp4v")
        writer = cv2.VideoWriter(str(self.path), fourcc, self.fps, (width, height))
        if not writer.isOpened():
            raise SinkError(f"cannot write video {self.path}: OpenCV could not open it for mp4v")
        self._writer, self.size = writer, (width, height)

    def close(self) -> None:
        """Finalise the file. Idempotent."""
        self._closed = True
        if self._writer is not None:
            self._writer.release()
            self._writer = None

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


class EventLog:
    """Appends events to a JSONL file, one `Event.to_dict()` per line, flushed at once.

    The file is opened for appending when the log is made, so a bad path fails before the run starts and
    the events of earlier runs are kept.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.events_written = 0
        try:
            self._file: IO[str] | None = self.path.open("a", encoding="utf-8")
        except OSError as e:
            raise SinkError(f"cannot write event log {self.path}: {e.strerror or e}") from e

    def write(self, event: Event) -> None:
        if self._file is None:
            raise ValueError(f"event log {self.path} is closed")
        self._file.write(json.dumps(event.to_dict()) + "\n")
        self._file.flush()  # to the OS now: a killed process loses nothing
        self.events_written += 1

    def close(self) -> None:
        """Idempotent."""
        if self._file is not None:
            self._file.close()
            self._file = None

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
