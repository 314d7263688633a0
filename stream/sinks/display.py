"""Whether an OpenCV window can open here: a display server that answers, and an OpenCV with a GUI.

Checked before the first window, because OpenCV's Qt aborts the whole process (exit 134) when it cannot
connect to the display that DISPLAY names.
"""

from __future__ import annotations

import logging
import os
import socket
import sys
from pathlib import Path

import cv2

log = logging.getLogger(__name__)

X11_SOCKET_DIR = "/tmp/.X11-unix"
X11_TCP_BASE_PORT = 6000
# Lines of the "GUI:" section of cv2.getBuildInformation() that name a toolkit (not e.g. "VTK support").
_GUI_BACKENDS = ("QT", "GTK", "WIN32UI", "COCOA", "WAYLAND", "FRAMEBUFFER")
_LOCAL_PROTOCOLS = ("unix", "local")
_TCP_PROTOCOLS = ("tcp", "inet", "inet6")


def _connects(family: int, address: str | bytes | tuple[str, int], timeout_s: float) -> bool:
    try:
        with socket.socket(family, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout_s)
            sock.connect(address)
        return True
    except (OSError, ValueError):
        return False


def _unix_connects(path: str, timeout_s: float) -> bool:
    return hasattr(socket, "AF_UNIX") and _connects(socket.AF_UNIX, path, timeout_s)


def _tcp_connects(host: str, port: int, timeout_s: float) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return True
    except (OSError, ValueError):
        return False


def x_server_reachable(display: str, timeout_s: float = 0.5) -> bool:
    """True where an X server accepts a connection at `display` (`:0`, `:0.0`, `unix:1`, `localhost:10.0`,
    `tcp/host:0`, `host/unix:0`, or a socket path). Only connects: it does not authenticate. Never raises."""
    try:
        display = display.strip()
        if display.startswith("/"):  # a socket path, e.g. XQuartz's launchd one ("/private/tmp/...:0")
            return _unix_connects(display, timeout_s)
        hostpart, colon, rest = display.rpartition(":")
        number = rest.partition(".")[0]
        screen = rest.partition(".")[2]
        if not colon or not number.isdigit() or (screen and not screen.isdigit()) or hostpart.endswith(":"):
            return False  # no ":<n>", or DECnet ("host::0"): not something to connect to
        protocol = ""
        if "/" in hostpart:
            left, _, right = hostpart.partition("/")
            if left.lower() in _LOCAL_PROTOCOLS + _TCP_PROTOCOLS:
                protocol, hostpart = left.lower(), right
            elif right == "unix":  # the old "host/unix:0" form: the local socket
                protocol, hostpart = "unix", ""
            else:
                return False
        host = hostpart.strip("[]")
        n = int(number)
        if protocol in _LOCAL_PROTOCOLS or (not protocol and host in ("", "unix")):
            path = f"{X11_SOCKET_DIR}/X{n}"
            # Linux X servers listen on the abstract socket too; it is there even where /tmp is not shared.
            return _unix_connects("\0" + path, timeout_s) or _unix_connects(path, timeout_s)
        return _tcp_connects(host or "localhost", X11_TCP_BASE_PORT + n, timeout_s)
    except Exception:  # a check, not an operation: any failure means "not reachable"
        log.debug("could not check X display %r", display, exc_info=True)
        return False


def wayland_reachable(display: str, timeout_s: float = 0.5) -> bool:
    """True where a Wayland compositor accepts a connection at WAYLAND_DISPLAY `display` (a name under
    $XDG_RUNTIME_DIR, or an absolute path). Never raises."""
    try:
        path = Path(display)
        if not path.is_absolute():
            runtime = os.environ.get("XDG_RUNTIME_DIR")
            if not runtime:
                return False
            path = Path(runtime) / display
        return path.exists() and _unix_connects(str(path), timeout_s)
    except Exception:
        log.debug("could not check Wayland display %r", display, exc_info=True)
        return False


def _opencv_has_gui(build_info: str) -> bool:
    """Parse the "GUI:" section of cv2.getBuildInformation().

    OpenCV >= 4.6 names the toolkit on the header line ("GUI:  QT5", or "NONE" in headless builds);
    older builds list the toolkits below it ("GTK+: YES (ver 3.24)").
    """
    lines = build_info.splitlines()
    for i, line in enumerate(lines):
        key, _, value = line.strip().partition(":")
        if key != "GUI":
            continue
        value = value.strip().upper()
        if value and value != "NONE":
            return True
        indent = len(line) - len(line.lstrip())
        for sub in lines[i + 1 :]:
            if not sub.strip() or len(sub) - len(sub.lstrip()) <= indent:
                break  # end of the section
            name, _, val = sub.strip().partition(":")
            if name.upper().startswith(_GUI_BACKENDS) and val.strip().upper().startswith("YES"):
                return True
        return False
    return False


def _opencv_uses_qt(build_info: str) -> bool:
    """True where OpenCV's GUI is Qt: "GUI: QT5" (>= 4.6), or "QT: YES" in the section (older)."""
    for line in build_info.splitlines():
        key, _, value = line.strip().partition(":")
        value = value.strip().upper()
        if (key == "GUI" and value.startswith("QT")) or (key == "QT" and value.startswith("YES")):
            return True
    return False


def display_problem() -> str | None:
    """None where an OpenCV window can open; otherwise one short line saying why not. Never raises."""
    try:
        build_info = cv2.getBuildInformation()
        if not _opencv_has_gui(build_info):
            return "OpenCV is built without a GUI toolkit (e.g. opencv-python-headless)"
        if not sys.platform.startswith("linux"):
            return None  # Windows and macOS windows need no display server variable
        x_display = os.environ.get("DISPLAY", "")
        wayland = os.environ.get("WAYLAND_DISPLAY", "")
        if not x_display and not wayland:
            return "no display: DISPLAY and WAYLAND_DISPLAY are unset"
        if x_display:
            # Checked even with Wayland up: a toolkit that picks X (Qt does) aborts on a dead DISPLAY.
            if not x_server_reachable(x_display):
                return f"DISPLAY={x_display} is set but no X server answers there"
            return None
        if _opencv_uses_qt(build_info) and not os.environ.get("QT_QPA_PLATFORM"):
            # opencv-python's Qt ships only the X11 (xcb) platform plugin: Wayland alone is not enough.
            return f"WAYLAND_DISPLAY={wayland} is set but OpenCV's Qt needs an X server (DISPLAY is unset)"
        if not wayland_reachable(wayland):
            return f"WAYLAND_DISPLAY={wayland} is set but no Wayland compositor answers there"
        return None
    except Exception:  # a check, not an operation: any failure means "no window"
        log.debug("could not tell whether a display is available", exc_info=True)
        return "could not tell whether a display is available"


def has_display() -> bool:
    """True only if an OpenCV window can open. Never raises."""
    return display_problem() is None
