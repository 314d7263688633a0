"""The RTSP test server read with OpenCV's FFmpeg backend directly: frames, a killed server, a restart.

What these tests showed on the 2-core dev machine (OpenCV 5.0.0 / libavformat 62, H.264 from x264enc):
- open() of the live stream takes ~1.2 s (FFmpeg probing the H.264 stream); the first read()s then
  return a short burst of buffered frames at once, later ones come at the stream's 25 fps.
- Server SIGKILLed: the TCP connection is closed by the kernel, so read() returns the 1-2 frames
  already buffered and then fails at once (EOF): ~1 ms after the kill, not the read timeout.
  Every later read() on that capture fails at once too; it never recovers by itself: release and reopen.
- Server hung (SIGSTOP, connection open, nothing sent): read() blocks until the read timeout, and it
  took ~3x CAP_PROP_READ_TIMEOUT_MSEC (1000 -> 3.0 s, 2000 -> 6.0 s, the default 30000 -> 90 s).
  open() on a hung server fails after CAP_PROP_OPEN_TIMEOUT_MSEC (default 30 s); on a port where
  nothing listens it fails at once (connection refused).
- Restart on the same port: the new server is READY and accepting in ~0.1 s, even with the old
  server's connection in TIME_WAIT on that port (GStreamer binds with SO_REUSEADDR); a new capture
  then opens in ~1.2 s.
"""

from __future__ import annotations

import itertools
import os
import socket
import time

import cv2
import numpy as np
import pytest

OPEN_TIMEOUT_MS = 5000
READ_TIMEOUT_MS = 2000
TIME_WAIT = "06"  # state code in /proc/net/tcp


def open_capture(url: str, read_timeout_ms: int = READ_TIMEOUT_MS) -> cv2.VideoCapture:
    """RTSP over TCP with bounded open/read times.

    OpenCV reads OPENCV_FFMPEG_CAPTURE_OPTIONS with getenv() at every open ("key;value|key;value", passed
    to avformat_open_input); when set it replaces OpenCV's own default (rtsp_flags=prefer_tcp), so any
    other option must come with rtsp_transport;tcp. Unsupported `params` make open() fail, so an open
    capture means both timeouts were accepted.
    """
    params = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, OPEN_TIMEOUT_MS]
    params += [cv2.CAP_PROP_READ_TIMEOUT_MSEC, read_timeout_ms]
    cap = cv2.VideoCapture(url, cv2.CAP_FFMPEG, params)
    assert cap.isOpened(), f"cv2 could not open {url}"
    return cap


@pytest.fixture(autouse=True)
def _rtsp_over_tcp(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENCV_FFMPEG_CAPTURE_OPTIONS", "rtsp_transport;tcp")


def _own_udp_sockets() -> int:
    """How many UDP sockets this process holds (RTP over UDP would open some)."""
    inodes = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    count = 0
    for table in ("/proc/net/udp", "/proc/net/udp6"):
        try:
            with open(table) as f:
                count += sum(line.split()[9] in inodes for line in f.readlines()[1:])
        except OSError:
            pass
    return count


def read_frames(cap: cv2.VideoCapture, n: int) -> list[np.ndarray]:
    frames = []
    for i in range(n):
        ok, frame = cap.read()
        assert ok, f"read() failed at frame {i}"
        frames.append(frame)
    return frames


def read_until_failure(cap: cv2.VideoCapture, limit_s: float) -> tuple[float, int]:
    """Read until read() fails; (seconds it took, frames still read). Fails the test past limit_s."""
    t0 = time.monotonic()
    frames = 0
    while cap.read()[0]:
        frames += 1
        assert time.monotonic() - t0 < limit_s, f"read() still gives frames after {limit_s} s"
    return time.monotonic() - t0, frames


@pytest.mark.timeout(60)
def test_reads_changing_frames_of_the_right_size(rtsp_server) -> None:
    assert rtsp_server.encoder in ("h264", "mjpeg")
    first = open_capture(rtsp_server.url)
    second = open_capture(rtsp_server.url)  # the media factory is shared: several clients at once
    try:
        frames = read_frames(first, 25)
        assert read_frames(second, 5)
        assert _own_udp_sockets() == 0, "RTP came over UDP although rtsp_transport;tcp was set"
    finally:
        first.release()
        second.release()
    assert all(f.shape == (rtsp_server.height, rtsp_server.width, 3) for f in frames)
    assert all(f.dtype == np.uint8 for f in frames)
    changed = sum(not np.array_equal(a, b) for a, b in itertools.pairwise(frames))
    assert changed >= len(frames) // 2, f"only {changed} of {len(frames) - 1} consecutive frames differ"


@pytest.mark.timeout(60)
def test_read_fails_soon_after_the_server_is_killed(rtsp_server) -> None:
    cap = open_capture(rtsp_server.url)
    try:
        read_frames(cap, 5)
        rtsp_server.stop()
        # Observed: ~1 ms after the SIGKILL (1-2 buffered frames, then EOF), far below the read timeout.
        took, _ = read_until_failure(cap, limit_s=15)
        assert took < 15
        t0 = time.monotonic()
        assert not cap.read()[0]  # stays failed, at once
        assert time.monotonic() - t0 < READ_TIMEOUT_MS / 1000 * 3 + 2
    finally:
        cap.release()


@pytest.mark.timeout(90)
def test_a_new_capture_reads_again_after_a_restart(rtsp_server) -> None:
    cap = open_capture(rtsp_server.url)
    try:
        read_frames(cap, 5)
        rtsp_server.stop()
        read_until_failure(cap, limit_s=15)
    finally:
        cap.release()
    rtsp_server.restart()
    assert rtsp_server.start_s is not None and rtsp_server.start_s < 15  # observed ~0.1 s
    cap = open_capture(rtsp_server.url)
    try:
        frames = read_frames(cap, 20)
    finally:
        cap.release()
    assert frames[-1].shape == (rtsp_server.height, rtsp_server.width, 3)


@pytest.mark.timeout(60)
def test_restart_on_a_port_in_time_wait(rtsp_server) -> None:
    # A client talks RTSP, then the server is killed first: the server side of that connection ends in
    # TIME_WAIT on the server's port, and the new server must still bind it (SO_REUSEADDR).
    with socket.create_connection(("127.0.0.1", rtsp_server.port), timeout=5) as client:
        client.sendall(f"OPTIONS {rtsp_server.url} RTSP/1.0\r\nCSeq: 1\r\n\r\n".encode())
        assert client.recv(4096).startswith(b"RTSP/1.0 200")
        rtsp_server.stop()
        assert client.recv(4096) == b""  # the kernel closed the dead server's end
    deadline = time.monotonic() + 5
    while TIME_WAIT not in rtsp_server.tcp_states():
        assert time.monotonic() < deadline, f"no TIME_WAIT on the port: {rtsp_server.tcp_states()}"
        time.sleep(0.05)
    rtsp_server.start()
    cap = open_capture(rtsp_server.url)
    try:
        assert read_frames(cap, 3)
    finally:
        cap.release()


@pytest.mark.timeout(60)
def test_read_on_a_hung_server_ends_at_the_read_timeout(rtsp_server) -> None:
    cap = open_capture(rtsp_server.url, read_timeout_ms=1000)
    try:
        read_frames(cap, 5)
        rtsp_server.pause()  # connection stays open, nothing more is sent
        # Observed: ~3.0 s, i.e. ~3x the 1 s read timeout (the buffered frames come first).
        took, _ = read_until_failure(cap, limit_s=10)
        assert took < 10
    finally:
        cap.release()
        rtsp_server.resume()
