"""Frame sources: webcam, network stream (RTSP/HTTP), video file, folder of frames, and the live demo.

A source is opened, read frame by frame, and closed, all from one capture thread. `read()` returns
`(image, source_ts)`, `None` at the end of a file, raises `DecodeError` for one bad frame (counted,
skipped) and `SourceLost` when a live source stops delivering (the capture thread reconnects).
`parse_source` turns the `--source` argument into a factory that makes a fresh source per connection.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from glanet.data.synth import LiveSynth
from stream.errors import DecodeError, SourceError, SourceLost

NETWORK_SCHEMES = ("rtsp", "rtsps", "rtmp", "http", "https")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
_SECRET_QUERY_KEYS = re.compile(r"(pass|pwd|secret|token|key|auth|sig|user|login)", re.IGNORECASE)
# A file read that fails this many times in a row is at its end (or hopelessly damaged there).
MAX_BAD_READS = 8


def redact(url: str) -> str:
    """A URL safe to print and log: user/password and secret-looking query values become ***."""
    scheme, sep, rest = url.partition("://")
    if not scheme or not sep or not rest:
        return url
    if "@" in rest:
        # Cut at the last '@', not where urlsplit would: a password typed raw may hold '/', '?' or '#',
        # and urlsplit would then show it whole. An '@' later in the URL only hides a little more.
        rest = "***@" + rest.rpartition("@")[2]
    base, question, tail = rest.partition("?")
    if question:
        # Pair by pair, as typed: only the secret values change (no re-encoding of the others).
        query, hash_, fragment = tail.partition("#")
        pairs = [
            f"{key}=***" if eq and _SECRET_QUERY_KEYS.search(key) else f"{key}{eq}{value}"
            for key, eq, value in (pair.partition("=") for pair in query.split("&"))
        ]
        rest = f"{base}?{'&'.join(pairs)}{hash_}{fragment}"
    return f"{scheme}://{rest}"


class Source:
    """The interface. `live`: frames come at the source's pace and may be dropped; otherwise every
    frame is wanted (files, folders). `fps`: the nominal rate (None when unknown)."""

    name: str = "source"
    live: bool = False
    fps: float | None = None

    def open(self) -> None:
        raise NotImplementedError

    def read(self) -> tuple[np.ndarray, float] | None:
        raise NotImplementedError

    def close(self) -> None:
        pass


def _check_image(image: np.ndarray | None) -> np.ndarray:
    if image is None or image.ndim != 3 or image.shape[2] != 3 or image.size == 0:
        raise DecodeError("a frame that is not a 3-channel image")
    return image


class OpenCVSource(Source):
    """A webcam (device index), a network stream or a video file, through cv2.VideoCapture."""

    def __init__(
        self,
        target: int | str,
        *,
        kind: str,
        open_timeout_s: float = 10.0,
        read_timeout_s: float = 5.0,
    ) -> None:
        if kind not in ("webcam", "network", "file"):
            raise ValueError(f"kind {kind!r} must be webcam, network or file")
        self.target, self.kind = target, kind
        self.live = kind != "file"
        self.open_timeout_s, self.read_timeout_s = open_timeout_s, read_timeout_s
        self.name = (
            redact(str(target))
            if kind == "network"
            else (f"webcam {target}" if kind == "webcam" else str(target))
        )
        self._cap: cv2.VideoCapture | None = None
        self._index = 0
        self._t0 = 0.0

    def _params(self) -> list[int]:
        return [
            cv2.CAP_PROP_OPEN_TIMEOUT_MSEC,
            int(self.open_timeout_s * 1000),
            cv2.CAP_PROP_READ_TIMEOUT_MSEC,
            int(self.read_timeout_s * 1000),
        ]

    def open(self) -> None:
        if self.kind == "file":
            path = Path(str(self.target))
            if not path.exists():
                raise SourceError(f"video file not found: {path}")
            if not path.is_file():
                raise SourceError(f"not a file: {path}")
            cap = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG)
            if not cap.isOpened():
                cap.release()
                raise SourceError(
                    f"cannot open {path}: not a video OpenCV can decode, or the file is corrupt"
                )
            fps = cap.get(cv2.CAP_PROP_FPS)
            self.fps = fps if 0 < fps < 1000 else None
        elif self.kind == "network":
            url = str(self.target)
            cap = cv2.VideoCapture(url, cv2.CAP_FFMPEG, self._params())
            if not cap.isOpened():
                cap.release()
                raise SourceError(
                    f"cannot connect to {self.name} within {self.open_timeout_s:g} s "
                    "(unreachable host, wrong path or credentials, or not a stream OpenCV can decode)"
                )
            fps = cap.get(cv2.CAP_PROP_FPS)
            self.fps = fps if 0 < fps < 1000 else None
        else:
            index = int(self.target)
            device = Path(f"/dev/video{index}")
            if os.name == "posix" and Path("/dev").is_dir() and not device.exists():
                raise SourceError(f"no webcam {index}: {device} does not exist (no camera on this machine?)")
            cap = cv2.VideoCapture(index)
            if not cap.isOpened():
                cap.release()
                raise SourceError(f"cannot open webcam {index} (in use by another program, or no permission)")
            fps = cap.get(cv2.CAP_PROP_FPS)
            self.fps = fps if 0 < fps < 1000 else None
        self._cap = cap
        self._index = 0
        self._t0 = time.monotonic()

    def read(self) -> tuple[np.ndarray, float] | None:
        if self._cap is None:
            raise SourceError(f"{self.name} is not open")
        if self.kind != "file":
            ok, image = self._cap.read()
            if not ok or image is None:
                raise SourceLost(f"{self.name} stopped delivering frames")
            return _check_image(image), time.monotonic() - self._t0
        for _ in range(MAX_BAD_READS):
            ok, image = self._cap.read()
            if ok and image is not None:
                ts = self._index / self.fps if self.fps else self._cap.get(cv2.CAP_PROP_POS_MSEC) / 1000.0
                self._index += 1
                return _check_image(image), ts
            # FFmpeg returns False at the end and, rarely, for a frame it could not decode.
            total = int(self._cap.get(cv2.CAP_PROP_FRAME_COUNT))
            if total <= 0 or self._index >= total - 1:
                return None
            self._index += 1
        return None

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
    live: bool
    kind: str  # webcam | network | file | folder | demo


def parse_source(
    text: str,
    *,
    folder_fps: float = 25.0,
    demo_seed: int = 0,
    demo_size: int = 224,
    demo_fps: float = 15.0,
    open_timeout_s: float = 10.0,
    read_timeout_s: float = 5.0,
) -> SourceSpec:
    """`demo`, `webcam`, a device index, a URL, a video file or a folder of frames."""
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
    if text == "webcam" or text.isdigit():
        index = 0 if text == "webcam" else int(text)
        return SourceSpec(lambda: OpenCVSource(index, kind="webcam"), f"webcam {index}", True, "webcam")
    scheme = text.split("://", 1)[0].lower() if "://" in text else ""
    if scheme:
        if scheme in ("rtsp", "rtsps") and "OPENCV_FFMPEG_CAPTURE_OPTIONS" not in os.environ:
            # TCP: no lost UDP packets (smeared frames), and it passes NAT and firewalls. OpenCV's FFmpeg
            # backend reads this at each open; set here, before any capture thread (setenv is not
            # thread-safe). A user who set it keeps theirs (and should include rtsp_transport;tcp).
            os.environ["OPENCV_FFMPEG_CAPTURE_OPTIONS"] = "rtsp_transport;tcp"
        if scheme not in NETWORK_SCHEMES:
            raise SourceError(
                f"unsupported URL scheme {scheme!r} in {redact(text)} (use {', '.join(NETWORK_SCHEMES)})"
            )
        return SourceSpec(
            lambda: OpenCVSource(
                text, kind="network", open_timeout_s=open_timeout_s, read_timeout_s=read_timeout_s
            ),
            redact(text),
            True,
            "network",
        )
    path = Path(text)
    if path.is_dir():
        return SourceSpec(lambda: FolderSource(path, folder_fps), str(path), False, "folder")
    if not path.exists():
        raise SourceError(
            f"source not found: {text} (not demo, webcam, a device index, a URL, a file or a folder)"
        )
    return SourceSpec(lambda: OpenCVSource(str(path), kind="file"), str(path), False, "file")
