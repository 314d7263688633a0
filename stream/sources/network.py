"""Network streams (RTSP, RTSPS, RTMP, HTTP(S)) read with PyAV, outside OpenCV's process-wide FFmpeg lock.

OpenCV's FFmpeg backend holds one process-wide lock for the whole of every open (`CvCapture_FFMPEG::open`:
avformat_open_input and avformat_find_stream_info), so a camera that accepts the connection and never
answers kept every other camera from opening until its open timed out. PyAV gives each open and each
read its own timeout (FFmpeg's interrupt callback) and releases the GIL while it waits: a hung camera holds
up only its own capture thread, and for at most its own timeouts.

Errors never show the URL as typed: PyAV puts it (password and all) in every exception it raises, so only
the error's own text is used, scrubbed of anything that looks like a URL.
"""

from __future__ import annotations

import collections
import logging
import math
import os
import re
import socket
import time
from collections.abc import Iterator, Mapping

import av
import numpy as np
from av.video.reformatter import VideoReformatter

from stream.errors import DecodeError, SourceError, SourceLost
from stream.sources.source import Source, check_image, redact

log = logging.getLogger(__name__)

# OpenCV's FFmpeg options, "key;value|key;value"; honoured here so that a user who set it keeps theirs
OPTIONS_ENV = "OPENCV_FFMPEG_CAPTURE_OPTIONS"
# Only these can carry a recorded file (a finite frame count); RTSP/RTMP are always treated as live.
FILE_CAPABLE_SCHEMES = ("http", "https")
DEFAULT_PORTS = {"rtsp": 554, "rtsps": 322, "rtmp": 1935, "http": 80, "https": 443}
# Up to 1080p a frame decodes on the capture thread itself (measured: 0.2 ms a 640x360 H.264 frame): many
# cameras already share the cores, and every decoder thread is one more per camera. A bigger stream gets
# FFmpeg's frame and slice threads (frame threading costs (threads - 1) frames of latency).
ONE_THREAD_MAX_PIXELS = 1920 * 1088
# FFmpeg's RTSP demuxer waits out a read timeout twice before it gives up (measured, libavformat 62: 1 s
# -> 2.0 s; OpenCV's capture took 3.0 s, over HTTP both 1.0 s). x1.5 keeps a stalled RTSP read failing
# after 3x read_timeout_s, as before: what the callers' read timeout (a third of the watchdog) counts on.
RTSP_READ_TIMEOUT_FACTOR = 1.5
# a failed open of a camera added over the API: one text whatever the reason, since "refused" against
# "answered" would tell an API client which ports of a LAN host answer (no probe is made either)
NOT_EXPLAINED = "no stream (check the address, port, path and credentials; the reason is in the server's log)"
_URL_IN_TEXT = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*:/{1,3}[^\s'\"]+")
_AV_ERRORS = (av.FFmpegError, OSError, EOFError, ValueError)


def capture_options(scheme: str, environ: Mapping[str, str] = os.environ) -> dict[str, str]:
    """FFmpeg's options for opening a `scheme` URL: OPENCV_FFMPEG_CAPTURE_OPTIONS where set (read as OpenCV
    reads it), else RTSP over TCP (no lost UDP packets, no smeared frames; it passes NAT and firewalls)."""
    text = environ.get(OPTIONS_ENV)
    if text is None:
        return {"rtsp_transport": "tcp"} if scheme in ("rtsp", "rtsps") else {}
    options = {}
    for pair in text.split("|"):
        key, sep, value = pair.partition(";")
        if sep and key.strip():
            options[key.strip()] = value.strip()
    return options


def scrub(text: str) -> str:
    """`text` with every URL in it redacted: FFmpeg's messages may quote a URL (a redirect, a playlist)."""
    return _URL_IN_TEXT.sub(lambda m: redact(m.group()), text)


def _reason(error: BaseException) -> str:
    """What an FFmpeg/PyAV error says, without the URL PyAV appends to it (`filename`)."""
    text = getattr(error, "strerror", None)
    return scrub(str(text)) if text else type(error).__name__


def _host_port(url: str) -> tuple[str, int | None]:
    """Host and port of a URL, read after the last '@' so a raw password cannot confuse it."""
    scheme, _, rest = url.partition("://")
    authority = re.split(r"[/?#]", rest.rpartition("@")[2], maxsplit=1)[0]
    if authority.startswith("["):  # [IPv6]:port
        host, _, tail = authority[1:].partition("]")
        port_text = tail.removeprefix(":")
    else:
        host, _, port_text = authority.partition(":")
    port = int(port_text) if port_text.isdigit() else DEFAULT_PORTS.get(scheme.lower())
    return host, port


def why_not_connected(
    url: str, elapsed_s: float, timeout_s: float, error: BaseException | None = None
) -> str:
    """What went wrong with a network open that failed, in words: timed out, refused, unknown host, or
    a server that answered but gave no stream (with FFmpeg's reason). A quick TCP probe tells them apart."""
    if elapsed_s >= 0.9 * timeout_s or isinstance(error, av.ExitError):
        return f"timed out after {elapsed_s:.1f} s with no answer (host down? a slow camera: --open-timeout)"
    host, port = _host_port(url)
    if not host or port is None:
        return f"failed after {elapsed_s:.1f} s (no host or port in the URL)"
    try:
        socket.create_connection((host, port), timeout=min(2.0, timeout_s)).close()
    except ConnectionRefusedError:
        return f"connection refused by {host}:{port} (nothing listens there: wrong port, or server off)"
    except socket.gaierror:
        return f"unknown host {host!r} (check the address)"
    except TimeoutError:
        return f"no answer from {host}:{port} (host down or unreachable?)"
    except OSError as probe:
        return f"{host}:{port}: {probe.strerror or probe}"
    said = f": {_reason(error)}" if error is not None else ""
    return (
        f"{host}:{port} answered but no stream opened after {elapsed_s:.1f} s{said} "
        "(wrong path or credentials, or not a stream FFmpeg can decode)"
    )


def _rate(stream: av.video.stream.VideoStream) -> float | None:
    rate = stream.guessed_rate or stream.average_rate
    fps = float(rate) if rate else 0.0
    return fps if 0 < fps < 1000 else None


def _frame_count(container: av.container.InputContainer, stream: av.video.stream.VideoStream) -> int | None:
    """The frame count as OpenCV reports it (the stream's, else duration x rate), None for a stream without
    one (a live stream has no duration)."""
    fps = _rate(stream)
    count = stream.frames
    if count <= 0 and fps:
        if container.duration:
            count = math.floor(container.duration / av.time_base * fps + 0.5)
        elif stream.duration and stream.time_base:
            count = math.floor(float(stream.duration * stream.time_base) * fps + 0.5)
    return int(count) if 0 < count < 2**31 else None


class NetworkSource(Source):
    """A network stream read with PyAV: BGR uint8 frames, the same pixels OpenCV gives for the same frame.

    Live streams are stamped by the clock at each read; a read that gets nothing for `read_timeout_s`, or
    a connection that ends, raises SourceLost. An http(s) URL to a video file (a finite frame count and a
    rate) sets `live = False` at open and is read like a file: every frame, the container's timestamps,
    an undecodable packet counted as one DecodeError, and None at its end.

    A failed open says why (refused, no answer, unknown host, FFmpeg's reason: see `why_not_connected`)
    where `explain_failures`, else NOT_EXPLAINED, the reason going to the log only."""

    live = True

    def __init__(
        self,
        url: str,
        *,
        open_timeout_s: float = 10.0,
        read_timeout_s: float = 5.0,
        options: Mapping[str, str] | None = None,
        explain_failures: bool = True,
    ) -> None:
        self.url, self.name = url, redact(url)
        self.explain_failures = explain_failures
        self.scheme = url.partition("://")[0].lower()
        self.open_timeout_s, self.read_timeout_s = open_timeout_s, read_timeout_s
        options = dict(capture_options(self.scheme) if options is None else options)
        self._format = options.pop("input_format", None)  # as OpenCV: a demuxer to use, not an option
        self.options = options
        self.live = True
        self.fps: float | None = None
        self.frame_count: int | None = None  # a file's frame count (None: unknown, or live)
        self._container: av.container.InputContainer | None = None
        self._stream: av.video.stream.VideoStream | None = None
        self._packets: Iterator[av.Packet] | None = None
        self._reformatter: VideoReformatter | None = None
        self._pending: collections.deque[tuple[np.ndarray, float]] = collections.deque()
        self._t0 = 0.0
        self._index = 0
        self._start_pts = 0
        self._last_ts: float | None = None
        self._ended = False

    def open(self) -> None:
        self.close()
        t0 = time.monotonic()
        try:
            container = av.open(
                self.url,
                format=self._format,
                options=self.options,
                timeout=(self.open_timeout_s, self._read_timeout()),
                metadata_errors="replace",  # a camera's odd metadata must not fail the open
            )
        except _AV_ERRORS as error:
            if not self.explain_failures:
                took = time.monotonic() - t0
                log.warning("%s: cannot connect after %.1f s: %s", self.name, took, _reason(error))
                raise SourceError(f"cannot connect to {self.name}: {NOT_EXPLAINED}") from None
            why = why_not_connected(self.url, time.monotonic() - t0, self.open_timeout_s, error)
            raise SourceError(f"cannot connect to {self.name}: {why}") from None  # the error holds the URL
        try:
            self._adopt(container)
        except BaseException:
            container.close()
            raise

    def _read_timeout(self) -> float:
        factor = RTSP_READ_TIMEOUT_FACTOR if self.scheme in ("rtsp", "rtsps") else 1.0
        return self.read_timeout_s * factor

    def _adopt(self, container: av.container.InputContainer) -> None:
        if not container.streams.video:
            raise SourceError(f"{self.name} has no video stream")
        stream = container.streams.video[0]
        if stream.codec_context.width * stream.codec_context.height > ONE_THREAD_MAX_PIXELS:
            stream.thread_type = "AUTO"  # thread_count 0: as many as there are cores
        else:
            stream.codec_context.thread_count = 1
        self.fps = _rate(stream)
        # A file served over http has a finite frame count (and so a finite duration); a live stream
        # (MJPEG, live HLS) has none. RTSP/RTMP stay live: that is what they are used for here.
        count = _frame_count(container, stream)
        is_file = self.scheme in FILE_CAPABLE_SCHEMES and count is not None and self.fps is not None
        self.live = not is_file
        self.frame_count = None if self.live else count
        if is_file:
            log.info("%s is a video file (%d frames): played like a file, no reconnects", self.name, count)
        self._container, self._stream = container, stream
        self._packets = container.demux(stream)
        self._reformatter = VideoReformatter()
        self._start_pts = stream.start_time or 0
        self._index, self._last_ts, self._ended = 0, None, False
        self._t0 = time.monotonic()

    def read(self) -> tuple[np.ndarray, float] | None:
        if self._packets is None:
            raise SourceError(f"{self.name} is not open")
        while not self._pending:
            if self._ended:
                return None
            self._decode_next()
        image, ts = self._pending.popleft()
        return image, (time.monotonic() - self._t0 if self.live else ts)

    def _decode_next(self) -> None:
        """One packet: its frames join the pending ones; a packet that does not decode is a DecodeError."""
        assert self._packets is not None
        try:
            packet = next(self._packets)
        except StopIteration:
            self._end("the stream ended")
            return
        except _AV_ERRORS as error:  # a read timed out (ExitError) or the connection broke
            self._end(_reason(error))
            return
        try:
            frames = packet.decode()
        except _AV_ERRORS as error:
            raise DecodeError(f"{self.name}: a frame that does not decode ({_reason(error)})") from None
        for frame in frames:
            self._pending.append(self._convert(frame))

    def _convert(self, frame: av.VideoFrame) -> tuple[np.ndarray, float]:
        assert self._reformatter is not None
        try:
            # as OpenCV converts: one swscale context for the stream, one thread, SWS_BICUBIC (measured: the
            # same pixels, and 4x faster than PyAV's per-frame default)
            image = self._reformatter.reformat(
                frame, format="bgr24", interpolation="BICUBIC", threads=1
            ).to_ndarray()
        except _AV_ERRORS as error:
            raise DecodeError(f"{self.name}: a frame that does not convert ({_reason(error)})") from None
        image = check_image(np.ascontiguousarray(image))
        self._index += 1
        return image, self._timestamp(frame)

    def _timestamp(self, frame: av.VideoFrame) -> float:
        """A file's frame: its container time from the stream's start (right for variable frame rates), or,
        where it has none or goes backwards, its position / fps."""
        step = 1.0 / (self.fps or 25.0)
        last = self._last_ts
        ts = None
        if frame.pts is not None and frame.time_base is not None:
            ts = float((frame.pts - self._start_pts) * frame.time_base)
        if ts is None or not math.isfinite(ts) or ts < 0 or (last is not None and ts <= last):
            position = (self._index - 1) * step
            ts = position if last is None else max(position, last + step)
        self._last_ts = ts
        return ts

    def _end(self, why: str) -> None:
        """No more packets: a live stream is lost; a file is at its end (said once when it was cut short)."""
        if self.live:
            raise SourceLost(f"{self.name} stopped delivering frames ({why})")
        self._ended = True
        total = self.frame_count
        if total is not None and self._index + max(3, total // 50) < total:
            log.warning("%s ended at frame %d of %d: truncated? (%s)", self.name, self._index, total, why)

    def close(self) -> None:
        """Release the connection and the decoder; call it from the thread that reads (PyAV objects must not
        be used from two threads, nor a stream after its container is closed)."""
        packets, container = self._packets, self._container
        self._packets = self._stream = self._container = self._reformatter = None
        self._pending.clear()
        if packets is not None:
            packets.close()  # type: ignore[attr-defined]
        if container is not None:
            container.close()
