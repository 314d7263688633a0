"""Video files: one camera's frames with their overlay into an .mp4 (`VideoSink`), and every camera's
into its own (`VideoFiles`, the sink of --save).
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from types import TracebackType
from typing import Self

import cv2
import numpy as np

from stream.errors import SinkError, os_reason
from stream.output import Output, View

log = logging.getLogger(__name__)


class VideoSink:
    """Writes frames to a video file at a fixed frame rate: H.264 in a fragmented MP4 (sinks/recording.py).

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
            raise SinkError(f"cannot write video {self.path}: folder {folder}: {os_reason(e)}") from e
        try:
            from stream.sinks import recording
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
        self._failed = SinkError(f"cannot write video {self.path}: {os_reason(e)}")
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


class VideoFiles:
    """Every processed frame of each camera, with its overlay, into that camera's .mp4."""

    def __init__(self, paths: Mapping[str, Path], fps: Callable[[str], float], view: View) -> None:
        """`fps(camera)` is asked when that camera's first frame is written (a capture learns its source's
        rate only once it has opened it)."""
        self.paths, self.fps, self.view = dict(paths), fps, view
        self.videos: dict[str, VideoSink] = {}
        self._closed_frames: dict[str, int] = {}  # frames of the videos of cameras removed at run time

    def write(self, output: Output) -> None:
        if output.removed and output.camera in self.videos:  # finalised now (one added again gets a new file)
            video = self.videos.pop(output.camera)
            video.close()
            done = self._closed_frames
            done[output.camera] = done.get(output.camera, 0) + video.frames_written
            return
        path = self.paths.get(output.camera)
        if path is None or not output.display:
            return
        video = self.videos.get(output.camera)
        if video is None:
            video = self.videos[output.camera] = VideoSink(path, self.fps(output.camera))
        video.write(output.overlay(self.view))

    def idle(self) -> None:
        pass

    def close(self) -> None:
        for video in self.videos.values():
            video.close()

    def frames_written(self, camera: str) -> int:
        video = self.videos.get(camera)
        return (video.frames_written if video is not None else 0) + self._closed_frames.get(camera, 0)
