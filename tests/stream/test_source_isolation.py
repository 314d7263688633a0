"""One hung camera holds up no other (issue 19), against real servers on 127.0.0.1: a camera that accepts and
never answers (or answers with headers and never a stream) delays no other camera's open, gives up within its
own timeout, leaves no thread behind once removed; cameras added and removed give their memory back.

OpenCV's FFmpeg open takes a process-wide lock: the control test shows it (a file's open waits out the hung
one), so the same measurement on our path can fail."""

from __future__ import annotations

import contextlib
import selectors
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest
from web_helpers import call, get_json, serve, wait_for

from stream.sources.capture import Capture, CaptureConfig
from stream.sources.network import NOT_EXPLAINED
from stream.sources.readers import parse_source
from stream.types import SourceStatus

HOST = "127.0.0.1"
HUNG_OPEN_S = 3.0  # the hung camera's open timeout: far above FIRST_FRAME_S, so a wait on it shows
FIRST_FRAME_S = 1.5  # a camera's open and first frame, while another hangs (measured: ~10 ms)
GIVE_UP_SLACK_S = 1.5  # the hung camera's failure after its timeout: its TCP probe, a poll slice
SECRET = "hunter2-pw"
TOKEN = "isolation-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}

# An RTSP server that answers a request with its headers (a DESCRIBE announces an SDP) but sends no body.
_RTSP_HEADERS = (
    "RTSP/1.0 200 OK\r\nCSeq: {cseq}\r\nContent-Type: application/sdp\r\nContent-Length: 400\r\n\r\n"
)
# An HTTP server that answers 200 with a video's headers but never a byte of the video.
_HTTP_HEADERS = "HTTP/1.1 200 OK\r\nContent-Type: video/mp4\r\nContent-Length: 10000000\r\n\r\n"


class HungServer:
    """A TCP server on 127.0.0.1 that accepts every connection and then hangs: `silent` never sends a byte;
    `http` and `rtsp` answer the first request's headers and never send what they announce. One thread,
    every connection held open until `close()`; `answered` counts the requests answered (or, silent, the
    connections taken)."""

    def __init__(self, mode: str) -> None:
        self.mode = mode
        self.listener = socket.create_server((HOST, 0))
        self.port = self.listener.getsockname()[1]
        self.answered = 0
        self._selector = selectors.DefaultSelector()
        self._selector.register(self.listener, selectors.EVENT_READ)
        self._conns: dict[socket.socket, bytes] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name=f"hung-{mode}", daemon=True)
        self._thread.start()

    def url(self, scheme: str = "", path: str = "/stream") -> str:
        scheme = scheme or ("rtsp" if self.mode == "rtsp" else "http")
        return f"{scheme}://admin:{SECRET}@{HOST}:{self.port}{path}"

    def _serve(self) -> None:
        while not self._stop.is_set():
            for key, _ in self._selector.select(0.05):
                sock = key.fileobj
                assert isinstance(sock, socket.socket)
                if sock is self.listener:
                    conn, _ = self.listener.accept()
                    self._conns[conn] = b""
                    self._selector.register(conn, selectors.EVENT_READ)
                    if self.mode == "silent":
                        self.answered += 1
                    continue
                data = b""
                with contextlib.suppress(OSError):
                    data = sock.recv(4096)
                if not data:  # the client gave up: let it go
                    self._selector.unregister(sock)
                    sock.close()
                    self._conns.pop(sock, None)
                    continue
                self._conns[sock] += data
                self._answer(sock)

    def _answer(self, sock: socket.socket) -> None:
        text = self._conns[sock].decode("latin-1")
        if self.mode == "silent" or "\r\n\r\n" not in text:
            return
        request, _, rest = text.partition("\r\n\r\n")
        self._conns[sock] = rest.encode("latin-1")
        if self.mode == "http":
            reply = _HTTP_HEADERS
        else:
            cseq = next(
                (ln.split(":", 1)[1].strip() for ln in request.splitlines() if ln.lower().startswith("cseq")),
                "1",
            )
            if request.startswith("OPTIONS"):  # a full answer, so the client goes on to DESCRIBE
                reply = f"RTSP/1.0 200 OK\r\nCSeq: {cseq}\r\nPublic: OPTIONS, DESCRIBE, SETUP, PLAY\r\n\r\n"
            else:
                reply = _RTSP_HEADERS.format(cseq=cseq)
        with contextlib.suppress(OSError):
            sock.sendall(reply.encode())
        self.answered += 1

    @property
    def connections(self) -> int:
        """The connections open now: a client whose open gave up has hung up."""
        return len(self._conns)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        for conn in list(self._conns):
            conn.close()
        self.listener.close()
        self._selector.close()


@pytest.fixture
def hung_server(request) -> Iterator[HungServer]:
    server = HungServer(getattr(request, "param", "silent"))
    try:
        yield server
    finally:
        server.close()


@pytest.fixture(scope="module")
def video(tmp_path_factory) -> Path:
    """A 160x120 mp4 (mp4v) of 6 s at 15 fps, each frame a different grey and a moving bar."""
    path = tmp_path_factory.mktemp("isolation") / "clip.mp4"
    out = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 15.0, (160, 120))
    for i in range(90):
        image = np.full((120, 160, 3), (i * 3) % 256, np.uint8)
        image[:, (i * 4) % 160 : (i * 4) % 160 + 8] = 255
        out.write(image)
    out.release()
    assert path.stat().st_size > 0
    return path


def network_capture(url: str, open_timeout_s: float = HUNG_OPEN_S, read_timeout_s: float = 1.0) -> Capture:
    spec = parse_source(url, open_timeout_s=open_timeout_s, read_timeout_s=read_timeout_s)
    return Capture(spec.factory, spec.name, CaptureConfig(live=True, max_reconnects=0))


def file_capture(path: Path) -> Capture:
    spec = parse_source(str(path))
    return Capture(spec.factory, spec.name, CaptureConfig(live=False, realtime=False))


def first_frame_s(capture: Capture, timeout: float = 10.0) -> float:
    """Seconds from `start()` to the capture's first frame."""
    t0 = time.monotonic()
    capture.start()
    frame = capture.get(timeout)
    assert frame is not None, capture.status
    assert frame.image.ndim == 3
    return time.monotonic() - t0


def open_in_progress(server: HungServer, before: int = 0, timeout: float = 5.0) -> None:
    """Wait until the hung server has answered (or taken) one more request: an open of it is under way."""
    wait_for(lambda: server.answered > before, timeout, f"a connection to the {server.mode} server", 0.005)


# -- a camera's open, while another camera's open hangs ----------------------------------------------------
@pytest.mark.timeout(60)
@pytest.mark.parametrize("hung_server", ["silent", "http", "rtsp"], indirect=True)
def test_a_hung_camera_delays_no_other_cameras_open_and_gives_up_within_its_timeout(hung_server, video):
    hung = network_capture(hung_server.url())
    t0 = time.monotonic()
    hung.start()
    try:
        open_in_progress(hung_server)
        alone = file_capture(video)
        with alone:
            took = first_frame_s(alone)
        assert took < FIRST_FRAME_S, f"a file's first frame took {took:.2f} s while a camera hung"
        assert hung.status.status is SourceStatus.CONNECTING  # the hung one is still at it
        wait_for(
            lambda: hung.status.status is SourceStatus.FAILED, HUNG_OPEN_S + 5, "the hung camera to fail"
        )
        gave_up = time.monotonic() - t0
    finally:
        hung.close()
    assert HUNG_OPEN_S * 0.9 <= gave_up <= HUNG_OPEN_S + GIVE_UP_SLACK_S, gave_up
    message = str(hung.error)
    assert "\n" not in message and SECRET not in message and "Traceback" not in message, message
    # one clear line: what it was, what happened, what to do
    assert "timed out after" in message and "--open-timeout" in message, message
    assert [u.status for u in hung.history] == [SourceStatus.CONNECTING, SourceStatus.FAILED]


@pytest.mark.timeout(90)
def test_a_real_rtsp_stream_opens_while_another_camera_hangs(hung_server, rtsp_server):
    # the hung camera's timeout well above an RTSP open's few seconds on a loaded host: a wait on it shows
    hung_timeout_s = 20.0
    hung = network_capture(hung_server.url("rtsp"), open_timeout_s=hung_timeout_s)
    hung.start()
    try:
        open_in_progress(hung_server)
        # its first frame waits for a keyframe (one a second), later on a loaded host: not a hung read. On
        # CI's loaded host GStreamer's server once failed a PLAY (FFmpeg: "Operation not permitted", its
        # reply never came) with nothing but this test running; a camera that fails its first open fails
        # (a bad URL at start is said, not retried), so the test opens it again, at most twice more
        failures = []
        for _ in range(3):
            with network_capture(rtsp_server.url, open_timeout_s=10.0, read_timeout_s=5.0) as rtsp:
                t0 = time.monotonic()
                rtsp.start()
                frame = rtsp.get(10.0)
                took = time.monotonic() - t0
            if frame is not None:
                break
            failures.append(rtsp.status.message)
        assert frame is not None, f"{failures}\n--- server log ---\n{rtsp_server._stderr()}"
        # an RTSP open is a handshake and a keyframe (the server sends one a second): more than a file's,
        # and under load a few seconds; never the hung camera's timeout
        assert took < hung_timeout_s / 2, f"first frame in {took:.2f} s (after {failures})"
        assert hung.status.status is SourceStatus.CONNECTING
    finally:
        hung.close()


def cv2_open_s(target: str, timeout_ms: int = 0) -> tuple[bool, float]:
    params = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, timeout_ms] if timeout_ms else []
    t0 = time.monotonic()
    cap = cv2.VideoCapture(target, cv2.CAP_FFMPEG, params)
    opened = cap.isOpened()
    cap.release()
    return opened, time.monotonic() - t0


@pytest.mark.timeout(60)
def test_control_opencv_open_of_a_hung_camera_holds_up_a_file_open(hung_server, video):
    """The old path: cv2.VideoCapture of the hung camera in one thread, of a file in another. OpenCV holds
    one lock for the whole of an FFmpeg open, so the file waits out most of the hung open's timeout."""
    hung = threading.Thread(
        target=cv2_open_s, args=(f"http://{HOST}:{hung_server.port}/x", int(HUNG_OPEN_S * 1000))
    )
    hung.start()
    try:
        open_in_progress(hung_server)
        opened, took = cv2_open_s(str(video))
    finally:
        hung.join(HUNG_OPEN_S + 5)
    assert opened
    if took < FIRST_FRAME_S:
        pytest.fail(
            f"OpenCV {cv2.__version__} opened the file in {took:.2f} s while its open of a hung camera "
            "went on: its FFmpeg lock no longer holds opens up; this control no longer shows the old problem"
        )


# -- no thread left behind ---------------------------------------------------------------------------------
def _threads_at(baseline: int) -> bool:
    return threading.active_count() <= baseline


@pytest.mark.timeout(60)
def test_cameras_added_and_removed_leave_no_thread_behind(hung_server, video):
    baseline = threading.active_count()
    for _ in range(20):
        before = hung_server.answered
        hung, ok = network_capture(hung_server.url()), file_capture(video)
        hung.start()
        assert first_frame_s(ok) < FIRST_FRAME_S
        open_in_progress(hung_server, before)
        # removed at once, its open still hanging: close() does not wait for it (timeout 0), its thread
        # leaves when the open gives up
        hung.close(timeout=0.0)
        ok.close()
    during = threading.active_count()
    wait_for(
        lambda: _threads_at(baseline), HUNG_OPEN_S + GIVE_UP_SLACK_S, f"the threads to fall to {baseline}"
    )
    left = threading.active_count()
    print(f"threads: {baseline} before, {during} just after 20 cycles, {left} once the hung opens gave up")
    assert during > baseline  # the hung opens' threads were there: the wait above had something to wait for


def proc_status(pid: int, key: str) -> int:
    """A number from /proc/PID/status (VmRSS in kB, Threads)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise AssertionError(f"no {key} in /proc/{pid}/status")


def api(served, path: str):
    return get_json(served.url.rstrip("/") + path, AUTH)


def add(served, name: str, source: str, **extra) -> dict:
    status, _, body = call(
        "POST", served.url.rstrip("/") + "/api/cameras", {"name": name, "source": source, **extra}, AUTH
    )
    assert status == 201, (status, body)
    return api(served, f"/api/cameras/{name}")


def remove(served, name: str) -> None:
    status, _, body = call("DELETE", served.url.rstrip("/") + f"/api/cameras/{name}", headers=AUTH)
    assert status == 200, (status, body)


def names(served) -> list[str]:
    return [c["name"] for c in api(served, "/api/cameras")]


def status_of(served, name: str) -> str:
    return api(served, f"/api/cameras/{name}")["status"]


# -- end to end: run_camera.py --serve, cameras added and removed through the web API ----------------------
@pytest.fixture(scope="module")
def served(tmp_path_factory):
    folder = tmp_path_factory.mktemp("isolation_web")
    served = serve(
        "--source", "base=demo", "--demo-size", "96", "--serve-max-cameras", "8", "--duration", "600",
        # the hung cameras are at 127.0.0.1, the clips on this disk
        "--serve-allow-private", "--serve-allow-files",
        env={"GLANET_TOKEN": TOKEN, "GLANET_CACHE_DIR": str(folder / "cache")},
    )  # fmt: skip
    wait_for(lambda: api(served, "/api/cameras/base")["predictions"] > 0, 60, "the base camera's predictions")
    yield served
    code = served.stop()
    assert code == 0, served.stderr
    assert "Traceback" not in served.stderr, served.stderr
    assert SECRET not in served.stderr
    # the hung camera's end, in the run's last lines: one line, what happened and what to do; added over
    # the API, it says no more than that (the reason is in the log)
    (hung,) = [line for line in served.lines if line.startswith("final: hung |")]
    assert "failed (cannot connect to http://***@" in hung and NOT_EXPLAINED in hung, hung
    assert any("cannot connect after" in line and "http://***@" in line for line in served.lines)


@pytest.mark.timeout(60)
def test_through_the_api_a_file_camera_goes_live_and_predicts_while_a_hung_one_connects(
    served, hung_server, video
):
    t0 = time.monotonic()
    add(served, "hung", hung_server.url(), open_timeout=HUNG_OPEN_S)
    try:
        open_in_progress(hung_server)
        t1 = time.monotonic()
        add(served, "clip", str(video))
        wait_for(
            lambda: api(served, "/api/cameras/clip")["predictions"] > 0, 10, "the clip's predictions", 0.02
        )
        took = time.monotonic() - t1
        clip = api(served, "/api/cameras/clip")
        assert clip["status"] == "live" and took < FIRST_FRAME_S, (took, clip)
        assert status_of(served, "hung") == "connecting"
        wait_for(
            lambda: status_of(served, "hung") == "failed", HUNG_OPEN_S + 5, "the hung camera to fail", 0.05
        )
        gave_up = time.monotonic() - t0
        hung = api(served, "/api/cameras/hung")
    finally:
        for name in ("hung", "clip"):
            call("DELETE", served.url.rstrip("/") + f"/api/cameras/{name}", headers=AUTH)
    print(
        f"through the API: the clip predicted after {took:.3f} s, the hung one failed after {gave_up:.2f} s"
    )
    assert gave_up <= HUNG_OPEN_S + GIVE_UP_SLACK_S, gave_up
    message = hung["message"]
    assert NOT_EXPLAINED in message and "\n" not in message and SECRET not in message, message


@pytest.mark.timeout(60)
def test_through_the_api_a_failed_open_tells_nothing_of_which_ports_answer(served):
    """A camera at a port where nothing listens, one at a port whose server answers without a stream, one
    whose server never answers: the same status text, so the API is no port scanner of the hosts it may
    reach (a camera of the command line or the cameras file says which it was)."""
    closed = socket.create_server(("127.0.0.1", 0))
    closed_port = closed.getsockname()[1]
    closed.close()
    answers = socket.create_server(("127.0.0.1", 0))
    threading.Thread(
        target=lambda: answers.accept()[0].sendall(b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n"),
        daemon=True,
    ).start()
    silent = socket.create_server(("127.0.0.1", 0))
    targets = {
        "closed": f"rtsp://127.0.0.1:{closed_port}/x",
        "answers": f"http://127.0.0.1:{answers.getsockname()[1]}/x",
        "silent": f"http://127.0.0.1:{silent.getsockname()[1]}/x",
    }
    try:
        for name, source in targets.items():
            add(served, name, source, open_timeout=HUNG_OPEN_S)
        for name in targets:
            wait_for(
                lambda n=name: status_of(served, n) == "failed", HUNG_OPEN_S + 10, f"{name} to fail", 0.05
            )
        messages = {name: api(served, f"/api/cameras/{name}")["message"] for name in targets}
    finally:
        for name in targets:
            call("DELETE", served.url.rstrip("/") + f"/api/cameras/{name}", headers=AUTH)
        answers.close()
        silent.close()
    said = {messages[name].replace(source, "URL") for name, source in targets.items()}
    assert said == {f"cannot connect to URL: {NOT_EXPLAINED}"}, messages


@pytest.mark.timeout(90)
def test_through_the_api_removed_cameras_leave_no_thread_behind(served, hung_server, video):
    pid = served.proc.pid

    def cycle(name: str) -> None:
        before = hung_server.answered
        add(served, f"{name}-hung", hung_server.url(), open_timeout=HUNG_OPEN_S)
        add(served, f"{name}-clip", str(video))
        open_in_progress(hung_server, before)
        live = wait_for(lambda: status_of(served, f"{name}-clip") == "live", 5, "the clip to go live", 0.02)
        assert live and status_of(served, f"{name}-hung") == "connecting"
        remove(served, f"{name}-hung")
        remove(served, f"{name}-clip")

    cycle("warm")  # the server's own worker threads are started (and kept) by the first requests
    # the warm-up's hung open gives up and hangs up: nothing of it is in the baseline
    wait_for(lambda: hung_server.connections == 0, HUNG_OPEN_S + GIVE_UP_SLACK_S, "the warm-up's open to end")
    baseline = proc_status(pid, "Threads")
    t0 = time.monotonic()
    for i in range(20):
        cycle(f"c{i}")
    during = proc_status(pid, "Threads")
    # each hung open ends within its own timeout, and its thread with it
    wait_for(
        lambda: proc_status(pid, "Threads") <= baseline,
        HUNG_OPEN_S + GIVE_UP_SLACK_S + 2,
        f"{baseline} threads",
    )
    print(f"server threads: {baseline} before, {during} after 20 cycles ({time.monotonic() - t0:.1f} s), "
          f"{proc_status(pid, 'Threads')} once the hung opens gave up")  # fmt: skip
    assert during > baseline


# A removed camera's frames were kept with it: a --fast demo camera's 64-frame buffer of 224x224 frames is
# 9.6 MB. Measured over 30 cycles, from the 3rd: the old code grew 173 MiB (911 -> 1084 MiB), this one
# 17-21 MiB (malloc's arenas and the model runtime: tracemalloc finds < 1 MiB of Python objects kept).
RSS_GROWTH_MAX_MIB = 60


@pytest.mark.timeout(90)
def test_through_the_api_memory_returns_after_cameras_come_and_go(served):
    pid = served.proc.pid
    rss: list[int] = []
    for i in range(30):
        name = f"d{i}"
        add(served, name, "demo", demo_size=224, fast=True)
        wait_for(lambda n=name: api(served, f"/api/cameras/{n}")["predictions"] > 0, 20, "a prediction", 0.02)
        remove(served, name)
        wait_for(lambda n=name: n not in names(served), 5, "the camera to go", 0.02)
        rss.append(proc_status(pid, "VmRSS") // 1024)
    time.sleep(1.0)  # a removed camera is let go of once the runner's round is over: well within a second
    settled = proc_status(pid, "VmRSS") // 1024
    print(
        f"RSS (MiB) after cycles 1, 3, 10, 20, 30: {rss[0]}, {rss[2]}, {rss[9]}, {rss[19]}, {rss[29]}; "
        f"settled {settled}"
    )
    assert settled - rss[2] < RSS_GROWTH_MAX_MIB, rss
