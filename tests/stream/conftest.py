"""Stream-test fixtures: a real RTSP server (tests/stream/rtsp_server.py, GStreamer) on 127.0.0.1."""

from __future__ import annotations

import contextlib
import ctypes
import functools
import os
import select
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

SYSTEM_PYTHON = "/usr/bin/python3"
SERVER_SCRIPT = Path(__file__).with_name("rtsp_server.py")
HOST = "127.0.0.1"
START_TIMEOUT_S = 15.0
SKIP_REASON = "rtsp: GStreamer RTSP server not installed (bash .ci/run installs it) — this test has NOT run"


@functools.cache
def _gst_rtsp_missing() -> str | None:
    """None where the system python can load GStreamer's RTSP server, else why not."""
    check = 'import gi; gi.require_version("Gst", "1.0"); gi.require_version("GstRtspServer", "1.0")'
    try:
        result = subprocess.run(
            [SYSTEM_PYTHON, "-c", check], capture_output=True, text=True, timeout=30, env=_child_env()
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"{SYSTEM_PYTHON}: {exc}"
    if result.returncode != 0:
        return (result.stderr.strip().splitlines() or [f"exit {result.returncode}"])[-1]
    return None


def _child_env() -> dict[str, str]:
    """The environment for the system python: nothing of the venv's python settings."""
    return {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP")}


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def tcp_states(port: int) -> list[str]:
    """Kernel TCP states (hex codes of /proc/net/tcp, '06' = TIME_WAIT, '0A' = LISTEN) on local port."""
    states = []
    with contextlib.suppress(OSError), open("/proc/net/tcp") as f:
        for line in f.readlines()[1:]:
            fields = line.split()
            if int(fields[1].rsplit(":", 1)[1], 16) == port:
                states.append(fields[3])
    return states


def _die_with_parent() -> None:
    """In the child: SIGKILL it when pytest dies, so no server outlives a crashed run."""
    with contextlib.suppress(Exception):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


class RtspServer:
    """One RTSP server process on a fixed 127.0.0.1 port; start/stop (SIGKILL)/restart it at will."""

    def __init__(
        self, port: int, log_dir: Path, path: str = "/test", fps: int = 25, size: tuple[int, int] = (320, 240)
    ) -> None:
        self.port = port
        self.path = path
        self.fps = fps
        self.width, self.height = size
        self.url = f"rtsp://{HOST}:{port}{path}"
        self.log = log_dir / f"rtsp_server_{port}.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.encoder: str | None = None  # "h264" or "mjpeg", as the server reports on stderr
        self.start_s: float | None = None  # how long the last start() took

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def _stderr(self) -> str:
        try:
            return self.log.read_text(errors="replace")[-4000:]
        except OSError:
            return ""

    def _fail(self, why: str) -> None:
        self.kill()
        stderr = self._stderr()
        raise RuntimeError(f"rtsp server on {HOST}:{self.port}: {why}\n--- server stderr ---\n{stderr}")

    def start(self, timeout: float = START_TIMEOUT_S) -> None:
        """Start the server; return once it printed READY and its port accepts TCP connections."""
        if self.running:
            raise RuntimeError("rtsp server already running")
        t0 = time.monotonic()
        deadline = t0 + timeout
        with open(self.log, "ab") as err:
            self.proc = subprocess.Popen(
                [
                    SYSTEM_PYTHON,
                    str(SERVER_SCRIPT),
                    "--port",
                    str(self.port),
                    "--path",
                    self.path,
                    "--fps",
                    str(self.fps),
                    "--size",
                    f"{self.width}x{self.height}",
                ],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=err,
                env=_child_env(),
                preexec_fn=_die_with_parent,
            )
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        out = b""
        while b"\n" not in out:
            left = deadline - time.monotonic()
            if left <= 0:
                self._fail(f"no READY line within {timeout:.0f} s (stdout so far: {out!r})")
            ready, _, _ = select.select([fd], [], [], min(left, 0.2))
            if ready:
                chunk = os.read(fd, 4096)
                if not chunk:
                    self.proc.wait(timeout=5)
                    self._fail(f"exited with code {self.proc.returncode} before READY")
                out += chunk
        line = out.split(b"\n", 1)[0].decode(errors="replace").strip()
        if line != f"READY {self.url}":
            self._fail(f"unexpected first line {line!r}, wanted 'READY {self.url}'")
        while True:
            try:
                socket.create_connection((HOST, self.port), timeout=0.5).close()
                break
            except OSError as exc:
                if time.monotonic() > deadline or not self.running:
                    self._fail(f"port does not accept connections: {exc}")
                time.sleep(0.05)
        self.start_s = time.monotonic() - t0
        for log_line in self._stderr().splitlines()[::-1]:
            if "encoder=" in log_line:
                self.encoder = log_line.split("encoder=", 1)[1].split()[0]
                break

    def kill(self) -> None:
        """SIGKILL the server (a camera dying, no goodbye to its clients) and reap it."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=10)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        self.proc = None

    stop = kill

    def restart(self, timeout: float = START_TIMEOUT_S) -> None:
        """Kill if running, then start again on the same port (GStreamer binds with SO_REUSEADDR, so a
        TIME_WAIT left on the port by the killed server does not block the new one)."""
        self.kill()
        self.start(timeout)

    def tcp_states(self) -> list[str]:
        """The kernel's TCP states on this port, as /proc/net/tcp codes ('06' TIME_WAIT, '0A' LISTEN)."""
        return tcp_states(self.port)

    def pause(self) -> None:
        """SIGSTOP: the server keeps its connections open but sends nothing (a hung camera)."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGCONT)


@pytest.fixture
def rtsp_server(tmp_path: Path) -> Iterator[RtspServer]:
    """A started RTSP server serving a moving 320x240 test pattern at 25 fps on `.url`."""
    missing = _gst_rtsp_missing()
    if missing is not None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"rtsp: GStreamer RTSP server missing on CI, where .ci/run installs it: {missing}")
        pytest.skip(SKIP_REASON)
    server = RtspServer(free_port(), tmp_path)
    try:
        server.start()
        yield server
    finally:
        server.kill()
