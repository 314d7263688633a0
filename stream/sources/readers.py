"""Frame sources: webcam, network stream (RTSP/HTTP), video file, folder of frames, and the live demo.

A source is opened, read frame by frame, and closed, all from one capture thread. `read()` returns
`(image, source_ts)`, `None` at the end of a file, raises `DecodeError` for one bad frame (counted,
skipped) and `SourceLost` when a live source stops delivering (the capture thread reconnects).
`parse_source` turns the `--source` argument into a factory that makes a fresh source per connection.
A network source learns at open whether it is live: an http(s) URL to a video file (a finite frame
count) sets `live = False` and is then read like a local file; the capture reads `live` after `open`.
Webcams and local files are read with OpenCV; network streams with PyAV (stream/sources/network.py), outside
OpenCV's process-wide FFmpeg lock, so that a camera that hangs in its open holds up no other camera.
"""

from __future__ import annotations

import logging
import math
import os
import re
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from glanet.data.synth_live import LiveSynth
from stream.errors import DecodeError, SourceError, SourceLost
from stream.sources.source import URL_START, Source, check_image, redact

log = logging.getLogger(__name__)

NETWORK_SCHEMES = ("rtsp", "rtsps", "rtmp", "http", "https")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
_SCHEME_TOKEN = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*")
# A file read that fails this many times more than the frames left is at its end (the data ran out).
MAX_BAD_READS = 8


def _nominal_fps(cap: cv2.VideoCapture) -> float | None:
    fps = cap.get(cv2.CAP_PROP_FPS)
    return fps if 0 < fps < 1000 else None


def _frame_count(cap: cv2.VideoCapture) -> int | None:
    """The container's frame count, or None for a stream without one (FFmpeg reports 0 or a negative
    or absurd number when the duration is unknown)."""
    count = cap.get(cv2.CAP_PROP_FRAME_COUNT)
    return int(count) if math.isfinite(count) and 0 < count < 2**31 else None


def missing_webcam(index: int, platform: str = sys.platform) -> str | None:
    """Why webcam `index` is certainly not there, or None where it may be. On Linux a camera is
    /dev/video<index> (V4L2), so its absence is told at once, before the model loads and without OpenCV
    probing its capture backends; macOS and Windows name cameras otherwise, and are left to OpenCV."""
    device = Path(f"/dev/video{index}")
    if platform.startswith("linux") and Path("/dev").is_dir() and not device.exists():
        return f"no webcam {index}: {device} does not exist (no camera on this machine?)"
    return None


class OpenCVSource(Source):
    """A webcam (device index) or a local video file, through cv2.VideoCapture (network: NetworkSource).

    Files are read to their real end: a corrupt stretch
    is skipped, each undecodable frame raising one DecodeError once the next good frame is found, and
    frames carry the container's timestamps (variable frame rate), else index / fps."""

    def __init__(
        self,
        target: int | str,
        *,
        kind: str,
    ) -> None:
        if kind not in ("webcam", "file"):
            raise ValueError(f"kind {kind!r} must be webcam or file (a network stream: NetworkSource)")
        self.target, self.kind = target, kind
        self.live = kind == "webcam"
        self.name = f"webcam {target}" if kind == "webcam" else str(target)
        self.frame_count: int | None = None  # a file's reported frame count (None: unknown, or live)
        self._cap: cv2.VideoCapture | None = None
        self._t0 = 0.0
        self._reset_file_state()

    def _reset_file_state(self) -> None:
        self._index = 0  # frames returned
        self._skipped = 0  # undecodable frames passed over
        self._last_ts: float | None = None
        self._pending: tuple[np.ndarray, float] | None = None  # the good frame after a corrupt stretch
        self._pending_errors = 0  # DecodeErrors still to raise before it
        self._gap_message = ""
        self._ended = False

    def open(self) -> None:
        cap = self._open_file() if self.kind == "file" else self._open_webcam()
        self.fps = _nominal_fps(cap)
        self._cap = cap
        self._reset_file_state()
        self._t0 = time.monotonic()

    def _open_file(self) -> cv2.VideoCapture:
        path = Path(str(self.target))
        if not path.exists():
            raise SourceError(f"video file not found: {path}")
        if not path.is_file():
            raise SourceError(f"not a file: {path}")
        cap = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG)
        if not cap.isOpened():
            cap.release()
            raise SourceError(f"cannot open {path}: not a video OpenCV can decode, or the file is corrupt")
        self.frame_count = _frame_count(cap)
        return cap

    def _open_webcam(self) -> cv2.VideoCapture:
        index = int(self.target)
        missing = missing_webcam(index)
        if missing:
            raise SourceError(missing)
        cap = cv2.VideoCapture(index)
        if not cap.isOpened():
            cap.release()
            raise SourceError(f"cannot open webcam {index} (in use by another program, or no permission)")
        return cap

    def read(self) -> tuple[np.ndarray, float] | None:
        if self._cap is None:
            raise SourceError(f"{self.name} is not open")
        if self.live:
            ok, image = self._cap.read()
            if not ok or image is None:
                raise SourceLost(f"{self.name} stopped delivering frames")
            return check_image(image), time.monotonic() - self._t0
        return self._read_file()

    def _read_file(self) -> tuple[np.ndarray, float] | None:
        assert self._cap is not None
        if self._pending_errors:
            self._pending_errors -= 1
            raise DecodeError(self._gap_message)
        if self._pending is not None:
            item, self._pending = self._pending, None
            return item
        if self._ended:
            return None
        failures = 0
        while True:
            ok, image = self._cap.read()
            if ok and image is not None:
                break
            # FFmpeg returns False at the end, and once per frame it cannot decode: a corrupt stretch
            # is passed over by reading on; only the frame count tells the real end from a gap.
            failures += 1
            if self._at_end(failures):
                self._end()
                return None
        self._skipped += failures
        try:
            item = (check_image(image), self._timestamp())
        except DecodeError:
            self._skipped += 1
            raise
        self._index += 1
        if not failures:
            return item
        # the frames lost before this one are counted first, one DecodeError each
        self._gap_message = f"{self.name}: {failures} undecodable frame(s) before {item[1]:.2f} s, skipped"
        self._pending, self._pending_errors = item, failures - 1
        raise DecodeError(self._gap_message)

    def _position(self) -> int:
        """Frames consumed so far: read and skipped (FFmpeg spends one failed read per bad frame)."""
        return self._index + self._skipped

    def _at_end(self, failures: int) -> bool:
        total = self.frame_count
        if total is None:
            return failures >= MAX_BAD_READS
        left = total - self._position()
        # the count may be one off (it can be estimated from duration x fps); past it, failures that
        # outnumber the frames left mean the data ran out (a truncated file)
        return left <= 1 or failures > left + MAX_BAD_READS

    def _end(self) -> None:
        """At the end, once: a word when it is not the video it claims to be."""
        if self._ended:
            return
        self._ended = True
        total, at = self.frame_count, self._position()
        if self._index == 1:
            log.warning("%s is a single image/frame, not a video: the run has one frame", self.name)
        elif total is not None and at + max(3, total // 50) < total and not self._reached_duration():
            log.warning("%s ended at frame %d of %d: truncated?", self.name, at, total)

    def _reached_duration(self) -> bool:
        """Whether the last frame's time is at the reported duration: then a frame count above the
        frames read is an estimate (duration x rate, wrong for variable frame rates), not a cut file."""
        if self._last_ts is None or not self.fps or self.frame_count is None:
            return False
        return self._last_ts + 3 / self.fps >= self.frame_count / self.fps

    def _timestamp(self) -> float:
        """The frame just read: the container's timestamp (right for variable frame rates), or, where
        it has none (0 for every frame, or going backwards), the position / fps."""
        assert self._cap is not None
        container = self._cap.get(cv2.CAP_PROP_POS_MSEC) / 1000.0
        step = 1.0 / (self.fps or 25.0)  # 25: a guess only for files that report no rate at all
        last = self._last_ts
        if math.isfinite(container) and container >= 0 and (last is None or container > last):
            ts = container
        else:
            ts = self._position() * step if last is None else max(self._position() * step, last + step)
        self._last_ts = ts
        return ts

    def close(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None


def _natural_key(path: Path) -> list[int | str]:
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", path.name)]


class FolderSource(Source):
    """The images of a folder in natural order (0.jpg, 1.jpg, ..., 10.jpg), at `fps`."""

    live = False

    def __init__(self, folder: str | os.PathLike[str], fps: float) -> None:
        if fps <= 0:
            raise ValueError(f"folder fps ({fps}) must be positive")
        self.folder, self.fps = Path(folder), float(fps)
        self.name = str(folder)
        self._files: list[Path] = []
        self._i = 0

    def open(self) -> None:
        if not self.folder.is_dir():
            raise SourceError(f"frame folder not found: {self.folder}")
        self._files = sorted(
            (p for p in self.folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES), key=_natural_key
        )
        if not self._files:
            raise SourceError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in {self.folder}")
        self._i = 0

    def read(self) -> tuple[np.ndarray, float] | None:
        if self._i >= len(self._files):
            return None
        i, self._i = self._i, self._i + 1
        image = cv2.imread(str(self._files[i]), cv2.IMREAD_COLOR)
        if image is None:
            raise DecodeError(f"cannot decode {self._files[i]}")
        return image, i / self.fps


class DemoSource(Source):
    """SynthActions, live: one action after another, with no camera, file or network."""

    live = True

    def __init__(self, seed: int = 0, size: int = 224, fps: float = 15.0) -> None:
        self.seed, self.size, self.fps = seed, size, float(fps)
        self.name = f"demo (SynthActions, seed {seed})"
        self._synth: LiveSynth | None = None
        self.truth: str | None = None  # the action being drawn now: the demo's ground truth

    def open(self) -> None:
        self._synth = LiveSynth(self.seed, self.size, self.fps)

    def read(self) -> tuple[np.ndarray, float] | None:
        if self._synth is None:
            raise SourceError("the demo source is not open")
        frame = next(self._synth)
        self.truth = frame.name
        return frame.image, frame.timestamp_s

    def close(self) -> None:
        if self._synth is not None:
            self._synth.close()
            self._synth = None


@dataclass(frozen=True)
class SourceSpec:
    """What `--source` named: a factory of fresh sources (one per connection) and how to treat them."""

    factory: Callable[[], Source]
    name: str
    live: bool  # as far as the text tells: an http URL may turn out to be a file when opened
    kind: str  # webcam | network | file | folder | demo


def _not_found_hint(text: str) -> str:
    """A URL with a mistyped scheme (rtsp:/host, rtsp//host) or none (user:pw@host/x) lands here as a
    path that does not exist: say how a URL is written."""
    if URL_START.match(text) or "@" in text:
        return "a mistyped URL? write scheme://[user:password@]host/path, e.g. rtsp://host:554/stream"
    return "not demo, webcam, a device index, a URL, a file or a folder"


def is_device_index(text: str) -> bool:
    """A webcam's device index: ASCII digits only ('²'.isdigit() is True, and int('²') raises)."""
    return text.isascii() and text.isdigit()


def parse_source(
    text: str,
    *,
    folder_fps: float = 25.0,
    demo_seed: int = 0,
    demo_size: int = 224,
    demo_fps: float = 15.0,
    open_timeout_s: float = 10.0,
    read_timeout_s: float = 5.0,
    explain_failures: bool = True,
) -> SourceSpec:
    """`demo`, `webcam`, a device index, a URL, a video file or a folder of frames. `explain_failures`:
    a network stream that fails to open says why in detail (see NetworkSource)."""
    text = text.strip()
    if not text:
        raise SourceError("--source is empty: give demo, webcam, a device index, a URL, a file or a folder")
    if text == "demo":
        return SourceSpec(
            lambda: DemoSource(demo_seed, demo_size, demo_fps),
            f"demo (SynthActions, seed {demo_seed})",
            True,
            "demo",
        )
    if text == "webcam" or is_device_index(text):
        index = 0 if text == "webcam" else int(text)
        return SourceSpec(lambda: OpenCVSource(index, kind="webcam"), f"webcam {index}", True, "webcam")
    scheme = text.split("://", 1)[0].lower() if "://" in text else ""
    if scheme and not _SCHEME_TOKEN.fullmatch(scheme):
        # what precedes :// is not a scheme (user:pw@host://...): never echo it, it may be a password
        raise SourceError(f"not a valid URL: {redact(text)} (write scheme://[user:password@]host/path)")
    if scheme:
        if scheme not in NETWORK_SCHEMES:
            raise SourceError(
                f"unsupported URL scheme {scheme!r} in {redact(text)} (use {', '.join(NETWORK_SCHEMES)})"
            )
        from stream.sources.network import (  # PyAV, where a network source is used
            NetworkSource,
            capture_options,
        )

        # RTSP over TCP unless OPENCV_FFMPEG_CAPTURE_OPTIONS says otherwise: read once, for every connection
        options = capture_options(scheme)
        return SourceSpec(
            lambda: NetworkSource(
                text,
                open_timeout_s=open_timeout_s,
                read_timeout_s=read_timeout_s,
                options=options,
                explain_failures=explain_failures,
            ),
            redact(text),
            True,
            "network",
        )
    path = Path(text)
    if path.is_dir():
        return SourceSpec(lambda: FolderSource(path, folder_fps), str(path), False, "folder")
    if not path.exists():
        raise SourceError(f"source not found: {redact(text)} ({_not_found_hint(text)})")
    return SourceSpec(lambda: OpenCVSource(str(path), kind="file"), str(path), False, "file")
