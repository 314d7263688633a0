"""The web view's HTTP API, against run_camera.py --serve in a subprocess on 127.0.0.1: every endpoint, the
token (and its ?token= redirect), redaction, refusals, JPEG encoded once whatever the viewers, no backlog for
a slow viewer. The attacks on a tokenless server are in test_web_security.py."""

from __future__ import annotations

import http.client
import itertools
import json
import socket
import threading
import time
import urllib.parse

import cv2
import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families
from web_helpers import call, get_json, serve, wait_for

TOKEN = "test-token-0123456789"
# what the API adds to an event of the events file: its id, its pair, whether its peak frame is kept
HUB_KEYS = {"id", "end_id", "start_id", "start_time", "thumbnail"}
AUTH = {"Authorization": f"Bearer {TOKEN}"}
SECRET = "hunter2-secret"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    folder = tmp_path_factory.mktemp("web_api")
    served = serve(
        "--source", "front=demo", "--source", "back=demo", "--events", str(folder / "events.jsonl"),
        "--serve-max-cameras", "4", "--duration", "600",
        # the loopback allowed: a camera at 127.0.0.1:9 makes a connection attempt to redact
        "--serve-allow-private", "--serve-host", "glanet.test",
        env={"GLANET_TOKEN": TOKEN, "GLANET_CACHE_DIR": str(folder / "cache")},
    )  # fmt: skip
    served.folder = folder
    wait_for(lambda: all(c["has_picture"] for c in api(served, "/api/cameras")), 60, "both cameras' pictures")
    yield served
    code = served.stop()
    assert code == 0, served.stderr
    assert "Traceback" not in served.stderr, served.stderr
    assert SECRET not in served.stderr


def api(served, path):
    return get_json(served.url.rstrip("/") + path, AUTH)


def url(served, path):
    return served.url.rstrip("/") + path


def error_of(status_headers_body):
    status, headers, body = status_headers_body
    assert headers.get("content-type", "").startswith("application/json"), headers
    message = json.loads(body)["error"]
    assert "Traceback" not in message and "\n" not in message
    return status, message


# -- the token ---------------------------------------------------------------------------------------------
def test_healthz_needs_no_token(server):
    status, _, body = call("GET", url(server, "/healthz"))
    assert status == 200 and json.loads(body)["status"] == "ok"


@pytest.mark.parametrize(
    "path", ["/", "/api/cameras", "/metrics", "/cameras/front/snapshot.jpg", "/static/app.js"]
)
def test_every_other_request_needs_the_token(server, path):
    assert error_of(call("GET", url(server, path))) == (
        401, "this server needs a token (Authorization: Bearer, or ?token=)"
    )  # fmt: skip
    assert error_of(call("GET", url(server, path), headers={"Authorization": "Bearer wrong-token"})) == (
        401, "wrong token"
    )  # fmt: skip
    answers = []
    for _ in range(3):  # a snapshot may say 503 + Retry-After (no picture this instant): as a client would
        status, headers, body = call("GET", url(server, path), headers=AUTH)
        answers.append((status, body[:200]))
        if status != 503 or "retry-after" not in headers:
            break
        time.sleep(float(headers["retry-after"]))
    assert status == 200, (answers, api(server, "/api/cameras"))


def test_the_page_given_the_token_in_its_url_redirects_setting_a_cookie_the_rest_carries(server):
    """?token= on the page is answered with a redirect to the same URL without it (so the token leaves the
    address bar and the history) that sets the cookie; the page then loads with the cookie alone."""
    status, headers, body = call("GET", url(server, f"/?token={TOKEN}"), follow=False)
    assert status == 303 and headers["location"] == "/" and body == b""
    cookie = headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/" in cookie
    jar = cookie.split(";")[0]
    status, _, body = call("GET", url(server, "/"), headers={"Cookie": jar})
    assert status == 200 and b"<title>glanet</title>" in body
    assert call("GET", url(server, "/api/cameras"), headers={"Cookie": jar})[0] == 200
    assert call("GET", url(server, "/api/cameras"), headers={"Cookie": "glanet_token=nope"})[0] == 401
    assert call("GET", url(server, "/?token=nope"), follow=False)[0] == 401
    # the other query keys stay; a navigation elsewhere is redirected too; a player's request is served
    status, headers, _ = call("GET", url(server, f"/?a=1&token={TOKEN}&b=2"), follow=False)
    assert status == 303 and headers["location"] == "/?a=1&b=2"
    navigate = {"Sec-Fetch-Mode": "navigate", "Sec-Fetch-Dest": "document"}
    status, headers, _ = call("GET", url(server, f"/api/info?token={TOKEN}"), headers=navigate, follow=False)
    assert status == 303 and headers["location"] == "/api/info"
    assert call("GET", url(server, f"/api/info?token={TOKEN}"), follow=False)[0] == 200
    # never to another site: a path of two slashes is not a host
    conn = http.client.HTTPConnection(*urllib.parse.urlsplit(server.url).netloc.split(":"), timeout=10)
    conn.request("GET", f"//evil.example/?token={TOKEN}", headers=navigate)
    response = conn.getresponse()
    assert response.status == 303 and response.getheader("location") == "/evil.example/"
    conn.close()


def test_every_response_says_no_referrer_no_sniffing_no_framing(server):
    for method, path, headers, status in [
        ("GET", "/", AUTH, 200),
        ("GET", "/static/app.js", AUTH, 200),
        ("GET", "/api/cameras", {}, 401),
        ("GET", "/no/such/page", AUTH, 404),
        ("GET", f"/?token={TOKEN}", {}, 303),
        ("GET", "/healthz", {"Host": "evil.example"}, 421),
    ]:
        got, response_headers, _ = call(method, url(server, path), headers=headers, follow=False)
        assert got == status, (path, got)
        assert response_headers["referrer-policy"] == "no-referrer", path
        assert response_headers["x-content-type-options"] == "nosniff", path
        assert response_headers["x-frame-options"] == "DENY", path
        assert "frame-ancestors 'none'" in response_headers["content-security-policy"], path


def test_a_host_given_with_serve_host_is_answered_and_no_other(server):
    port = urllib.parse.urlsplit(server.url).port
    for host in (f"glanet.test:{port}", "glanet.test", f"localhost:{port}", f"[::1]:{port}"):
        assert call("GET", url(server, "/api/cameras"), headers={**AUTH, "Host": host})[0] == 200, host
    for host in ("evil.example", f"evil.example:{port}", f"glanet.test:{port + 1}", f"a.glanet.test:{port}"):
        status, message = error_of(call("GET", url(server, "/api/cameras"), headers={**AUTH, "Host": host}))
        assert status == 421 and "--serve-host" in message, host


def test_the_token_in_the_header_passes_the_origin_rule_and_the_cookie_does_not(server):
    """A page cannot add an Authorization header cross-origin (no preflight is granted), but the browser
    sends the cookie with any same-site request (another port of this machine): the cookie needs the
    page's own Origin."""
    jar = call("GET", url(server, f"/?token={TOKEN}"), follow=False)[1]["set-cookie"].split(";")[0]
    foreign = {"Origin": "http://127.0.0.1:1"}
    body = {"name": "viacookie", "source": "demo"}
    status, message = error_of(call("POST", url(server, "/api/cameras"), body, {"Cookie": jar, **foreign}))
    assert status == 403 and "cross-origin" in message
    assert call("GET", url(server, "/api/cameras/viacookie"), headers=AUTH)[0] == 404
    status, _, _ = call("POST", url(server, "/api/cameras"), {"name": "viaheader", "source": "demo"},
                        {**AUTH, **foreign})  # fmt: skip
    assert status == 201
    assert call("DELETE", url(server, "/api/cameras/viaheader"), headers={**AUTH, **foreign})[0] == 200


# -- cameras -----------------------------------------------------------------------------------------------
def test_cameras_lists_each_with_its_numbers(server):
    cameras = api(server, "/api/cameras")
    assert [c["name"] for c in cameras] == ["front", "back"]
    for c in cameras:
        assert c["status"] == "live" and c["source"].startswith("demo (SynthActions")
        assert c["frames"] > 0 and c["fps"] is not None
        assert {"latency_p95_ms", "top1", "last_event", "reconnects"} <= c.keys()
    assert api(server, "/api/cameras/front")["name"] == "front"


def test_a_camera_added_and_removed_over_the_api(server):
    status, _, body = call("POST", url(server, "/api/cameras"), {"name": "side", "source": "demo"}, AUTH)
    assert status == 201, body
    assert json.loads(body)["name"] == "side"
    wait_for(
        lambda: api(server, "/api/cameras/side")["predictions"] > 0, 30, "the added camera's predictions"
    )
    assert call("GET", url(server, "/cameras/side/snapshot.jpg"), headers=AUTH)[0] == 200
    # a name taken (case is ignored)
    assert (
        error_of(call("POST", url(server, "/api/cameras"), {"name": "SIDE", "source": "demo"}, AUTH))[0]
        == 409
    )
    status, _, body = call("DELETE", url(server, "/api/cameras/side"), headers=AUTH)
    assert status == 200 and json.loads(body) == {"removed": "side"}
    assert [c["name"] for c in api(server, "/api/cameras")] == ["front", "back"]
    assert error_of(call("GET", url(server, "/api/cameras/side"), headers=AUTH))[0] == 404
    assert error_of(call("DELETE", url(server, "/api/cameras/side"), headers=AUTH))[0] == 404
    assert error_of(call("GET", url(server, "/cameras/side/snapshot.jpg"), headers=AUTH))[0] == 404


def test_no_more_cameras_than_the_limit(server):
    added = []
    try:
        for i in range(2):
            assert (
                call("POST", url(server, "/api/cameras"), {"name": f"x{i}", "source": "demo"}, AUTH)[0] == 201
            )
            added.append(f"x{i}")
        status, message = error_of(
            call("POST", url(server, "/api/cameras"), {"name": "x9", "source": "demo"}, AUTH)
        )
        assert status == 409 and "at most 4 cameras" in message
    finally:
        for name in added:
            call("DELETE", url(server, f"/api/cameras/{name}"), headers=AUTH)


def test_credentials_never_leave_the_server(server):
    source = f"rtsp://admin:{SECRET}@127.0.0.1:9/stream?token={SECRET}"
    status, _, body = call("POST", url(server, "/api/cameras"), {"name": "secret", "source": source}, AUTH)
    assert status == 201 and SECRET not in body.decode()
    try:
        wait_for(
            lambda: api(server, "/api/cameras/secret")["status"] != "connecting", 20, "a connection attempt"
        )
        for path in ("/api/cameras", "/api/cameras/secret", "/metrics", "/api/events?since=0", "/"):
            assert SECRET not in call("GET", url(server, path), headers=AUTH)[2].decode(), path
        assert "***" in api(server, "/api/cameras/secret")["source"]
    finally:
        call("DELETE", url(server, "/api/cameras/secret"), headers=AUTH)
    assert SECRET not in server.stderr


@pytest.mark.parametrize(
    ("body", "status", "needle"),
    [
        (b"{not json", 400, "not valid JSON"),
        (b"[1, 2]", 400, "one JSON object"),
        (b'{"name": "a b", "source": "demo"}', 400, "not a valid camera name"),
        (b'{"name": "ok"}', 400, "no source"),
        (b'{"name": "ok", "source": "demo", "colour": 1}', 400, "unknown key 'colour'"),
        (b'{"name": "ok", "source": "demo", "enter": 7}', 400, "enter"),
        (b'{"name": "ok", "source": "/etc/hostname"}', 403, "--serve-allow-files"),
        (b'{"name": "ok", "source": "ftp://host/x"}', 400, "ftp"),
    ],
)
def test_bad_camera_requests_are_json_errors(server, body, status, needle):
    got, message = error_of(call("POST", url(server, "/api/cameras"), raw=body, headers=AUTH))
    assert got == status and needle in message, message


def test_unknown_things_are_json_errors(server):
    for method, path, status in [
        ("GET", "/api/cameras/nope", 404),
        ("DELETE", "/api/cameras/nope", 404),
        ("GET", "/cameras/nope/stream.mjpg", 404),
        ("GET", "/cameras/nope/snapshot.jpg", 404),
        ("GET", "/no/such/page", 404),
        ("PUT", "/api/cameras", 405),
        ("GET", "/cameras/front/snapshot.jpg?attention=xyz", 400),
        ("GET", "/cameras/front/stream.mjpg?fps=-1", 400),
        ("GET", "/api/events?since=abc", 400),
        ("GET", "/api/events?limit=0", 400),
        ("GET", "/api/events?before=0", 400),
        ("GET", "/api/events/999999999/snapshot.jpg", 404),
        ("GET", "/api/events/abc/snapshot.jpg", 404),
    ]:
        assert error_of(call(method, url(server, path), headers=AUTH))[0] == status, (method, path)


# -- events ------------------------------------------------------------------------------------------------
def test_events_match_the_event_file_and_stream_as_they_fire(server):
    def lines():
        path = server.folder / "events.jsonl"
        return [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []

    events = wait_for(lambda: api(server, "/api/events?since=0&limit=1000"), 60, "an event")
    ids = [e["id"] for e in events]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    file_lines = lines()
    for event in events[: len(file_lines)]:
        assert {k: v for k, v in event.items() if k not in HUB_KEYS} in file_lines
    assert api(server, f"/api/events?since={ids[-1]}") == []
    # the SSE stream: the next event, within 2 s of its line in the events file
    conn = http.client.HTTPConnection(*urllib.parse.urlsplit(server.url).netloc.split(":"), timeout=60)
    conn.request("GET", "/api/events/stream", headers=AUTH)
    response = conn.getresponse()
    assert response.status == 200 and response.getheader("content-type").startswith("text/event-stream")
    got = None
    while got is None:
        line = response.readline().decode()
        if line.startswith("data: "):
            got = json.loads(line[6:])
            at = time.monotonic()
    conn.close()
    plain = {k: v for k, v in got.items() if k not in HUB_KEYS}
    line = wait_for(lambda: [x for x in lines() if x == plain], 2.0,
                    "the streamed event in the events file")  # fmt: skip
    assert line and time.monotonic() - at < 2.0


def test_events_a_page_further_back_and_of_one_camera(server):
    events = wait_for(
        lambda: (e := api(server, "/api/events?limit=1000")) and len(e) >= 4 and e, 60, "4 events"
    )
    ids = [e["id"] for e in events]
    page = api(server, f"/api/events?before={ids[-1]}&limit=2")
    assert [e["id"] for e in page] == ids[-3:-1]
    assert api(server, f"/api/events?before={ids[0]}") == []
    front = api(server, "/api/events?camera=front&limit=1000")
    assert front and all(e["camera"] == "front" for e in front)
    assert api(server, "/api/events?camera=nobody") == []
    # an end names its start, a start its end (None while it goes on), with the start's wall-clock time
    by_id = {e["id"]: e for e in events}
    for end in (e for e in events if e["event"] == "end" and e["start_id"] in by_id):
        start = by_id[end["start_id"]]
        assert (start["camera"], start["label"], start["start_ts"]) == (
            end["camera"],
            end["label"],
            end["start_ts"],
        )
        assert end["start_time"] == start["time"]


def test_each_event_has_a_small_picture_of_its_peak_frame(server):
    event = wait_for(lambda: next((e for e in api(server, "/api/events?limit=1000") if e["thumbnail"]), None),
                     60, "an event with a picture")  # fmt: skip
    path = f"/api/events/{event['id']}/snapshot.jpg"
    status, headers, body = call("GET", url(server, path), headers=AUTH)
    assert status == 200 and headers["content-type"] == "image/jpeg", (status, body[:200])
    assert headers["cache-control"] == "no-store"
    image = cv2.imdecode(np.frombuffer(body, np.uint8), cv2.IMREAD_COLOR)
    assert image is not None and image.shape[1] <= 192 and image.shape[0] <= 144, image.shape
    assert len(body) < 48 * 1024
    # the rules of every other endpoint: the token, the Host
    assert error_of(call("GET", url(server, path)))[0] == 401
    assert error_of(call("GET", url(server, path), headers={**AUTH, "Host": "evil.example"}))[0] == 421
    status, message = error_of(call("GET", url(server, "/api/events/999999999/snapshot.jpg"), headers=AUTH))
    assert status == 404 and "no longer kept" in message


# -- pictures ----------------------------------------------------------------------------------------------
def test_the_picture_carries_the_heat_map_and_box_only_the_text_is_in_the_json(server):
    status, _, body = call("GET", url(server, "/cameras/front/snapshot.jpg"), headers=AUTH)
    assert status == 200
    image = cv2.imdecode(np.frombuffer(body, np.uint8), cv2.IMREAD_COLOR)
    assert image.shape[0] == image.shape[1], image.shape  # the demo's square frame: no panel beside it
    cam = wait_for(lambda: (c := api(server, "/api/cameras/front"))["top5"] and c, 30, "a prediction")
    assert len(cam["top5"]) == 5 and cam["top5"][0] == cam["top1"]
    assert [b["name"] for b in cam["branches"]] == ["GS", "GL", "GP"]
    assert {"capture", "model"} <= set(cam["fps_stages"]) and cam["window"] > 0
    assert cam["attempt"] == 0 and cam["retry_at"] is None and cam["paused"] is False


def test_snapshot_waits_for_a_newer_picture(server):
    status, headers, body = call("GET", url(server, "/cameras/front/snapshot.jpg?attention=la"), headers=AUTH)
    assert status == 200 and headers["content-type"] == "image/jpeg" and body[:2] == b"\xff\xd8"
    seq = int(headers["x-frame-seq"])
    status, headers, _ = call(
        "GET", url(server, f"/cameras/front/snapshot.jpg?after={seq}&wait=3"), headers=AUTH
    )
    assert status == 200 and int(headers["x-frame-seq"]) > seq


def read_parts(served, path, count, pause=0.0):
    """(X-Frame-Seq, JPEG) of `count` MJPEG parts, `pause` s between reads."""
    host, port = urllib.parse.urlsplit(served.url).netloc.split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    conn.request("GET", path, headers=AUTH)
    response = conn.getresponse()
    assert response.status == 200
    assert response.getheader("content-type").startswith("multipart/x-mixed-replace")
    parts = []
    while len(parts) < count:
        parts.append(next_part(response))
        time.sleep(pause)
    conn.close()
    return parts


def next_part(response):
    """(X-Frame-Seq, JPEG) of the next part of an MJPEG response."""
    headers = {}
    line = response.readline()
    while line.strip() == b"":
        line = response.readline()
    assert line.strip() == b"--glanetframe", line
    while (line := response.readline().strip()) != b"":
        key, _, value = line.decode().partition(":")
        headers[key.lower()] = value.strip()
    return int(headers["x-frame-seq"]), response.read(int(headers["content-length"]))


def metric(served, name, camera):
    text = call("GET", url(served, "/metrics"), headers=AUTH)[2].decode()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and sample.labels.get("camera") == camera:
                return sample.value
    raise AssertionError(f"{name} for {camera} not in /metrics")


def test_each_picture_is_encoded_once_whatever_the_viewers(server):
    before = metric(server, "glanet_web_jpeg_encoded_total", "back")
    results = []
    threads = [
        threading.Thread(target=lambda: results.append(read_parts(server, "/cameras/back/stream.mjpg", 15)))
        for _ in range(8)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    encoded = metric(server, "glanet_web_jpeg_encoded_total", "back") - before
    seqs = {seq for parts in results for seq, _ in parts}
    assert len(results) == 8
    assert all(parts[0][1][:2] == b"\xff\xd8" for parts in results)
    # 8 viewers x 15 parts, but each picture encoded once: about as many encodings as pictures seen
    assert encoded <= max(seqs) - min(seqs) + 3, (encoded, len(seqs))


def test_a_slow_viewer_gets_the_newest_picture_not_a_backlog(server):
    """A viewer on a link that carries one picture a second (a small receive window, read once a second)
    from a 15-a-second camera. With a queue per viewer it would get every picture, falling ~14 further behind
    each second. The server keeps no queue: what the viewer has not read waits only in the socket buffers
    (bytes: a dozen of the demo's 13 kB pictures), and once they are used up the next part is the newest
    picture, so the pictures it gets skip ahead."""
    host, port = urllib.parse.urlsplit(server.url).netloc.split(":")
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8192)  # before connecting: it sets the window
    sock.settimeout(30)
    sock.connect((host, int(port)))
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    conn.sock = sock
    conn.request("GET", "/cameras/front/stream.mjpg", headers=AUTH)
    response = conn.getresponse()
    seqs, lags = [], []
    while len(seqs) < 25 and not (len(seqs) >= 2 and seqs[-1] - seqs[-2] >= 10):
        time.sleep(1.0)
        seqs.append(next_part(response)[0])
        newest = int(call("GET", url(server, "/cameras/front/snapshot.jpg"), headers=AUTH)[1]["x-frame-seq"])
        lags.append(newest - seqs[-1])
    conn.close()
    skips = [b - a for a, b in itertools.pairwise(seqs)]
    assert max(skips) >= 10, (seqs, lags)  # it jumped ahead: pictures were never queued for it
    assert lags[-1] < 0.8 * 14 * len(lags), lags  # a queue would be ~14 pictures a second behind by now


def test_the_per_viewer_rate_cap(server):
    started = time.monotonic()
    read_parts(server, "/cameras/front/stream.mjpg?fps=2", 5)
    assert time.monotonic() - started >= 1.8  # 5 parts at 2 a second: 2 s, not 1/3 s


# -- metrics -----------------------------------------------------------------------------------------------
def test_metrics_are_prometheus_text_with_a_latency_histogram(server):
    text = call("GET", url(server, "/metrics"), headers=AUTH)[2].decode()
    families = {f.name: f for f in text_string_to_metric_families(text)}
    for name in (
        "glanet_frames",
        "glanet_predictions",
        "glanet_frames_dropped",
        "glanet_reconnects",
        "glanet_events",
    ):
        assert families[name].type == "counter"
        assert {s.labels["camera"] for s in families[name].samples} >= {"front", "back"}
    latency = families["glanet_prediction_latency_seconds"]
    assert latency.type == "histogram"
    counts = [
        s.value for s in latency.samples if s.name.endswith("_bucket") and s.labels["camera"] == "front"
    ]
    assert counts == sorted(counts) and counts[-1] > 0
    # the histogram counts the predictions the web view saw: never more than were made
    assert counts[-1] <= metric(server, "glanet_predictions_total", "front")


# -- starting ----------------------------------------------------------------------------------------------
def one_line(proc):
    lines = [x for x in proc.stderr.splitlines() if x.strip()]
    assert proc.returncode != 0 and len(lines) == 1 and lines[0].startswith("glanet: "), proc.stderr
    return lines[0]


def run_cli(*args, env=None):
    import os
    import subprocess

    from web_helpers import CLI, ROOT

    clean = {k: v for k, v in os.environ.items() if k != "GLANET_TOKEN"}
    return subprocess.run(
        [*CLI, *args], capture_output=True, text=True, timeout=120, cwd=ROOT, env={**clean, **(env or {})}
    )


def test_any_address_but_the_loopback_needs_a_token():
    line = one_line(run_cli("--serve", "0.0.0.0:0", "--max-frames", "1"))
    assert "needs a token" in line and "GLANET_TOKEN" in line
    assert "too short" in one_line(run_cli("--serve", "0", "--serve-token", "abc", "--max-frames", "1"))


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--serve", "nonsense"], "port must be a number"),
        (["--serve", "127.0.0.1:99999"], "port must be a number"),
        (["--serve-token", "abcdefghij"], "give --serve"),
        (["--serve", "0", "--serve-fps", "0"], "--serve-fps"),
    ],
)
def test_bad_serve_flags_are_one_line(args, needle):
    assert needle in one_line(run_cli(*args, "--max-frames", "1"))


def test_a_port_in_use_is_one_line():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        line = one_line(run_cli("--serve", f"127.0.0.1:{port}", "--max-frames", "1"))
    assert f"cannot serve on 127.0.0.1:{port}" in line
