"""A crash-safe video file: H.264 in a fragmented MP4, written with PyAV (FFmpeg).

A plain MP4 keeps its index ("moov") at the end, written at close: a process killed mid-recording (kill -9,
a crash, a second Ctrl-C) leaves a file with no index and no decodable frame. A fragmented MP4 writes an
empty index up front and then one self-contained fragment (moof + mdat) per keyframe, each handed to the
OS as soon as it is complete; a keyframe every second (gop = fps) and an encoder without lookahead or
B-frames (x264 "zerolatency") mean a killed process loses at most the last second or so of video. The file
plays in FFmpeg/OpenCV, VLC and browsers (H.264 yuv420p, which "mp4v" is not).

Errors of the file (ENOSPC, EIO, ...) come out of `write` and `close` as OSError subclasses
(av.error.FFmpegError for FFmpeg's); `stream.sinks.VideoSink` turns them into a one-line SinkError.
"""

from __future__ import annotations

import contextlib
import errno
import os
from fractions import Fraction

import av
import cv2
import numpy as np

# empty_moov: the index up front; frag_keyframe: a new fragment at each keyframe; default_base_moof: the
# layout browsers' Media Source Extensions expect. flush_packets: hand each fragment to the OS at once.
MUXER_OPTIONS = {"movflags": "frag_keyframe+empty_moov+default_base_moof", "flush_packets": "1"}

# libx264 "ultrafast" costs about what OpenCV's mp4v did (640x480 on a busy 2-core machine: ~2.2 vs ~2.3 ms
# a frame, best of 6 runs) at 2/3 of its bitrate; "zerolatency" turns off lookahead and B-frames, so no
# frame waits in the encoder.
X264_OPTIONS = {"preset": "ultrafast", "tune": "zerolatency"}


# What writing a file can raise: the OS's errors and FFmpeg's (which for errno codes are OSErrors too).
WRITE_ERRORS: tuple[type[Exception], ...] = (OSError, av.FFmpegError)


def video_codec() -> str:
    """The encoder used: libx264 where this FFmpeg build has it, else MPEG-4 part 2."""
    return "libx264" if "libx264" in av.codecs_available else "mpeg4"


class FragmentedMp4Writer:
    """Encodes (H, W, 3) uint8 BGR frames of one size into a fragmented MP4 at a fixed frame rate.

    Frames must have the size given here; an odd width or height loses its last column or row (4:2:0
    chroma needs even sizes). `close()` writes the last fragment; without it the file still plays up to
    the last complete fragment (about one second before the end).
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        fps: float,
        width: int,
        height: int,
        codec: str | None = None,
        keyframe_interval_s: float = 1.0,
    ) -> None:
        self.path = os.fspath(path)
        self.codec = codec or video_codec()
        self.width, self.height = width - width % 2, height - height % 2
        if self.width < 2 or self.height < 2:
            raise ValueError(f"video frames of {width}x{height} are too small to encode")
        rate = Fraction(fps).limit_denominator(1001)
        self.frames = 0
        self._container: av.container.OutputContainer | None = None
        self._file = _CheckedFile(self.path)
        try:
            self._container = av.open(self._file, "w", format="mp4", options=MUXER_OPTIONS)
            stream = self._container.add_stream(
                self.codec, rate=rate, options=X264_OPTIONS if self.codec == "libx264" else {}
            )
            stream.width, stream.height, stream.pix_fmt = self.width, self.height, "yuv420p"
            ctx = stream.codec_context
            ctx.gop_size = max(1, round(fps * keyframe_interval_s))
            # One thread beats several at camera sizes on a busy machine; large frames need more.
            ctx.thread_count = 1 if self.width * self.height <= 1280 * 720 else 0
            if self.codec != "libx264":  # mpeg4's default 200 kbit/s smears everything
                ctx.bit_rate = int(self.width * self.height * float(rate) * 0.2)
            self._stream = stream
        except BaseException:
            self.abort()
            raise

    def write(self, image: np.ndarray) -> None:
        """Encode one BGR frame of this writer's size (odd sizes: cropped to it)."""
        if self._container is None:
            raise ValueError(f"video {self.path} is closed")
        image = image[: self.height, : self.width]
        # OpenCV's BGR → I420 is quicker than FFmpeg's swscale and gives the same picture.
        frame = av.VideoFrame.from_ndarray(cv2.cvtColor(image, cv2.COLOR_BGR2YUV_I420), format="yuv420p")
        frame.pts = self.frames
        self._container.mux(self._stream.encode(frame))
        self._file.check()
        self.frames += 1

    def close(self) -> None:
        """Flush the encoder and write the last fragment. Idempotent; raises on a write error."""
        container, self._container = self._container, None
        if container is None:
            return
        try:
            try:
                container.mux(self._stream.encode(None))
            finally:
                container.close()  # writes the trailer, even after a failed flush
            self._file.check()
        finally:
            self._file.close()

    def abort(self) -> None:
        """Close the file after an error, writing nothing more that could fail. Idempotent."""
        container, self._container = self._container, None
        if container is not None:
            with contextlib.suppress(WRITE_ERRORS):
                container.close()
        with contextlib.suppress(OSError):
            self._file.close()


class _CheckedFile:
    """The output file as FFmpeg writes it (through PyAV's Python I/O), keeping the first write error.

    FFmpeg can drop an error of the last write of a file (the one made as it closes), so a full disk at the
    end of a recording would go unreported; errors that pass through here cannot be lost.
    """

    def __init__(self, path: str) -> None:
        self._file = open(path, "wb", buffering=0)  # noqa: SIM115 (closed by close())
        self.error: OSError | None = None

    def write(self, data: bytes) -> int:
        view = memoryview(data)
        try:
            done = 0
            while done < len(view):  # a raw write may take part of the data (a disk filling up)
                n = self._file.write(view[done:])
                if not n:
                    raise OSError(errno.EIO, "the OS took none of the data")
                done += n
        except OSError as e:
            if self.error is None:
                self.error = e
            raise
        return done

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        return self._file.seek(offset, whence)

    def tell(self) -> int:
        return self._file.tell()

    def check(self) -> None:
        """Raise the first write error, if any."""
        if self.error is not None:
            raise self.error

    def close(self) -> None:
        self._file.close()
