"""Many cameras in one process: batched rounds equal independent single-camera recognizers and the offline
clip model; a reset is one camera's own; a camera that ends, stalls or hangs holds no other one back."""

from __future__ import annotations

import statistics
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from engines.torch_backend import TorchBackend
from glanet.checkpoint import load_checkpoint
from glanet.data.transforms import EvalTransform
from glanet.models.config import ModelConfig
from glanet.models.glanet import GLANet
from glanet.models.online import init_rows
from stream.runtime.app import StreamApp
from stream.runtime.batch import Work, step_batch
from stream.runtime.recognizer import Recognizer
from stream.runtime.session import Session
from stream.runtime.spec import CameraSpec, StreamOptions
from stream.sources.readers import parse_source
from stream.types import Frame, SourceStatus

PRE = {"resize": [40, 40], "crop": 32, "mean": [0.5, 0.4, 0.3], "std": [0.2, 0.25, 0.3], "color": "rgb"}
CLASSES = tuple(f"c{i}" for i in range(5))
SAMPLING = {"fps": 5.0, "window": 6, "stride": 3}
DEMO = Path(__file__).resolve().parents[2] / "models" / "glanet_synthactions_demo.pt"


@pytest.fixture(scope="module")
def model() -> GLANet:
    torch.manual_seed(3)
    cfg = ModelConfig(
        backbone="resnet10", num_classes=5, sru_hidden=16, sru_layers=2, sru_dropout=0.0, la_hidden=8
    )
    m = GLANet(cfg)
    m.train()  # calibrated BN statistics, so that random weights give distinct predictions
    with torch.no_grad():
        for _ in range(3):
            m.encode(torch.randn(16, 3, 32, 32))
    return m.eval()


def camera_frames(cam: int, n: int, fps: float, reconnect_at: int | None = None) -> list[Frame]:
    """Camera `cam`'s frames at `fps`; from `reconnect_at` on a new connection (session 2) whose clock
    starts again, as after a reconnect."""
    rng = np.random.default_rng(100 + cam)
    out = []
    for i in range(n):
        session, t = 1, i / fps
        if reconnect_at is not None and i >= reconnect_at:
            session, t = 2, (i - reconnect_at) / fps
        image = rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)
        out.append(Frame(image, i, t, 0.0, session, f"cam{cam}"))
    return out


def session(model: GLANet, cam: int) -> Session:
    return Session(model.spec, preprocessing=PRE, sampling=SAMPLING, class_names=CLASSES, camera=f"cam{cam}")


def offline(model: GLANet, images: list[np.ndarray]) -> torch.Tensor:
    clip = EvalTransform.from_preprocessing(PRE)(images).unsqueeze(0)
    with torch.no_grad():
        return model(clip).fused[0]


def run_rounds(
    backend: TorchBackend, sessions: list[Session], singles: list[Recognizer], streams: list[list[Frame]]
) -> tuple[list[list], list[list], list[int]]:
    """Round i: every camera's i-th frame, batched through `step_batch` and pushed to its own recognizer.
    Returns each camera's batched predictions, its recognizer's, and the size of every batch."""
    n = len(streams)
    batched: list[list] = [[] for _ in range(n)]
    alone: list[list] = [[] for _ in range(n)]
    sizes = []
    for i in range(len(streams[0])):
        work = []
        for c in range(n):
            frame = streams[c][i]
            ticks, _ = sessions[c].admit(frame)
            if ticks:
                work.append(Work(sessions[c], frame, ticks, 0.0))
            p = singles[c].push(frame)
            if p is not None:
                alone[c].append(p)
        if work:
            sizes.append(len(work))
            for w, (p, _) in zip(work, step_batch(backend, work), strict=True):
                batched[int(w.session.camera[3:])].append(p)
    return batched, alone, sizes


@pytest.mark.parametrize("n", [1, 3, 8])
def test_batched_cameras_equal_independent_recognizers_and_the_offline_model(model, n):
    backend = TorchBackend(model)
    # the model's rate (camera 1 reconnects mid-run), faster, in between, slower (a frame fills 2 ticks)
    rates = [5.0, 5.0, 10.0, 7.5, 2.5]
    streams = [camera_frames(c, 26, rates[c % 5], reconnect_at=13 if c == 1 else None) for c in range(n)]
    sessions = [session(model, c) for c in range(n)]
    singles = [
        Recognizer(backend, preprocessing=PRE, sampling=SAMPLING, class_names=CLASSES) for _ in range(n)
    ]
    batched, alone, sizes = run_rounds(backend, sessions, singles, streams)
    assert max(sizes) == n  # the cameras really were batched together
    for c in range(n):
        assert len(batched[c]) == len(alone[c]) > 0
        for b, a in zip(batched[c], alone[c], strict=True):
            assert (b.frame.index, b.history, b.step) == (a.frame.index, a.history, a.step)
            np.testing.assert_allclose(b.raw_probs, a.raw_probs, atol=1e-5, rtol=0)
            np.testing.assert_allclose(b.maps["sa"], a.maps["sa"], atol=1e-5, rtol=0)
    # cameras at the model's rate: each prediction is the offline prediction of its clip
    for c in range(n):
        if rates[c % 5] != SAMPLING["fps"] or c == 1:
            continue
        frames = streams[c]
        for p in batched[c]:
            t = p.frame.index
            clip = [f.image for f in frames[t - p.history + 1 : t + 1]]
            torch.testing.assert_close(torch.from_numpy(p.raw_probs), offline(model, clip), atol=1e-5, rtol=0)
    # the camera that reconnected started a new clip there, and its history counts from the reconnect
    if n > 1:
        after = [p for p in batched[1] if p.frame.connection == 2]
        assert sessions[1].resets == 1 and after[0].history == 1
        frames = streams[1]
        for p in after:
            t = p.frame.index
            clip = [f.image for f in frames[t - p.history + 1 : t + 1]]
            torch.testing.assert_close(torch.from_numpy(p.raw_probs), offline(model, clip), atol=1e-5, rtol=0)


def test_a_reset_touches_only_that_cameras_rows(model):
    backend = TorchBackend(model)
    sessions = [session(model, c) for c in range(3)]
    streams = [camera_frames(c, 4, 5.0) for c in range(3)]
    for i in range(4):
        work = []
        for s, frames in zip(sessions, streams, strict=True):
            ticks, _ = s.admit(frames[i])
            work.append(Work(s, frames[i], ticks, 0.0))
        step_batch(backend, work)
    before = [{k: v.clone() for k, v in s.step_state.items()} for s in sessions]
    sessions[1].reset()
    fresh = init_rows(model.spec.step_state, sessions[1].num_rows)
    for k in fresh:
        assert torch.equal(sessions[1].step_state[k], fresh[k])
        for c in (0, 2):
            assert torch.equal(sessions[c].step_state[k], before[c][k])
    assert [s.resets for s in sessions] == [0, 1, 0]


# -- the whole runtime ------------------------------------------------------------------------------------


def write_video(path: Path, frames: int, fps: float = 25.0, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    out = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (96, 96))
    for i in range(frames):
        image = np.full((96, 96, 3), 60, np.uint8)
        x = 10 + (i * 3) % 60
        image[30:60, x : x + 20] = rng.integers(100, 256, 3)
        out.write(image)
    out.release()
    return path


@pytest.fixture(scope="module")
def demo_ck():
    return load_checkpoint(DEMO)


@pytest.mark.timeout(120)
def test_one_camera_ending_leaves_the_others_running(tmp_path, demo_ck):
    short = write_video(tmp_path / "short.mp4", 10)
    long = write_video(tmp_path / "long.mp4", 60, seed=1)
    cameras = [CameraSpec("short", parse_source(str(short))), CameraSpec("long", parse_source(str(long)))]
    app = StreamApp(
        cameras,
        demo_ck,
        TorchBackend(demo_ck.model),
        StreamOptions(fast=True, headless=True, dashboard=False),
    )
    summary = app.run()
    assert summary.cameras["short"].frames == 10 and summary.cameras["long"].frames == 60
    assert summary.cameras["short"].reason == summary.cameras["long"].reason == "end of stream"
    assert summary.cameras["long"].predictions > summary.cameras["short"].predictions > 0
    assert max(app.runner.batch_sizes) == 2  # batched while both ran


@pytest.mark.timeout(120)
def test_fast_save_shows_live_until_the_last_frame_and_keeps_every_frame(tmp_path, demo_ck):
    video = write_video(tmp_path / "clip.mp4", 40)
    out = tmp_path / "out.mp4"
    app = StreamApp(
        parse_source(str(video)),
        demo_ck,
        TorchBackend(demo_ck.model),
        StreamOptions(fast=True, headless=True, dashboard=False, save=out),
    )
    statuses = []
    original = app._camera

    def spy(spec, wake):  # record the status each output carries
        cam = original(spec, wake)
        output = cam.output

        def recording(*args, **kw):
            o = output(*args, **kw)
            if o.display:
                statuses.append(o.status.status)
            return o

        cam.output = recording
        return cam

    app._camera = spy
    summary = app.run()
    assert summary.frames == 40 and summary.saved_frames == 40
    # never "ended" on a frame that still had frames after it (the last one may say so: it is the end)
    assert len(statuses) == 40 and statuses[:-1] == [SourceStatus.LIVE] * 39
    # --fast: latency counts from when the runner took the frame, not from a queue that ran ahead
    assert summary.latency_p95_ms < 1000


@pytest.mark.timeout(180)
def test_a_hung_rtsp_camera_does_not_delay_the_others(rtsp_server, tmp_path, demo_ck):
    """The RTSP server is SIGSTOPped mid-run; the file camera's predictions keep their pace: none waits
    on the hung camera by more than one model frame interval."""
    video = write_video(tmp_path / "clip.mp4", 400)
    cameras = [
        CameraSpec("rtsp", parse_source(rtsp_server.url, open_timeout_s=5.0, read_timeout_s=1.0)),
        CameraSpec("file", parse_source(str(video))),
    ]
    latencies: dict[str, list[tuple[float, float]]] = {"rtsp": [], "file": []}

    def record(p) -> None:
        latencies[p.frame.camera].append((time.monotonic(), p.latency_s))

    options = StreamOptions(headless=True, dashboard=False, watchdog_s=30.0, on_prediction=record)
    app = StreamApp(cameras, demo_ck, TorchBackend(demo_ck.model), options)
    result: dict = {}
    thread = threading.Thread(target=lambda: result.setdefault("s", app.run()), daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 40
        while len(latencies["rtsp"]) < 10 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert len(latencies["rtsp"]) >= 10, "no predictions from the RTSP camera"
        rtsp_server.pause()
        stopped_at = time.monotonic()
        time.sleep(4.0)
        rtsp_server.resume()
    finally:
        app.request_stop("test done")
        thread.join(15)
    assert not thread.is_alive()
    interval = 1.0 / float(demo_ck.sampling["fps"])
    before = [lat for t, lat in latencies["file"] if t < stopped_at]
    during = [lat for t, lat in latencies["file"] if stopped_at + 0.5 < t < stopped_at + 4.0]
    assert len(during) >= 0.8 * 3.5 * float(demo_ck.sampling["fps"])  # the file camera kept its pace
    # delayed = its latency beyond what it had before the stall (its own model time, the machine's load);
    # waiting on the hung camera would add whole intervals
    delay = max(during) - statistics.median(before)
    assert delay < interval, (max(during), statistics.median(before), interval)
