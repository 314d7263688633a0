"""The web view's test helpers: run_camera.py with --serve on 127.0.0.1 in a subprocess, plain HTTP calls."""

from __future__ import annotations

import http.server
import json
import os
import queue
import re
import signal
import socketserver
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from stream.sources.readers import parse_source

ROOT = Path(__file__).resolve().parents[2]
CLI = [sys.executable, str(ROOT / "run_camera.py")]
URL_LINE = re.compile(r"web view at (http://\S+)")


@dataclass
class Served:
    """A run_camera.py process serving its web view; its stderr is collected as it comes."""

    proc: subprocess.Popen[str]
    url: str = ""
    lines: list[str] = field(default_factory=list)
    folder: Path | None = None  # where the test keeps this run's files

    @property
    def stderr(self) -> str:
        return "\n".join(self.lines)

    def stop(self, timeout: float = 30.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        time.sleep(0.1)  # the reader thread takes the last lines
        return self.proc.returncode


def serve(
    *args: str,
    env: dict[str, str] | None = None,
    timeout: float = 120.0,
    preexec_fn: Callable[[], None] | None = None,
) -> Served:
    """Start run_camera.py --serve 0 (any free port on 127.0.0.1) with `args`; return once it serves.
    `preexec_fn` runs in the child before it starts (e.g. to lower its file limit)."""
    proc = subprocess.Popen(
        [*CLI, "--serve", "127.0.0.1:0", "--headless", "--no-dashboard", *args],
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        preexec_fn=preexec_fn,
    )
    served = Served(proc)
    found: queue.Queue[str] = queue.Queue()

    def read() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            served.lines.append(line.rstrip("\n"))
            match = URL_LINE.search(line)
            if match:
                found.put(match.group(1))

    threading.Thread(target=read, daemon=True).start()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            served.url = found.get(timeout=0.2)
            return served
        except queue.Empty:
            if proc.poll() is not None:
                time.sleep(0.2)
                raise AssertionError(f"run_camera.py exited {proc.returncode}:\n{served.stderr}") from None
    served.stop()
    raise AssertionError(f"no web view within {timeout} s:\n{served.stderr}")


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None  # the 3xx itself is the answer


_NOT_FOLLOWING = urllib.request.build_opener(_NoRedirect)


def call(
    method: str,
    url: str,
    body: Any = None,
    headers: dict[str, str] | None = None,
    raw: bytes | None = None,
    follow: bool = True,
) -> tuple[int, dict[str, str], bytes]:
    """(status, headers, body) of one request; an HTTP error status is returned, not raised; a redirect is
    followed unless `follow` is False. A body goes as application/json unless `headers` say another type."""
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    request = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    if data is not None and not request.has_header("Content-type"):
        request.add_header("Content-Type", "application/json")
    try:
        opener = urllib.request.urlopen if follow else _NOT_FOLLOWING.open
        with opener(request, timeout=15) as response:
            return response.status, {k.lower(): v for k, v in response.headers.items()}, response.read()
    except urllib.error.HTTPError as error:
        return error.code, {k.lower(): v for k, v in error.headers.items()}, error.read()


def get_json(url: str, headers: dict[str, str] | None = None) -> Any:
    status, _, body = call("GET", url, headers=headers)
    assert status == 200, (status, body)
    return json.loads(body)


def wait_for(predicate: Any, timeout: float, what: str, interval: float = 0.1) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"{what}: not within {timeout} s")


def write_demo_video(path: Path, seconds: float, seed: int, fps: float = 15.0, size: int = 160) -> Path:
    """The demo source's SynthActions scene (actions the demo model knows) as an mp4 file."""
    source = parse_source("demo", demo_seed=seed, demo_size=size, demo_fps=fps).factory()
    source.open()
    out = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (size, size))
    for _ in range(int(seconds * fps)):
        got = source.read()
        assert got is not None
        out.write(got[0])
    out.release()
    source.close()
    return path


class MjpegCamera:
    """A network camera on 127.0.0.1: an endless MJPEG stream at `url` until `stop()`, then gone (its
    connections closed, new ones refused), as when a camera loses power."""

    def __init__(self, fps: float = 15.0) -> None:
        stopping = self._stopping = threading.Event()

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
                self.end_headers()
                i = 0
                while not stopping.is_set():
                    image = np.full((120, 160, 3), 70, np.uint8)
                    cv2.circle(image, (20 + (4 * i) % 120, 60), 15, (0, 200, 255), -1)
                    jpeg = cv2.imencode(".jpg", image)[1].tobytes()
                    head = b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n" % len(jpeg)
                    try:
                        self.wfile.write(head + jpeg + b"\r\n")
                    except OSError:
                        return
                    i += 1
                    time.sleep(1 / fps)

        class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
            daemon_threads = True

        self._server = Server(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/live.mjpg"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        if not self._stopping.is_set():
            self._stopping.set()
            self._server.shutdown()
            self._server.server_close()
