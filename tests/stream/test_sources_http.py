"""http(s) sources against a real HTTP server on 127.0.0.1: a URL to a video FILE plays like a file
(every frame, paced, ends at its end, no reconnect); an endless MJPEG stream stays live."""

from __future__ import annotations

import contextlib
import http.server
import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

import cv2
import pytest
from capture_helpers import drain, index_image, read_index

from stream.sources.capture import Capture, CaptureConfig
from stream.sources.network import NetworkSource
from stream.sources.readers import parse_source
from stream.types import SourceStatus

pytestmark = pytest.mark.timeout(30)

FRAMES, FPS = 40, 25


class Handler(http.server.BaseHTTPRequestHandler):
    """Serves `files` (path -> bytes) with Range support, as a real web server does (FFmpeg seeks to
    the mp4's index at the end), and /live.mjpg: an endless multipart MJPEG stream, like a camera."""

    files: ClassVar[dict[str, bytes]] = {}
    stop: ClassVar[threading.Event] = threading.Event()

    def log_message(self, *args: object) -> None:  # keep the test output quiet
        pass

    def do_GET(self) -> None:
        if self.path == "/live.mjpg":
            self._mjpeg()
            return
        data = self.files.get(self.path)
        if data is None:
            self.send_error(404)
            return
        match = re.fullmatch(r"bytes=(\d+)-(\d*)", self.headers.get("Range", ""))
        start = int(match.group(1)) if match else 0
        end = int(match.group(2)) if match and match.group(2) else len(data) - 1
        self.send_response(206 if match else 200)
        self.send_header("Content-Type", "video/mp4")
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("Content-Length", str(end - start + 1))
        if match:
            self.send_header("Content-Range", f"bytes {start}-{end}/{len(data)}")
        self.end_headers()
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):  # FFmpeg hangs up when it has enough
            self.wfile.write(data[start : end + 1])

    def _mjpeg(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
        self.end_headers()
        i = 0
        while not self.stop.is_set():
            jpeg = cv2.imencode(".jpg", index_image(i % 64))[1].tobytes()
            part = b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n" % len(jpeg)
            try:
                self.wfile.write(part + jpeg + b"\r\n")
            except (BrokenPipeError, ConnectionResetError):
                return
            i += 1
            time.sleep(1 / FPS)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The base URL of a loopback HTTP server serving /clip.mp4 (40 frames at 25 fps, index drawn)."""
    path: Path = tmp_path_factory.mktemp("http") / "clip.mp4"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), FPS, (64, 48))
    assert writer.isOpened()
    for i in range(FRAMES):
        writer.write(index_image(i))
    writer.release()
    Handler.files = {"/clip.mp4": path.read_bytes()}
    Handler.stop.clear()
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, name="http-server", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_port}"
    finally:
        Handler.stop.set()
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)


def test_http_url_to_a_video_file_opens_as_a_file(server):
    source = parse_source(f"{server}/clip.mp4").factory()
    assert source.live  # before open, a URL is taken for a live stream
    source.open()
    try:
        assert not source.live
        assert isinstance(source, NetworkSource) and source.frame_count == FRAMES
    finally:
        source.close()


def test_http_video_file_plays_like_a_file_through_capture(server):
    # given an http URL to a 40-frame, 25 fps file, and the capture the app builds for a URL (live,
    # drop-oldest, newest-frame reads, watchdog, reconnect forever)
    spec = parse_source(f"{server}/clip.mp4", open_timeout_s=5.0, read_timeout_s=2.0)
    assert spec.live and spec.kind == "network"
    calls = []

    def factory():
        calls.append(1)
        return spec.factory()

    capture = Capture(factory, spec.name, CaptureConfig(live=spec.live, realtime=False, watchdog_s=5.0))
    # when a consumer drains it
    with capture:
        frames = drain(capture, limit_s=15.0)
    # then every frame came once, in order, at its own timestamps, paced in real time, and it ended:
    # no drops, no reconnect, no replay
    assert [read_index(f.image) for f in frames] == list(range(FRAMES))
    assert [f.source_ts for f in frames] == pytest.approx([i / FPS for i in range(FRAMES)], abs=1e-3)
    assert frames[-1].capture_ts - frames[0].capture_ts >= (FRAMES - 1) / FPS - 0.05
    assert capture.status.status is SourceStatus.ENDED and capture.error is None
    assert len(calls) == 1 and capture.reconnects == 0 and capture.buffer.dropped == 0


def test_http_mjpeg_stream_stays_live(server):
    # given an endless MJPEG stream over http (no frame count)
    source = parse_source(f"{server}/live.mjpg", open_timeout_s=5.0, read_timeout_s=2.0).factory()
    # when opened and read, then it stays a live source, stamped by the clock
    source.open()
    try:
        assert source.live and source.frame_count is None
        items = [source.read() for _ in range(3)]
        assert all(item is not None for item in items)
    finally:
        source.close()
