"""Where the recognizer's output goes: a window (with keys), an mp4 file, and a JSONL event log."""

from __future__ import annotations

import errno
import json
import logging
import os
import tempfile
from pathlib import Path
from types import TracebackType
from typing import Self

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
    """Writes frames to a video file at a fixed frame rate: H.264 in a fragmented MP4 (stream.recording).

    The file survives a crash: it is written as one fragment per second, so a killed process (kill -9, a
    second Ctrl-C) leaves a file that plays up to about a second before the end. It also plays in browsers.

    The writer opens on the first frame, with that frame's size. A later frame of another size (e.g. a
    camera that came back at another resolution after a reconnect) is resized to it, with one warning,
    rather than ending the recording. `close()` writes the last fragment; with no frame written, no file
    is created. A write error (full disk, I/O error) raises SinkError naming the file, from `write` or
    `close`; the recording then stops (what was written before it stays playable).
    """

    def __init__(self, path: str | os.PathLike[str], fps: float) -> None:
        self.path = Path(path)
        if not fps > 0:
            raise ValueError(f"fps ({fps}) must be positive")
        self.fps = float(fps)
        # fail before the first frame, not minutes into a run
        folder = self.path.parent
        if not folder.is_dir():
            raise SinkError(f"cannot write video {self.path}: folder {folder} does not exist")
        if self.path.is_dir():
            raise SinkError(f"cannot write video {self.path}: it is a folder")
        try:
            tempfile.TemporaryFile(dir=folder).close()
        except OSError as e:
            raise SinkError(f"cannot write video {self.path}: folder {folder}: {_cause(e)}") from e
        try:
            from stream import recording
        except ImportError as e:
            raise SinkError(f"cannot write video {self.path}: PyAV is not installed (pip install av)") from e
        self._recording = recording
        self.frames_written = 0
        self.size: tuple[int, int] | None = None  # (width, height), fixed by the first frame
        self._writer: recording.FragmentedMp4Writer | None = None
        self._closed = False
        self._failed: SinkError | None = None
        self._warned_resize = False

    def write(self, image: np.ndarray) -> None:
        """Append one (H, W, 3) uint8 BGR frame."""
        if self._failed is not None:
            raise self._failed
        if self._closed:
            raise ValueError(f"video {self.path} is closed")
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(f"video frames must be (H, W, 3) uint8 BGR, got {image.shape} {image.dtype}")
        h, w = image.shape[:2]
        if self.size is None:
            self.size = (w, h)
        if (w, h) != self.size:
            if not self._warned_resize:
                log.warning("video %s: frame size %dx%d resized to %dx%d", self.path, w, h, *self.size)
                self._warned_resize = True
            shrink = w * h > self.size[0] * self.size[1]
            image = cv2.resize(image, self.size, interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
        try:
            if self._writer is None:
                self._writer = self._recording.FragmentedMp4Writer(self.path, self.fps, *self.size)
            self._writer.write(image)
        except self._recording.WRITE_ERRORS as e:
            raise self._fail(e) from e
        self.frames_written += 1

    def _fail(self, e: BaseException) -> SinkError:
        self._failed = SinkError(f"cannot write video {self.path}: {_cause(e)}")
        self._closed = True
        if self._writer is not None:
            self._writer.abort()
            self._writer = None
        return self._failed

    def close(self) -> None:
        """Write the end of the file. Idempotent; raises SinkError if that fails (a full disk)."""
        self._closed = True
        writer, self._writer = self._writer, None
        if writer is not None:
            try:
                writer.close()
            except self._recording.WRITE_ERRORS as e:
                raise self._fail(e) from e

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def _last_byte(path: Path) -> bytes | None:
    """A file's last byte; None if it is empty or cannot be read."""
    try:
        with path.open("rb") as f:
            f.seek(-1, os.SEEK_END)
            return f.read(1)
    except OSError:
        return None


def _cause(e: BaseException) -> str:
    """An OSError's or FFmpeg error's reason, without the path the message names already."""
    reason = getattr(e, "strerror", None)
    return str(reason) if reason else str(e) or type(e).__name__


class EventLog:
    """Appends events to a JSONL file, one `Event.to_dict()` per line, each handed to the OS at once.

    The file is opened for appending when the log is made, so a bad path fails before the run starts and
    the events of earlier runs are kept. Each line goes out whole or not at all: a write that fails part
    way (a full disk) is cut back to the line's start, and raises SinkError naming the file.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.events_written = 0
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_CLOEXEC", 0)
        try:
            self._fd: int | None = os.open(self.path, flags, 0o666)
        except OSError as e:
            raise SinkError(f"cannot write event log {self.path}: {_cause(e)}") from e
        # a half line left by an older run (or another program) must not swallow our first one
        if _last_byte(self.path) not in (None, b"\n"):
            log.warning("event log %s ends in an unfinished line; starting on a new line", self.path)
            try:
                self._write_all(b"\n")
            except OSError as e:
                self.close()
                raise SinkError(f"cannot write event log {self.path}: {_cause(e)}") from e

    def write(self, event: Event) -> None:
        if self._fd is None:
            raise ValueError(f"event log {self.path} is closed")
        try:
            self._write_all((json.dumps(event.to_dict()) + "\n").encode("utf-8"))
        except OSError as e:
            raise SinkError(f"cannot write event log {self.path}: {_cause(e)}") from e
        self.events_written += 1

    def _write_all(self, data: bytes) -> None:
        """One os.write of the whole line; if the OS takes only part of it (a disk filling up), the rest,
        and on any error the file is cut back to where the line began."""
        assert self._fd is not None
        start = os.lseek(self._fd, 0, os.SEEK_END)
        view = memoryview(data)
        try:
            while view:
                n = os.write(self._fd, view)
                if n <= 0:
                    raise OSError(errno.EIO, "the OS took no bytes")
                view = view[n:]
        except OSError:
            if len(view) < len(data):
                try:
                    os.ftruncate(self._fd, start)
                except OSError as e:
                    log.error("event log %s: could not remove a half-written line: %s", self.path, e)
            raise

    def close(self) -> None:
        """Idempotent."""
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
