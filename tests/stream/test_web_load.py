"""50 MJPEG viewers for 20 s against a run of three real-time cameras: the model's processed frame rate
stays within 5% of the rate without viewers, and the server's memory stays flat."""

from __future__ import annotations

import socket
import threading
import time
import urllib.parse

import pytest
from prometheus_client.parser import text_string_to_metric_families
from web_helpers import call, serve, wait_for

VIEWERS = 50
SECONDS = 20.0
WARM_UP_S = 15.0
CAMERAS = ("a", "b", "c")


def totals(served) -> dict[str, float]:
    text = call("GET", served.url + "metrics")[2].decode()
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name in ("glanet_frames_total", "glanet_predictions_total"):
                out[sample.name] = out.get(sample.name, 0.0) + sample.value
    return out


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def rates(served, seconds: float) -> dict[str, float]:
    before, t0 = totals(served), time.monotonic()
    time.sleep(seconds)
    after, t1 = totals(served), time.monotonic()
    return {k: (after[k] - before[k]) / (t1 - t0) for k in before}


def viewer(served, camera: str, stop: threading.Event, received: list[int]) -> None:
    host, port = urllib.parse.urlsplit(served.url).netloc.split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(f"GET /cameras/{camera}/stream.mjpg HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
        got = 0
        while not stop.is_set():
            data = sock.recv(65536)
            if not data:
                break
            got += len(data)
        received.append(got)


@pytest.mark.timeout(240)
def test_fifty_viewers_do_not_slow_the_model_and_memory_stays_flat(tmp_path):
    served = serve(
        *[arg for name in CAMERAS for arg in ("--source", f"{name}=demo")], "--duration", "300",
        env={"GLANET_CACHE_DIR": str(tmp_path / "cache")},
    )  # fmt: skip
    try:
        wait_for(lambda: totals(served).get("glanet_predictions_total", 0) > 60, 60, "the cameras warm")
        time.sleep(2.0)
        alone = rates(served, 10.0)
        stop, received = threading.Event(), []
        threads = [
            threading.Thread(target=viewer, args=(served, CAMERAS[i % 3], stop, received), daemon=True)
            for i in range(VIEWERS)
        ]
        for t in threads:
            t.start()
        time.sleep(WARM_UP_S)  # connections made, buffers and the thread pool grown to their working size
        before, t0 = totals(served), time.monotonic()
        rss = []
        while time.monotonic() - t0 < SECONDS:
            rss.append(rss_mb(served.proc.pid))
            time.sleep(2.0)
        after = totals(served)
        watched = {k: (after[k] - before[k]) / (time.monotonic() - t0) for k in before}
        viewers_now = sum(
            s.value
            for f in text_string_to_metric_families(call("GET", served.url + "metrics")[2].decode())
            for s in f.samples
            if s.name == "glanet_web_viewers"
        )
        stop.set()
        for t in threads:
            t.join(15)
    finally:
        assert served.stop() == 0, served.stderr
    print(f"\nalone {alone}\nwith {VIEWERS} viewers {watched}\nRSS MB {[round(r, 1) for r in rss]}")
    assert viewers_now == VIEWERS
    assert len(received) == VIEWERS and min(received) > 100_000  # every viewer got pictures all along
    for key in ("glanet_frames_total", "glanet_predictions_total"):
        assert abs(watched[key] - alone[key]) <= 0.05 * alone[key], (key, alone, watched)
    # flat: once warm, 20 s of ~750 pictures a second sent add no more than the allocator's noise
    assert max(rss) - rss[0] < 15, rss
