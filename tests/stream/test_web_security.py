"""The web view under attack, against run_camera.py --serve on 127.0.0.1 without a token (the default) and
with its file limit at 1024 (soft and hard, so it cannot raise it): each attack is refused or harmless, in
one line of JSON, nothing is lost, and no traceback appears in the server's log.

Cross-site requests (a page the operator visits), DNS rebinding (a foreign Host), the API as a probe of
this machine (loopback and link-local sources, files), every camera key's range, bodies (size, depth),
the camera limit under concurrent adds, the viewer cap, and connections (1100 idle sockets, Slowloris,
pipelining clients that never read)."""

from __future__ import annotations

import contextlib
import json
import os
import resource
import shutil
import socket
import subprocess
import threading
import time
import urllib.parse

import pytest
from web_helpers import CLI, ROOT, call, get_json, serve, wait_for

from stream.sources.cameras import CAMERA_RANGES
from stream.web.policy import own_addresses

FILE_LIMIT = 1024


def _low_file_limit() -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (FILE_LIMIT, FILE_LIMIT))


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    folder = tmp_path_factory.mktemp("web_security")
    served = serve(
        "--source", "front=demo", "--serve-max-cameras", "6", "--duration", "900", "--log-level", "INFO",
        env={"GLANET_TOKEN": "", "GLANET_CACHE_DIR": str(folder / "cache")}, preexec_fn=_low_file_limit,
    )  # fmt: skip
    wait_for(
        lambda: cameras(served) and cameras(served)[0]["predictions"] > 0, 60, "the camera's predictions"
    )
    yield served
    code = served.stop()
    assert code == 0, served.stderr
    assert "Traceback" not in served.stderr, served.stderr


def url(served, path: str) -> str:
    return served.url.rstrip("/") + path


def address(served) -> tuple[str, int]:
    parts = urllib.parse.urlsplit(served.url)
    return parts.hostname, parts.port


def cameras(served) -> list[dict]:
    return get_json(url(served, "/api/cameras"))


def names(served) -> list[str]:
    return [c["name"] for c in cameras(served)]


def error_of(answer) -> tuple[int, str]:
    status, headers, body = answer
    assert headers.get("content-type", "").startswith("application/json"), (status, headers, body)
    message = json.loads(body)["error"]
    assert "Traceback" not in message and "\n" not in message
    return status, message


def post(served, body, headers=None, raw=None):
    return call("POST", url(served, "/api/cameras"), body, headers, raw=raw)


def status_of(pid: int, key: str) -> int:
    """A /proc/PID/status figure in kB (VmRSS, VmHWM)."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(f"{key}:"):
                return int(line.split()[1])
    raise AssertionError(f"no {key}")


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def predictions(served) -> int:
    return get_json(url(served, "/api/cameras/front"))["predictions"]


# -- a page the operator visits: cross-site requests -------------------------------------------------------
def test_cross_site_simple_posts_and_foreign_origins_are_refused_and_add_nothing(server):
    host, port = address(server)
    body = json.dumps({"name": "csrf", "source": "demo"}).encode()
    evil = {"Origin": "http://evil.example"}
    for headers, status in [
        ({**evil, "Content-Type": "text/plain"}, 403),  # what a page's fetch(no-cors) or a form can send
        ({**evil, "Content-Type": "application/x-www-form-urlencoded"}, 403),
        ({**evil, "Content-Type": "multipart/form-data; boundary=x"}, 403),
        ({**evil, "Content-Type": "application/json"}, 403),
        ({"Origin": "null", "Content-Type": "application/json"}, 403),  # a sandboxed frame, a file: page
        ({"Origin": f"http://{host}:{port + 1}", "Content-Type": "application/json"}, 403),  # same site
        ({"Sec-Fetch-Site": "cross-site", "Content-Type": "application/json"}, 403),
        ({"Content-Type": "text/plain"}, 415),  # no Origin: not a browser, but the body must be JSON
        ({"Content-Type": "application/x-www-form-urlencoded"}, 415),  # curl -d without -H
    ]:
        got, message = error_of(post(server, None, headers, raw=body))
        assert got == status, (headers, got, message)
    status, message = error_of(call("DELETE", url(server, "/api/cameras/front"), headers=evil))
    assert status == 403 and "cross-origin" in message
    assert names(server) == ["front"]
    # this server's own page (its Origin), and a client that sends none (curl), are served
    own = {"Origin": f"http://{host}:{port}"}
    cheap = {"demo_fps": 1, "demo_size": 32}
    assert post(server, {"name": "page", "source": "demo", **cheap}, own)[0] == 201
    assert post(server, {"name": "curl", "source": "demo", **cheap})[0] == 201
    assert call("DELETE", url(server, "/api/cameras/page"), headers=own)[0] == 200
    assert call("DELETE", url(server, "/api/cameras/curl"))[0] == 200
    assert names(server) == ["front"]


def test_a_foreign_host_is_refused_on_every_request_dns_rebinding(server):
    host, port = address(server)
    paths = ["/", "/healthz", "/api/cameras", "/metrics", "/static/app.js", "/cameras/front/snapshot.jpg"]
    foreign = ["evil.example", f"evil.example:{port}", f"{host}:{port + 1}", f"localhost.evil.example:{port}"]
    for method, path in [*(("GET", path) for path in paths), ("POST", "/api/cameras")]:
        for bad in foreign:
            body = {"name": "x", "source": "demo"} if method == "POST" else None
            status, message = error_of(call(method, url(server, path), body, {"Host": bad}))
            assert status == 421 and "--serve-host" in message, (path, bad)
    for good in (f"{host}:{port}", f"localhost:{port}", f"LOCALHOST:{port}", f"[::1]:{port}", host):
        assert call("GET", url(server, "/api/cameras"), headers={"Host": good})[0] == 200, good
    assert names(server) == ["front"]


# -- the API as a probe of this machine --------------------------------------------------------------------
def test_loopback_and_link_local_sources_are_refused_alike_and_never_connected_to(server):
    """An open port and a closed one, a name and the address in its odd spellings, the cloud's metadata
    service, an address hidden in IPv6, a URL read two ways: one answer, byte for byte, and the listening
    port sees no connection (the refusal comes before any)."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.setblocking(False)
    open_port = listener.getsockname()[1]
    with socket.create_server(("127.0.0.1", 0)) as closed:
        closed_port = closed.getsockname()[1]
    sources = [
        f"rtsp://127.0.0.1:{open_port}/x", f"rtsp://127.0.0.1:{closed_port}/x", f"http://localhost:{open_port}/",
        f"rtsp://user:pw@127.0.0.1:{open_port}/", f"rtsp://[::1]:{open_port}/", f"rtsp://0.0.0.0:{open_port}/",
        f"rtsp://2130706433:{open_port}/", f"rtsp://0x7f.1:{open_port}/", f"rtsp://127.1:{open_port}/",
        f"http://[::ffff:127.0.0.1]:{open_port}/", "http://169.254.169.254/latest/meta-data/",
        "http://[fe80::1]/", "rtsp://224.0.0.1/", "rtsp://240.0.0.1/", "rtsp://nonexistent.invalid/x",
        f"rtsp://127.0.0.1:{open_port}/x@10.0.0.1/",  # FFmpeg connects to 127.0.0.1, a naive reading 10.0.0.1
    ]  # fmt: skip
    # this machine's other addresses (a LAN one reaches its services as the loopback does)
    sources += [f"rtsp://[{a}]:{open_port}/" if a.version == 6 else f"rtsp://{a}:{open_port}/" for a in
                sorted(own_addresses(), key=str) if not a.is_loopback and not a.is_link_local]  # fmt: skip
    try:
        answers = {source: post(server, {"name": "probe", "source": source}) for source in sources}
        time.sleep(0.5)
        with pytest.raises(BlockingIOError):
            listener.accept()  # no connection reached the open port
    finally:
        listener.close()
    bodies = {body for _, _, body in answers.values()}
    assert {status for status, _, _ in answers.values()} == {403} and len(bodies) == 1, answers
    assert "--serve-allow-private" in json.loads(bodies.pop())["error"]
    assert names(server) == ["front"]
    # a camera on the LAN is what most users add: allowed by default (it never connects here: no route)
    status, _, body = post(server, {"name": "lan", "source": "rtsp://10.255.255.1:554/x", "open_timeout": 1})
    assert status == 201, body
    assert call("DELETE", url(server, "/api/cameras/lan"))[0] == 200


def test_webcams_are_refused_over_the_api_and_odd_digits_are_no_webcam(server):
    """The API must not turn on a camera in the room; '²' (a digit to str.isdigit, not to int) is a file."""
    for source in ("0", "webcam", " 2 ", "007"):
        status, message = error_of(post(server, {"name": "cam", "source": source}))
        assert status == 403 and "--serve-allow-webcams" in message, (source, message)
    status, message = error_of(post(server, {"name": "cam", "source": "\u00b2"}))
    assert status == 403 and "--serve-allow-files" in message, message
    assert names(server) == ["front"]


def test_a_header_given_twice_is_refused(server):
    host, port = address(server)
    for twice in (
        "Origin: http://evil.example\r\nOrigin: http://{h}",
        "Host: {h}",
        "Content-Type: text/plain",
    ):
        with socket.create_connection((host, port), timeout=5) as sock:
            head = (
                f"POST /api/cameras HTTP/1.1\r\nHost: {{h}}\r\nContent-Type: application/json\r\n{twice}\r\n"
                f"Content-Length: 2\r\nConnection: close\r\n\r\n{{}}"
            ).replace("{h}", f"{host}:{port}")
            sock.sendall(head.encode())
            answer = _read_some(sock)
        # h11 itself refuses a second Host; the gate the rest
        assert answer.startswith("HTTP/1.1 400") and '{"error": ' in answer, (twice, answer)
        assert "given more than once" in answer or twice.startswith("Host"), (twice, answer)
    assert names(server) == ["front"]


def test_file_sources_are_refused_alike_whether_they_exist_or_not(server, tmp_path):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)  # a reader that opened it would hang: refused before the disk is looked at
    sources = ["/etc/passwd", "/etc/shadow", "/nonexistent/clip.mp4", "/etc", "README.md", str(fifo), "../x"]
    answers = {source: post(server, {"name": "file", "source": source}) for source in sources}
    assert {status for status, _, _ in answers.values()} == {403}, answers
    assert len({body for _, _, body in answers.values()}) == 1, answers
    assert "--serve-allow-files" in error_of(answers["/etc/passwd"])[1]


def over_and_under(key: str) -> list[float]:
    """Values just outside the key's range at each end (the end itself where it is open)."""
    allowed = CAMERA_RANGES[key]
    whole = key in ("max_reconnects", "demo_seed", "demo_size")
    step = 1 if whole else 0.001
    low = allowed.low if allowed.low_open else allowed.low - step
    high = allowed.high if allowed.high_open else allowed.high + step
    return [int(low), int(high)] if whole else [low, high]


def test_every_camera_key_is_bounded_at_both_ends(server):
    for key in CAMERA_RANGES:
        for value in over_and_under(key):
            status, message = error_of(post(server, {"name": "bounds", "source": "demo", key: value}))
            assert status == 400 and f"{key} = " in message and "must be in" in message, (key, value, message)
    for extra in ({"demo_size": 4096}, {"open_timeout": 1e10}, {"watchdog": 1e12}, {"demo_seed": 10**40}):
        assert post(server, {"name": "bounds", "source": "demo", **extra})[0] == 400, extra
    assert names(server) == ["front"]


@pytest.mark.parametrize(
    ("flag", "value", "rule"),
    [("--demo-size", "4096", "[32, 1024] (pixels)"), ("--open-timeout", "1e10", "(0, 600] (seconds)"),
     ("--watchdog", "1e12", "(0, 600] (seconds)"), ("--demo-fps", "1000", "(0, 240]")],
)  # fmt: skip
def test_the_command_line_refuses_the_same_values_in_one_line(flag, value, rule):
    clean = {k: v for k, v in os.environ.items() if k != "GLANET_TOKEN"}
    done = subprocess.run(
        [*CLI, f"{flag}={value}", "--max-frames", "1"], capture_output=True, text=True, timeout=60, cwd=ROOT,
        env=clean,
    )  # fmt: skip
    lines = [x for x in done.stderr.splitlines() if x.strip()]
    assert done.returncode == 2 and len(lines) == 1, done.stderr
    assert lines[0].startswith(f"glanet: {flag} ") and f"must be in {rule}" in lines[0], lines[0]


# -- bodies ------------------------------------------------------------------------------------------------
def test_a_64_mib_body_is_refused_before_it_is_read(server):
    """Told by its Content-Length: 413 at once, the connection closed, the body never read. Sent chunked (no
    length): cut at the cap. The server's peak memory (VmHWM) does not grow by the body's size."""
    host, port = address(server)
    pid = server.proc.pid
    peak_before, rss_before = status_of(pid, "VmHWM"), status_of(pid, "VmRSS")
    mib = 1 << 20
    with socket.create_connection((host, port), timeout=10) as sock:
        sock.sendall(
            f"POST /api/cameras HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {64 * mib}\r\n\r\n".encode()
        )
        head = _read_some(sock)  # before a byte of the body is sent: the server closes it after
        assert head.startswith("HTTP/1.1 413") and "over 65536 bytes" in head, head
        sent = _send_until_closed(sock, b"x" * mib, 64)
    assert sent < 64 * mib, "the server read the whole body"
    with socket.create_connection((host, port), timeout=10) as sock:
        sock.sendall(
            f"POST /api/cameras HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n"
            "Transfer-Encoding: chunked\r\n\r\n".encode()
        )
        chunk = f"{mib:x}\r\n".encode() + b" " * mib + b"\r\n"
        sent = _send_until_closed(sock, chunk, 64)
        head = _read_some(sock)
    assert head.startswith("HTTP/1.1 413"), head
    assert sent < 64 * mib, "the server read the whole chunked body"
    peak_after, rss_after = status_of(pid, "VmHWM"), status_of(pid, "VmRSS")
    print(
        f"\nserver VmHWM {peak_before / 1024:.1f} -> {peak_after / 1024:.1f} MiB, "
        f"VmRSS {rss_before / 1024:.1f} -> {rss_after / 1024:.1f} MiB; "
        f"chunked: {sent / mib:.1f} MiB sent before the cut"
    )
    assert peak_after - peak_before < 16 * 1024, (peak_before, peak_after)  # kB: far under the body's 64 MiB
    assert names(server) == ["front"]


def _send_until_closed(sock: socket.socket, data: bytes, times: int) -> int:
    """Bytes sent of `times` x `data` before the server closed the connection."""
    sent = 0
    with contextlib.suppress(OSError):  # reset or broken pipe: the server closed it
        for _ in range(times):
            sock.sendall(data)
            sent += len(data)
    return sent


def _read_until(sock: socket.socket, needles: tuple[bytes, ...]) -> str:
    """What the server sends until one of `needles` arrives (or it closes, or 5 s pass)."""
    got, deadline = b"", time.monotonic() + 5
    while not any(n in got for n in needles) and time.monotonic() < deadline:
        data = sock.recv(65536)
        if not data:
            break
        got += data
    return got.decode("latin-1")


def _read_some(sock: socket.socket) -> str:
    """What the server sends until it closes the connection (or 5 s pass, or it resets)."""
    got = b""
    sock.settimeout(5)
    with contextlib.suppress(OSError):
        while data := sock.recv(65536):
            got += data
    return got.decode("latin-1")


def test_deep_json_and_odd_numbers_are_a_400(server):
    for raw, needle in [
        (b"[" * 30000 + b"]" * 30000, "nests over"),
        (b'{"name": "a", "source": "demo", "x": ' + b"[" * 30 + b"]" * 30 + b"}", "nests over"),
        (b'{"name": "a", "source": "demo", "watchdog": NaN}', "NaN"),
        (b'{"name": "a", "source": "demo", "watchdog": Infinity}', "Infinity"),
        (b'{"name": "a", "source": "demo", "demo_seed": ' + b"9" * 5000 + b"}", "not valid JSON"),
        (b'{"name": "a", "source": "demo", "watchdog": 1e999}', "finite"),
        (b"\xff\xfe{}", "not UTF-8"),
    ]:
        status, message = error_of(post(server, None, raw=raw))
        assert status == 400 and needle in message, (raw[:40], message)


def test_concurrent_adds_never_pass_the_camera_limit(server):
    """30 adds at once against a limit of 6 with one camera in: exactly 5 get in."""
    start = threading.Barrier(30)
    answers: list[int] = []

    def add(i: int) -> None:
        start.wait()
        answers.append(
            post(server, {"name": f"race{i}", "source": "demo", "demo_fps": 1, "demo_size": 32})[0]
        )

    threads = [threading.Thread(target=add, args=(i,)) for i in range(30)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    try:
        assert sorted(answers) == [201] * 5 + [409] * 25, answers
        assert len(names(server)) == 6
    finally:
        for name in names(server):
            if name != "front":
                call("DELETE", url(server, f"/api/cameras/{name}"))
    assert names(server) == ["front"]


# -- viewers and connections -------------------------------------------------------------------------------
def test_viewers_are_capped_and_their_places_come_back(server):
    host, port = address(server)
    most = get_json(url(server, "/api/info"))["max_viewers"]
    assert 8 <= most <= 128, most

    def open_stream() -> tuple[socket.socket, str]:
        sock = socket.create_connection((host, port), timeout=10)
        sock.sendall(f"GET /api/events/stream HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode())
        return sock, _read_until(sock, (b"retry: ", b"viewers already"))

    streams = []
    try:
        for _ in range(most):
            sock, head = open_stream()
            streams.append(sock)
            assert head.startswith("HTTP/1.1 200"), head
        sock, head = open_stream()
        streams.append(sock)
        assert head.startswith("HTTP/1.1 503") and "viewers already" in head, head
        # a tile's waiting snapshot is answered at once meanwhile, not refused
        assert call("GET", url(server, "/cameras/front/snapshot.jpg?after=0&wait=5"))[0] == 200
    finally:
        for sock in streams:
            sock.close()
    wait_for(lambda: open_stream()[1].startswith("HTTP/1.1 200"), 10, "a viewer's place back")


def test_idle_sockets_and_a_slow_header_leave_health_and_cameras_going(server):
    """1100 sockets that send nothing (more than the server's 1024 files) and a Slowloris client that
    sends its head a byte a second: /healthz answers all along, the camera keeps predicting, the server's
    open files stay under its limit, the slow client is cut at the head deadline (10 s), and one log line
    tells of the refusals."""
    host, port = address(server)
    pid = server.proc.pid
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 1300 <= hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if resource.getrlimit(resource.RLIMIT_NOFILE)[0] < 1300:
        pytest.skip("this test's own file limit is under 1300: it cannot open 1100 sockets")
    cut_after: list[float] = []

    def slowloris() -> None:
        with socket.create_connection((host, port), timeout=1.0) as sock:
            started = time.monotonic()
            with contextlib.suppress(OSError):  # a reset or a broken pipe: cut
                for byte in f"GET /healthz HTTP/1.1\r\nHost: {host}:{port}\r\nX-Slow: {'a' * 40}".encode():
                    sock.sendall(bytes([byte]))
                    with contextlib.suppress(TimeoutError):  # a second with no answer: the next byte
                        if sock.recv(1024) == b"":
                            break
            cut_after.append(time.monotonic() - started)

    before = predictions(server)
    idle: list[socket.socket] = []
    slow = threading.Thread(target=slowloris, daemon=True)
    try:
        for _ in range(1100):
            with contextlib.suppress(OSError):
                idle.append(socket.create_connection((host, port), timeout=5))
        fds = open_fds(pid)
        slow.start()  # after the flood: the newest connection, so only its deadline can cut it
        for _ in range(5):
            status, _, body = call("GET", url(server, "/healthz"))
            assert status == 200 and json.loads(body)["status"] == "ok"
            fds = max(fds, open_fds(pid))
            time.sleep(0.5)
        wait_for(lambda: predictions(server) > before + 5, 20, "the camera's next predictions")
        slow.join(30)
        info = {k: v for k, v in get_json(url(server, "/api/info")).items() if k.startswith("max_")}
    finally:
        for sock in idle:
            sock.close()
    print(
        f"\n{len(idle)} idle sockets connected; server files open {fds} (limit {FILE_LIMIT}); the slow "
        f"client cut after {cut_after[0] if cut_after else float('nan'):.1f} s; info {info}"
    )
    assert fds < FILE_LIMIT
    assert cut_after and 9.0 <= cut_after[0] <= 15.0, cut_after
    assert server.proc.poll() is None
    assert any("connections at the cap" in line for line in server.lines), server.stderr[-3000:]
    assert info["max_connections"] < FILE_LIMIT - 200, info
    wait_for(lambda: open_fds(pid) < fds - 500, 15, "the idle sockets' files given back")


def metric(served, name: str) -> float:
    _, _, body = call("GET", url(served, "/metrics"))
    for line in body.decode().splitlines():
        if line.startswith(f"{name} "):
            return float(line.split()[1])
    raise AssertionError(f"no metric {name}")


def test_clients_that_pipeline_and_never_read_are_cut_and_never_keep_health_out(server):
    """More clients than the connection cap, each pipelining 200 requests for a 30 KB snapshot with a
    2 KiB receive buffer and never reading a byte: every connection is busy with an answer nobody takes.
    Before the write deadline the cap refused every new connection, /healthz too, for as long as the
    sockets stayed open. Now /healthz answers all along (a stalled connection makes room), the camera
    keeps predicting, and the stalled ones are cut at the write deadline (15 s), their files given back
    while the attacker still holds its sockets."""
    host, port = address(server)
    pid = server.proc.pid
    cap = get_json(url(server, "/api/info"))["max_connections"]
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < cap + 200 <= hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if resource.getrlimit(resource.RLIMIT_NOFILE)[0] < cap + 200:
        pytest.skip(f"this test's own file limit is under {cap + 200}: it cannot open {cap + 20} sockets")
    request = f"GET /cameras/front/snapshot.jpg HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode()
    stalled_before = metric(server, "glanet_web_connections_stalled_total")
    before = predictions(server)
    attackers: list[socket.socket] = []
    answers: list[int] = []
    try:
        for _ in range(cap + 20):
            sock = socket.socket()
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 2048)  # before connect: a small window
            sock.settimeout(5)
            with contextlib.suppress(OSError):
                sock.connect((host, port))
                sock.setblocking(False)
                with contextlib.suppress(BlockingIOError):
                    sock.send(request * 200)
                attackers.append(sock)
        peak = open_fds(pid)
        time.sleep(3)  # every one busy now, its answer stuck
        t0 = time.monotonic()
        while time.monotonic() - t0 < 20:  # past the write deadline
            answers.append(call("GET", url(server, "/healthz"))[0])
            peak = max(peak, open_fds(pid))
            time.sleep(1)
        wait_for(lambda: predictions(server) > before + 5, 20, "the camera's next predictions")
        wait_for(lambda: open_fds(pid) < peak - 500, 15, "the stalled connections' files given back")
        stalled = metric(server, "glanet_web_connections_stalled_total") - stalled_before
    finally:
        for sock in attackers:
            sock.close()
    print(f"\n{len(attackers)} pipelining clients (cap {cap}); /healthz {answers}; server files at most "
          f"{peak}, {stalled:.0f} connections cut at the write deadline")  # fmt: skip
    assert len(attackers) > cap
    assert answers and set(answers) == {200}, answers
    assert stalled >= cap // 2, stalled
    assert any(
        "took nothing of their answers" in line or "stalled ones dropped" in line for line in server.lines
    )


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed (bash .ci/run installs it) — NOT run")
def test_in_a_browser_a_foreign_page_cannot_drive_or_read_the_server(server):
    """Chromium on a page of another site (attacker.test) submits a form and a no-cors fetch to the API, and
    opens the server by a name resolved to 127.0.0.1 (what DNS rebinding achieves): nothing is added, and
    the rebound name gets 421."""
    sync_api = pytest.importorskip("playwright.sync_api")
    host, port = address(server)
    target = f"http://{host}:{port}/api/cameras"
    attack = f"""<!doctype html><form id=f method=post action="{target}" enctype="text/plain">
        <input name='{{"name": "formcsrf", "source": "demo", "x": "' value='"}}'></form>
        <script>
        fetch("{target}", {{method: "POST", mode: "no-cors", headers: {{"Content-Type": "text/plain"}},
               body: JSON.stringify({{name: "fetchcsrf", source: "demo"}})}}).finally(() => f.submit());
        </script>"""
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM, headless=True,
            args=["--no-sandbox", "--disable-gpu", "--host-resolver-rules=MAP rebound.test 127.0.0.1"],
        )  # fmt: skip
        page = browser.new_page()
        page.route(
            "http://attacker.test/**", lambda route: route.fulfill(body=attack, content_type="text/html")
        )
        with page.expect_response(lambda r: r.url == target and r.request.method == "POST") as submitted:
            page.goto("http://attacker.test/")
        assert submitted.value.status == 403
        response = browser.new_page().goto(f"http://rebound.test:{port}/api/cameras")
        assert response is not None and response.status == 421
        browser.close()
    assert names(server) == ["front"]
