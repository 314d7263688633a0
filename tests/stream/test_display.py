"""The display probe: X servers that answer (a real Xvfb) or not, DISPLAY strings good and malformed,
Wayland sockets, and a window that fails with one line instead of Qt aborting the process."""

from __future__ import annotations

import contextlib
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from stream.sinks import display, window
from stream.sinks.display import display_problem, has_display, wayland_reachable, x_server_reachable

pytestmark = pytest.mark.timeout(60)

XVFB = shutil.which("Xvfb")
NO_XVFB = "Xvfb not installed (apt-get install xvfb; .ci/run should install it) — this test has NOT run"
needs_xvfb = pytest.mark.skipif(XVFB is None, reason=NO_XVFB)
REPO = Path(__file__).resolve().parents[2]

PAD = " " * 20
QT_BUILD = f"  GUI:{PAD}QT5\n    QT:{PAD}YES (ver 5.15)\n    GTK+:{PAD}NO\n"
GTK_BUILD = f"  GUI:{PAD}GTK3\n    GTK+:{PAD}YES (ver 3.24)\n"
HEADLESS_BUILD = f"  GUI:{PAD}NONE\n    GTK+:{PAD}NO\n"


@contextlib.contextmanager
def xvfb() -> Iterator[int]:
    """A real Xvfb on a free display number (Xvfb picks it: -displayfd), on its unix sockets and TCP."""
    assert XVFB is not None
    read_fd, write_fd = os.pipe()
    proc = subprocess.Popen(
        [XVFB, "-displayfd", str(write_fd), "-listen", "tcp", "-screen", "0", "320x240x24"],
        pass_fds=(write_fd,),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    os.close(write_fd)
    try:
        text = b""
        deadline = time.monotonic() + 15
        while not text.endswith(b"\n"):
            ready, _, _ = select.select([read_fd], [], [], max(0.0, deadline - time.monotonic()))
            chunk = os.read(read_fd, 64) if ready else b""
            if not chunk:
                pytest.fail(f"Xvfb did not report its display number (exit code {proc.poll()})")
            text += chunk
        yield int(text)
    finally:
        os.close(read_fd)
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def unused_display() -> int:
    """A display number with no X server: no socket file, nothing on the abstract socket or on TCP."""
    for n in range(4242, 4342):
        if not Path(f"/tmp/.X11-unix/X{n}").exists() and not (
            x_server_reachable(f":{n}") or x_server_reachable(f"127.0.0.1:{n}")
        ):
            return n
    pytest.fail("no unused X display number in 4242..4341")


@pytest.fixture
def linux_gui(monkeypatch):
    """Linux, an OpenCV with Qt, and no display variables: each test sets the ones it needs."""
    monkeypatch.setattr(sys, "platform", "linux")
    monkeypatch.setattr(display.cv2, "getBuildInformation", lambda: QT_BUILD)
    for name in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM"):
        monkeypatch.delenv(name, raising=False)


def listening_unix_socket(path: Path) -> socket.socket:
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    server.listen(1)
    return server


# --- X servers -----------------------------------------------------------------------------------------


@needs_xvfb
def test_a_real_x_server_is_reachable_and_then_not():
    # given a running Xvfb
    with xvfb() as n:
        # then every way of naming it reaches it
        for name in (f":{n}", f":{n}.0", f"unix:{n}", f"unix/:{n}", f"host/unix:{n}"):
            assert x_server_reachable(name), name
        for name in (f"localhost:{n}", f"127.0.0.1:{n}.0", f"tcp/localhost:{n}"):
            assert x_server_reachable(name), name
    # when it is gone, then it is not reachable
    assert not x_server_reachable(f":{n}")
    assert not x_server_reachable(f"localhost:{n}")


@needs_xvfb
def test_display_problem_is_none_with_a_real_x_server(linux_gui, monkeypatch):
    with xvfb() as n:
        monkeypatch.setenv("DISPLAY", f":{n}")
        assert display_problem() is None
        assert has_display() is True
        assert window.has_display() is True  # the name the window uses is this one


def test_a_display_with_no_server_is_named(linux_gui, monkeypatch):
    n = unused_display()
    assert not x_server_reachable(f":{n}")
    monkeypatch.setenv("DISPLAY", f":{n}")
    assert display_problem() == f"DISPLAY=:{n} is set but no X server answers there"
    assert has_display() is False


def test_a_dead_display_is_a_problem_even_with_wayland_up(linux_gui, monkeypatch, tmp_path):
    monkeypatch.setattr(display.cv2, "getBuildInformation", lambda: GTK_BUILD)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    monkeypatch.setenv("WAYLAND_DISPLAY", "wayland-9")
    monkeypatch.setenv("DISPLAY", f":{unused_display()}")
    with listening_unix_socket(tmp_path / "wayland-9"):
        assert "no X server answers" in (display_problem() or "")


def test_the_socket_file_is_tried_after_the_abstract_socket(monkeypatch, tmp_path):
    # given an "X server" only on a socket file (no abstract socket), as on non-Linux systems
    monkeypatch.setattr(display, "X11_SOCKET_DIR", str(tmp_path))
    with listening_unix_socket(tmp_path / "X7"):
        assert x_server_reachable(":7")
        assert x_server_reachable("unix:7.1")
    # a stale socket file that nobody listens on
    assert not x_server_reachable(":7")


@pytest.mark.parametrize(
    "name",
    ["", "   ", "0", ":", ":x", ":0.x", ":-1", "host:", "node::0", "decnet/host:0", "a/b/c:0", "::::"],
)
def test_malformed_displays_are_not_reachable(name):
    assert x_server_reachable(name) is False


def test_reachable_never_raises():
    assert x_server_reachable(None) is False  # type: ignore[arg-type]
    assert x_server_reachable("localhost:99999999") is False  # no such port


# --- display_problem -----------------------------------------------------------------------------------


def test_no_display_variables(linux_gui):
    assert display_problem() == "no display: DISPLAY and WAYLAND_DISPLAY are unset"


def test_a_headless_opencv(linux_gui, monkeypatch):
    monkeypatch.setattr(display.cv2, "getBuildInformation", lambda: HEADLESS_BUILD)
    monkeypatch.setenv("DISPLAY", ":0")
    assert "without a GUI toolkit" in (display_problem() or "")


def test_other_platforms_need_no_display_variable(linux_gui, monkeypatch):
    monkeypatch.setattr(sys, "platform", "darwin")
    assert display_problem() is None


def test_a_broken_build_information_is_a_problem_not_an_exception(linux_gui, monkeypatch):
    def broken() -> str:
        raise RuntimeError("boom")

    monkeypatch.setattr(display.cv2, "getBuildInformation", broken)
    assert display_problem() == "could not tell whether a display is available"


# --- Wayland -------------------------------------------------------------------------------------------


def test_wayland_socket_under_the_runtime_dir(linux_gui, monkeypatch, tmp_path):
    monkeypatch.setattr(display.cv2, "getBuildInformation", lambda: GTK_BUILD)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    monkeypatch.setenv("WAYLAND_DISPLAY", "wayland-1")
    # not there yet
    assert display_problem() == "WAYLAND_DISPLAY=wayland-1 is set but no Wayland compositor answers there"
    with listening_unix_socket(tmp_path / "wayland-1"):
        assert display_problem() is None
    # a stale socket file
    assert not wayland_reachable("wayland-1")


def test_wayland_socket_by_absolute_path(monkeypatch, tmp_path):
    monkeypatch.delenv("XDG_RUNTIME_DIR", raising=False)
    with listening_unix_socket(tmp_path / "w"):
        assert wayland_reachable(str(tmp_path / "w"))
    assert not wayland_reachable("wayland-0")  # relative, and no XDG_RUNTIME_DIR


def test_wayland_alone_is_not_enough_for_opencvs_qt(linux_gui, monkeypatch, tmp_path):
    # opencv-python's Qt has only the X11 (xcb) plugin: it would abort without DISPLAY
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    monkeypatch.setenv("WAYLAND_DISPLAY", "wayland-1")
    with listening_unix_socket(tmp_path / "wayland-1"):
        assert "OpenCV's Qt needs an X server" in (display_problem() or "")
        monkeypatch.setenv("QT_QPA_PLATFORM", "wayland")  # the user chose a Qt with Wayland support
        assert display_problem() is None


# --- the bug: a window with DISPLAY set and no X server ------------------------------------------------

WINDOW_SCRIPT = textwrap.dedent(
    """
    import numpy as np
    from stream.errors import SinkError
    from stream.sinks.window import WindowSink
    try:
        window = WindowSink("glanet-test")
    except SinkError as error:
        print(f"glanet: {error}")
        raise SystemExit(1)
    window.show(np.zeros((48, 64, 3), np.uint8))
    window.close()
    print("shown")
    """
)


def run_window(display_name: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("WAYLAND_DISPLAY", "QT_QPA_PLATFORM")}
    env["DISPLAY"] = display_name
    return subprocess.run(
        [sys.executable, "-c", WINDOW_SCRIPT], cwd=REPO, env=env, capture_output=True, text=True, timeout=45
    )


def test_a_window_on_a_dead_display_fails_with_one_line_not_an_abort():
    if not display._opencv_has_gui(display.cv2.getBuildInformation()):
        pytest.skip("this OpenCV has no GUI toolkit (headless): it cannot abort on a display")
    n = unused_display()
    result = run_window(f":{n}")
    assert result.returncode == 1, result.stderr[-2000:]  # Qt's abort is 134 (SIGABRT)
    assert "cannot open window" in result.stdout


@needs_xvfb
def test_a_window_opens_on_a_real_x_server():
    if not display._opencv_has_gui(display.cv2.getBuildInformation()):
        pytest.skip("this OpenCV has no GUI toolkit (headless): no window to open")
    with xvfb() as n:
        result = run_window(f":{n}")
    assert result.returncode == 0, result.stdout + result.stderr[-2000:]
    assert "shown" in result.stdout
