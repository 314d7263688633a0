"""The whole pipeline on a real RTSP server (GStreamer, 127.0.0.1): it reads, the server dies and comes back,
the recognizer reconnects, resets its temporal state and goes on; a hung server trips the watchdog."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from engines.torch_backend import TorchBackend
from glanet.checkpoint import load_checkpoint
from stream.runtime.app import StreamApp
from stream.runtime.spec import StreamOptions
from stream.sources.readers import parse_source
from stream.types import SourceStatus

DEMO = Path(__file__).resolve().parents[2] / "models" / "glanet_synthactions_demo.pt"


def wait_for(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.05)


def start_app(url: str, **options) -> tuple[StreamApp, threading.Thread, dict]:
    ck = load_checkpoint(DEMO)
    spec = parse_source(url, open_timeout_s=5.0, read_timeout_s=1.0)
    app = StreamApp(
        spec, ck, TorchBackend(ck.model), StreamOptions(headless=True, dashboard=False, **options)
    )
    result: dict = {}
    thread = threading.Thread(target=lambda: result.setdefault("summary", app.run()), daemon=True)
    thread.start()
    return app, thread, result


def seen(app: StreamApp, status: SourceStatus) -> bool:
    return app.capture is not None and any(u.status is status for u in list(app.capture.history))


def session_of_last_prediction(app: StreamApp) -> int:
    p = app.last_prediction
    return -1 if p is None else p.frame.connection


@pytest.mark.timeout(120)
def test_reads_then_reconnects_after_the_server_dies_and_comes_back(rtsp_server):
    app, thread, result = start_app(rtsp_server.url, watchdog_s=3.0)
    try:
        wait_for(
            lambda: app.last_prediction is not None and app.last_prediction.history >= 4, 30, "predictions"
        )
        first = app.last_prediction
        assert first.frame.connection == 1 and first.frame.image.shape == (240, 320, 3)
        rtsp_server.kill()
        time.sleep(2.0)  # the app keeps retrying (backoff) while the camera is away
        rtsp_server.start()
        wait_for(lambda: session_of_last_prediction(app) >= 2, 40, "predictions from the reconnected stream")
        after = app.last_prediction
        # the temporal state was reset across the gap: the new clip starts from the reconnect
        assert after.history <= after.step - first.step
        assert after.frame.index > first.frame.index  # frame numbering goes on across sessions
        wait_for(lambda: app.last_prediction.history >= 2, 20, "the new clip to grow")
    finally:
        t0 = time.monotonic()
        app.request_stop("test done")
        thread.join(10)
        assert not thread.is_alive() and time.monotonic() - t0 < 5
    summary = result["summary"]
    assert summary.reconnects >= 1 and summary.resets >= 1 and summary.error is None
    assert summary.reason == "test done"


@pytest.mark.timeout(120)
def test_a_hung_server_trips_the_watchdog_and_stop_does_not_hang(rtsp_server):
    app, thread, result = start_app(rtsp_server.url, watchdog_s=2.0)
    try:
        wait_for(lambda: app.last_prediction is not None, 30, "predictions")
        rtsp_server.pause()  # connections stay open, nothing is sent
        wait_for(lambda: seen(app, SourceStatus.RECONNECTING), 20, "the watchdog to reconnect")
        rtsp_server.resume()
        wait_for(lambda: session_of_last_prediction(app) >= 2, 40, "predictions after the watchdog reconnect")
    finally:
        t0 = time.monotonic()
        app.request_stop("test done")
        thread.join(10)
        assert not thread.is_alive() and time.monotonic() - t0 < 5
    assert result["summary"].reconnects >= 1


@pytest.mark.timeout(60)
def test_stop_while_the_camera_is_away_is_immediate(rtsp_server):
    app, thread, _ = start_app(rtsp_server.url, watchdog_s=2.0)
    wait_for(lambda: app.last_prediction is not None, 30, "predictions")
    rtsp_server.kill()
    wait_for(lambda: seen(app, SourceStatus.RECONNECTING), 20, "reconnecting")
    t0 = time.monotonic()
    app.request_stop("test done")
    thread.join(10)
    assert not thread.is_alive() and time.monotonic() - t0 < 3
