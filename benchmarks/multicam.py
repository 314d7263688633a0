"""Multi-camera benchmark: N real-time cameras in ONE process (batched rounds) against N single-camera
processes, on OpenVINO int8 / bf16, and how many demo-model cameras one process holds.

    python benchmarks/multicam.py [--quick] [--seconds 20] [--precisions int8,bf16] [--cameras 1,2,4,6,8]
        [--separate 2,4] [--mix 4,8,12,16] [--demo-cameras 8,16,24,32] [--encode-seconds 3] [--json OUT]
        [--work DIR] [--rtsp-cameras 2,3,4 --rtsp-mix 8,12,16]

Model: the paper's GLANet (ResNet-34, 224 px, W=30, S=15, clips sampled at 25 fps: every frame of a 25 fps
    source is a model frame), random weights with BN calibrated on SynthActions frames (benchmarks/common.py),
    exported once (engines.export) and built to OpenVINO int8 (engines.build, NNCF); bf16 runs the export.
Sources: one 25 fps SynthActions video file, 320x240; every camera has its own `SourceSpec` (its own
    capture) on that file, read in REAL time (paced at 25 fps), headless, no dashboard, for `--seconds`.
batched: `StreamApp` with N cameras in this process: one model thread, one batched round per due frame set.
separate: N processes of this script (`--worker`: one camera, the same way), started together; each builds
    and warms its backend, says it is ready, and all start streaming on one go. OpenMP / OpenVINO threads
    are left at their defaults in every process (nothing pinned, no thread counts set).
Per run: processed fps per camera (frames / wall s; mean and min over cameras), predictions/s per camera,
    capture -> prediction latency (p50: median over cameras; p95: worst camera and median over cameras;
    max), dropped frames, mean cameras per round (`runner.batch_sizes`), process CPU (% of one core:
    process_time / wall; separate: the workers' sum) and the share of the CPUs other processes used.
Targets: every camera >= 24.5 fps processed and p95 <= 150 ms (int8: at least 6 cameras); batched total
    predictions/s over separate processes' at N = 4 >= 1.8x. Demo: the committed demo model (96 px, sampled
    at 7.5 fps) on OpenVINO (default precision), a 15 fps video, N = 8, 16, 24, 32 until one fails: held =
    every camera >= 14.7 fps processed and p95 <= 150 ms.
A real-time source caps each camera at its frame rate: when both ways keep up, the ratio is ~1.0x; it only
grows once separate processes fall behind. The file source blocks rather than drops: a model that cannot
keep up shows as fewer fps (and latency), not as drops. `--torch-threads N` sets torch's intra-op threads
(the runtime's per-frame preprocessing runs in torch, on the model thread) in every process; default:
torch's own. `--quick`: N = 1, 2, separate N = 2, demo N = 8, mix N = 4, 5 s, the first precision, 32 int8
calibration frames (a smoke run).
The all-active runs above encode every frame (`RecognizerConfig(static_gate=0)`); each camera's `encoded`
and `reused` counts are in the JSON.
Efficiency (each batched paper run): right after the run, the engine's encode alone as the pipeline calls
it (`encode_images`: B uint8 224 px crops, normalised in OpenVINO's graph), B = the run's mean cameras per
round rounded, for `--encode-seconds` (3): encode-only
frames/s; the pipeline's model frames/s (its total predictions/s: at the 25 fps model rate every source frame
is one); efficiency = pipeline / encode-only (target >= 0.90; it only says something where the cameras fell
behind, "capacity"-bound). Beside it: the model thread's wall time in encode / temporal_step / the rest, an
encoded frame's time in the run over alone, CPU seconds by thread (model, capture, threads Python did not
start: OpenVINO's and the decoder's, main), and one camera's capture -> prediction p50 over encode at batch 1.
Monitoring mix (`--mix 4,8,12,16`): N cameras, a quarter (at least one) on the action video, the rest on a
still scene: one SynthActions frame with fresh Gaussian noise (sigma `--still-noise` 3 grey levels) in every
frame, written lossless (HuffYUV; the consecutive decoded frames' difference is reported, and mp4v's for the
same scene, which smooths the noise away); the static-scene gate on at its default share; N until one fails
(held as above). Reported: cameras held, the share of frames reused, and mix held over all-active held
(target >= 3x).
RTSP cameras (`--rtsp-cameras 2,3,4 --rtsp-mix 8,12,16`, off by default): 640x360 H.264 (x264 CRF 18, a key
frame a second, no B-frames) served live by GStreamer's RTSP server on 127.0.0.1 (benchmarks/rtsp_files.py
on the system python3; packets from the files, no re-encoding): all-active (every camera on the action
video, gate off) and the monitoring mix (a quarter on it, the rest on a still scene with sensor noise, gate
on), each N until one fails; the capture threads' CPU per frame and per camera (receive, decode, BGR, the
gate's small copy) is the cost of the decoding.
"""

# ruff: noqa: E402  (the project's imports come after the sys.path fix below)
from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import select
import shlex
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import av
import cv2
import numpy as np
import torch
from rich.console import Console
from rich.table import Table

# Run as a script, this file's folder comes first on sys.path and `import engines` would find
# benchmarks/engines.py. Put the repository root in its place (as `python -m` would).
ROOT = Path(__file__).resolve().parents[1]
sys.path[:] = [str(ROOT) if Path(p or ".").resolve() == ROOT / "benchmarks" else p for p in sys.path]

from benchmarks.common import (
    CROP,
    FPS,
    STRIDE,
    WINDOW,
    TimedBackend,
    machine_line,
    paper_checkpoint,
    plain,
    synth_images,
    write_json,
    write_video,
)
from benchmarks.engines import VIDEO_H, VIDEO_W, OthersCpu, busy_note, say
from engines.backend import encode_images
from engines.build import build_openvino_int8, build_openvino_step_int8
from engines.errors import EngineUnavailable
from engines.export import export
from engines.manifest import MANIFEST, read_manifest
from engines.openvino_backend import INT8_BUILD, STEP_INT8_BUILD
from engines.select import make_backend
from glanet.checkpoint import load_checkpoint
from glanet.data.synth_live import LiveSynth
from glanet.data.transforms import EvalTransform
from glanet.models.online import cat_states, init_rows
from stream.runtime.app import StreamApp
from stream.runtime.model import ModelInfo
from stream.runtime.session import RecognizerConfig
from stream.runtime.spec import CameraSpec, StreamOptions
from stream.runtime.still import changed_share, small_copy
from stream.runtime.summary import Summary
from stream.sources.readers import parse_source

CAMERAS = (1, 2, 4, 6, 8)
SEPARATE = (2, 4)
DEMO_CAMERAS = (8, 16, 24, 32)
MIX = (4, 8, 12, 16)
# cameras served by a real RTSP server (benchmarks/rtsp_files.py) as a typical substream: 640x360 H.264
RTSP_W, RTSP_H = 640, 360
RTSP_CRF = 18  # x264's quality: high enough that the still scene's sensor noise survives the encoding
RTSP_SERVER = ROOT / "benchmarks" / "rtsp_files.py"
PRECISIONS = ("int8", "bf16")
QUICK = {
    "cameras": (1, 2),
    "separate": (2,),
    "demo_cameras": (8,),
    "mix": (4,),
    "seconds": 5.0,
    "calib_frames": 32,
}
# the all-active runs: every frame through the backbone (the static-scene gate off)
ALL_ACTIVE = RecognizerConfig(static_gate=0.0)
STEADY_AFTER_S = 5.0  # a camera's fps counts from here: a live one drops the burst of its connection
ENCODE_SECONDS = 3.0  # encode alone after each batched paper-model run, for its efficiency
STILL_NOISE = 3.0  # grey levels: the sensor noise (Gaussian sigma, fresh each frame) of the still scene
# the still scene's video: HuffYUV is lossless, so the decoded frames keep the noise written (mp4v smooths
# a still scene's noise away: its P-frames code the change as nothing; `decoded_noise` reports both)
STILL_FOURCC, STILL_SUFFIX = "HFYU", ".avi"
DEMO_CHECKPOINT = ROOT / "models" / "glanet_synthactions_demo.pt"
DEMO_FPS = 15.0  # the demo cameras' source rate (the model samples it at 7.5 fps)
# the targets
FPS_TARGET = 24.5  # every camera processed >= this (of a 25 fps source)
DEMO_FPS_TARGET = 14.7  # (of a 15 fps source)
P95_TARGET_MS = 150.0
INT8_CAMERAS_TARGET = 6
EFFICIENCY_TARGET = 0.90  # pipeline model frames/s over encode-only frames/s at the same batch
MIX_TARGET = 3.0  # monitoring mix: cameras held over all-active cameras held
RATIO_N = 4
BUSY_SHARE = 0.10  # other processes' share of the CPUs above which a run's ratio is not judged
RATIO_TARGET = 1.8
THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "OV_CPU_THREADS_NUM")
WORKER_START_TIMEOUT_S = 300.0
console = Console(width=170)


@dataclass(frozen=True)
class Target:
    fps: float
    p95_ms: float = P95_TARGET_MS


PAPER_TARGET = Target(FPS_TARGET)
DEMO_TARGET = Target(DEMO_FPS_TARGET)


# -- setting up -----------------------------------------------------------------------------------


def prepare_model(work: Path, calib_frames: int) -> tuple[Path, dict[str, Any]]:
    """The paper checkpoint exported to `work/export` with its OpenVINO int8 build (reused when `work`
    already holds both: development runs with `--work`)."""
    export_dir = work / "export"
    if (export_dir / MANIFEST).is_file() and INT8_BUILD in read_manifest(export_dir).builds:
        if STEP_INT8_BUILD not in read_manifest(export_dir).builds:
            build_openvino_step_int8(export_dir)
        say(f"... reusing the export and int8 build in {export_dir}")
        return export_dir, {"reused": str(export_dir)}
    say("... building the ResNet-34 GLANet (random weights, BN calibrated on SynthActions), saving it")
    ck_path = paper_checkpoint(work, synth_images(16, seed=3))
    start = time.perf_counter()
    export(ck_path, export_dir)
    export_s = time.perf_counter() - start
    say(f"... exported in {export_s:.1f} s; int8: NNCF on {calib_frames} synth frames")
    start = time.perf_counter()
    build_openvino_int8(export_dir, calib_frames=calib_frames)
    build_openvino_step_int8(export_dir)  # temporal_step with int8 weights, as engines.build makes it
    build_s = time.perf_counter() - start
    say(f"... int8 built in {build_s:.1f} s")
    return export_dir, {
        "export_s": export_s,
        "int8_build_s": build_s,
        "int8_calibration_frames": calib_frames,
    }


def shared_file_check(video: Path, n: int) -> str:
    """Open `n` file sources on `video` at once (each its own `parse_source` spec, as the cameras have)
    and read two frames from each: the file source can be shared by as many captures."""
    sources = [parse_source(str(video)).factory() for _ in range(n)]
    images: list[np.ndarray] = []
    try:
        for s in sources:
            s.open()
        for s in sources:
            items = [s.read() for _ in range(2)]
            if any(item is None for item in items):
                raise RuntimeError(f"{n} captures of {video} at once: one ended at its first frames")
            images.append(items[-1][0])  # type: ignore[index]
    finally:
        for s in sources:
            s.close()
    if not all(np.array_equal(image, images[0]) for image in images):
        raise RuntimeError(f"{n} captures of {video} at once: they read different frames")
    return f"{n} file sources open on {video.name} at once, each read the same first frames: ok"


def rows_per_camera(info: ModelInfo, backend: Any) -> int:
    window, stride = int(info.sampling["window"]), int(info.sampling["stride"])
    return math.ceil(window / stride) if backend.spec.restarts else 1


def warm_up(backend: Any, info: ModelInfo, max_cameras: int) -> float:
    """Every shape a round of up to `max_cameras` cameras uses (encode over m frames, temporal_step over
    m * K rows), run once: OpenVINO's first call at a shape is slow, and would show as latency. Seconds."""
    start = time.perf_counter()
    spec = backend.spec
    transform = EvalTransform.from_preprocessing(info.preprocessing)
    image = transform.geometry(synth_images(1, seed=1)[0])
    k = rows_per_camera(info, backend)
    for m in range(1, max_cameras + 1):
        enc_state = cat_states([init_rows(spec.encode_state, 1)] * m) if spec.encode_state else None
        enc = encode_images(backend, np.stack([image] * m), transform, enc_state)
        index = torch.arange(m).repeat_interleave(k)
        feats = {name: f[index] for name, f in enc.features.items()}
        backend.temporal_step(feats, init_rows(spec.step_state, m * k))
    return time.perf_counter() - start


def write_still_video(path: Path, seconds: float, *, seed: int, sigma: float, fourcc: str) -> Path:
    """A still scene at 25 fps, 320x240: one SynthActions frame (the middle rows, as `write_video` crops)
    with fresh Gaussian sensor noise of `sigma` grey levels in every frame, written with `fourcc`."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), FPS, (VIDEO_W, VIDEO_H))
    if not writer.isOpened():
        raise RuntimeError(f"cv2.VideoWriter cannot write {path} ({fourcc})")
    synth = LiveSynth(seed, size=VIDEO_W, fps=FPS)
    for _ in range(10):  # a frame a little into the clip, the actor in view
        image = next(synth).image
    top = (VIDEO_W - VIDEO_H) // 2
    still = image[top : top + VIDEO_H].astype(np.float32)
    rng = np.random.default_rng(seed)
    for _ in range(round(seconds * FPS)):
        noisy = still + rng.normal(0.0, sigma, still.shape).astype(np.float32)
        writer.write(np.clip(np.rint(noisy), 0, 255).astype(np.uint8))
    writer.release()
    return path


def decoded_noise(path: Path, frames: int = 50) -> dict[str, Any]:
    """What the decoder hands the cameras of a still-scene video: between consecutive decoded frames, the
    mean |difference| and the per-frame noise it implies (std / sqrt 2), and the gate's changed share (its
    small copies, against the first frame: what a reference that is never renewed would see); decode ms."""
    cap = cv2.VideoCapture(str(path))
    images: list[np.ndarray] = []
    start = time.perf_counter()
    while len(images) < frames:
        ok, image = cap.read()
        if not ok:
            break
        images.append(image)
    decode_ms = (time.perf_counter() - start) * 1e3 / max(1, len(images))
    cap.release()
    if len(images) < 2:
        raise RuntimeError(f"{path}: fewer than 2 frames decoded")
    diffs = [b.astype(np.float32) - a.astype(np.float32) for a, b in itertools.pairwise(images)]
    first = small_copy(images[0])
    return {
        "file": path.name,
        "frames": len(images),
        "mean_abs_diff": float(np.mean([np.abs(d).mean() for d in diffs])),
        "noise_sigma": float(np.mean([d.std() for d in diffs]) / math.sqrt(2)),
        "max_abs_diff": float(max(np.abs(d).max() for d in diffs)),
        "gate_share_max": max(changed_share(small_copy(im), first) for im in images[1:]),
        "decode_ms": decode_ms,
    }


def encode_only(backend: Any, info: ModelInfo, batch: int, seconds: float) -> dict[str, Any]:
    """The engine's encode alone, as the pipeline calls it (`encode_images`: uint8 crops in, normalised in
    the engine where it can), on a batch of one SynthActions frame cropped to 224 px, called back to back
    for `seconds` (one call first, untimed): frames/s and ms per call."""
    transform = EvalTransform.from_preprocessing(info.preprocessing)
    images = np.stack([transform.geometry(synth_images(1, seed=1)[0])] * batch)
    spec = backend.spec
    state = cat_states([init_rows(spec.encode_state, 1)] * batch) if spec.encode_state else None
    encode_images(backend, images, transform, state)
    times: list[float] = []
    start = time.perf_counter()
    while time.perf_counter() - start < seconds or len(times) < 3:
        t0 = time.perf_counter()
        encode_images(backend, images, transform, state)
        times.append((time.perf_counter() - t0) * 1e3)
    wall = time.perf_counter() - start
    return {
        "batch": batch,
        "calls": len(times),
        "ms_median": statistics.median(times),
        "ms_mean": statistics.fmean(times),
        "fps": batch * len(times) / wall,
    }


def worker_env() -> dict[str, str]:
    """This environment without thread-count settings: each process runs with the libraries' defaults."""
    return {k: v for k, v in os.environ.items() if k not in THREAD_VARS}


# -- one run --------------------------------------------------------------------------------------


class PhaseBackend(TimedBackend):
    """The run's backend with the wall time of its engine calls summed (on the model thread): how much of
    the model thread's time the engine took, and the frames it encoded."""

    def __init__(self, inner: Any) -> None:
        super().__init__(inner)
        self.ms = {"encode": 0.0, "temporal_step": 0.0}
        self.calls = {"encode": 0, "temporal_step": 0}
        self.encoded_frames = 0
        self.encodes: list[tuple[float, float, int]] = []  # (when it ended, ms, frames) of every encode
        self._frames = 0

    def encode(self, frames: torch.Tensor, state: Any = None) -> Any:
        self._frames = int(frames.shape[0])
        self.encoded_frames += self._frames
        return super().encode(frames, state)

    def encode_images(self, images: np.ndarray, transform: EvalTransform, state: Any = None) -> Any:
        self._frames = int(images.shape[0])
        self.encoded_frames += self._frames
        return super().encode_images(images, transform, state)

    def record(self, call: str, ms: float) -> None:
        self.ms[call] += ms
        self.calls[call] += 1
        if call == "encode":
            self.encodes.append((time.monotonic(), ms, self._frames))

    def swing(self, window_s: float = 1.0) -> float:
        """The slowest `window_s` of the run over its median one, in encode ms a frame: the same engine on
        the same batches, so what moves it is the host (a neighbour on the cores, SMT or memory that no
        process here shows); about 1 on a steady host. NaN under 3 windows."""
        windows: dict[int, list[float]] = {}
        for t, ms, frames in self.encodes:
            if frames:
                window = windows.setdefault(int(t // window_s), [0.0, 0.0])
                window[0] += ms
                window[1] += frames
        per_frame = [ms / frames for ms, frames in windows.values()]
        if len(per_frame) < 3:
            return float("nan")
        return max(per_frame) / statistics.median(per_frame)


class ThreadCpu:
    """CPU seconds of this process's threads between `__enter__` and `__exit__` (/proc/self/task, sampled
    every `interval` s so that threads that end meanwhile are counted), grouped: the model thread, the
    capture threads, the main thread (the sinks) and threads Python did not start (the engine's and the
    decoder's workers)."""

    def __init__(self, interval: float = 0.25) -> None:
        self.interval = interval
        self.groups: dict[str, float] = {}
        self._tick = os.sysconf("SC_CLK_TCK")
        self._stop = threading.Event()
        self._names: dict[int, str] = {}
        self._base: dict[int, float] = {}
        self._last: dict[int, float] = {}

    def _read(self) -> dict[int, float]:
        out = {}
        for tid in os.listdir("/proc/self/task"):
            try:
                with open(f"/proc/self/task/{tid}/stat", encoding="ascii") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:  # it ended meanwhile
                continue
            out[int(tid)] = (int(fields[11]) + int(fields[12])) / self._tick  # utime + stime
        return out

    def _sample(self) -> None:
        self._names |= {t.native_id: t.name for t in threading.enumerate() if t.native_id is not None}
        self._last |= self._read()

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self._sample()

    def __enter__(self) -> ThreadCpu:
        self._sample()
        self._base = dict(self._last)
        self._thread = threading.Thread(target=self._loop, name="multicam-cpu", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()
        for tid, cpu in self._last.items():
            name = self._names.get(tid)
            if name is None:
                group = "native"
            elif name == "glanet-model":
                group = "model"
            elif name.startswith("capture-"):
                group = "capture"
            elif name == "MainThread":
                group = "main"
            else:
                group = "other"
            self.groups[group] = self.groups.get(group, 0.0) + cpu - self._base.get(tid, 0.0)


def camera_figures(name: str, s: Summary, steady: tuple[int, float] | None = None) -> dict[str, Any]:
    """`steady`: the camera's frames through the loop, and the run's seconds left, when its first
    STEADY_AFTER_S were over: "fps" counts from then (a live camera drops the burst its connection brings,
    by design: the newest frames win); "fps_whole_run" from the start."""
    wall = s.wall_s
    whole = s.frames / wall if wall > 0 else 0.0
    fps = whole
    if steady is not None and steady[1] > 0:
        fps = (s.frames - steady[0]) / steady[1]
    return {
        "camera": name,
        "frames": s.frames,
        "predictions": s.predictions,
        "encoded": s.encoded,
        "reused": s.reused,
        "wall_s": wall,
        "fps": fps,
        "fps_whole_run": whole,
        "predictions_per_s": s.predictions / wall if wall > 0 else 0.0,
        "latency_p50_ms": s.latency_p50_ms,
        "latency_p95_ms": s.latency_p95_ms,
        "latency_max_ms": s.latency_max_ms,
        "dropped": s.dropped,
        "reason": s.reason,
        "error": s.error,
    }


def stream_cameras(
    backend: Any,
    info: ModelInfo,
    videos: dict[str, Path | str],
    seconds: float,
    recognizer: RecognizerConfig = ALL_ACTIVE,
) -> dict[str, Any]:
    """`StreamApp` on one camera per entry of `videos` (name: its file, its own spec), in real time,
    headless, for `seconds`; `recognizer` for every camera (default: the gate off, every frame encoded)."""
    folder_fps = float(info.sampling.get("fps") or FPS)
    specs = [CameraSpec(name, parse_source(str(v), folder_fps=folder_fps)) for name, v in videos.items()]
    options = StreamOptions(headless=True, dashboard=False, duration_s=seconds, recognizer=recognizer)
    timed = PhaseBackend(backend)
    app = StreamApp(specs, info, timed, options)
    cpu0, wall0 = time.process_time(), time.monotonic()
    marks: dict[str, tuple[int, float]] = {}  # each camera's frames once the run's first seconds are over

    def mark() -> None:
        skip = min(STEADY_AFTER_S, seconds / 4)
        while not app.stopping and time.monotonic() - wall0 < skip:
            time.sleep(0.02)
        at = time.monotonic()
        marks.update({cam.name: (cam.session.frames, at) for cam in list(app.cameras)})

    marker = threading.Thread(target=mark, name="steady-mark", daemon=True)
    with OthersCpu() as others, ThreadCpu() as threads:
        marker.start()
        summary = app.run()
    end = time.monotonic()
    marker.join(timeout=1.0)
    wall = end - wall0
    cpu_s = time.process_time() - cpu0
    sizes = list(app.runner.batch_sizes)
    cams = [
        camera_figures(name, s, (marks[name][0], end - marks[name][1]) if name in marks else None)
        for name, s in summary.cameras.items()
    ]
    encoded, reused = sum(c["encoded"] for c in cams), sum(c["reused"] for c in cams)
    return {
        "cameras": cams,
        "encoded": encoded,
        "reused": reused,
        "reuse_share": reused / (encoded + reused) if encoded + reused else float("nan"),
        # the model thread's wall time in the engine (the rest: preprocessing, the gate, gathering, waiting)
        "engine": {
            "encode_s": timed.ms["encode"] / 1e3,
            "temporal_step_s": timed.ms["temporal_step"] / 1e3,
            "encode_calls": timed.calls["encode"],
            "encoded_frames": timed.encoded_frames,
            "encode_ms_per_frame": timed.ms["encode"] / timed.encoded_frames
            if timed.encoded_frames
            else float("nan"),
            "encode_swing": timed.swing(),
        },
        "threads_cpu_s": threads.groups,
        "reason": summary.reason,
        "rounds": len(sizes),
        "batch_mean": statistics.fmean(sizes) if sizes else float("nan"),
        "full_rounds": sum(1 for b in sizes if b == len(videos)) / len(sizes) if sizes else float("nan"),
        "batch_sizes": {str(b): sizes.count(b) for b in sorted(set(sizes))},
        "cpu_s": cpu_s,
        "wall_s": wall,
        "cpu_pct": 100 * cpu_s / wall,
        "others_cpu_share": others.share,
    }


def figures(cams: list[dict[str, Any]], target: Target) -> dict[str, Any]:
    """Over the cameras of a run: fps, predictions/s, latency, drops, and whether `target` is met."""

    def worst(key: str) -> float:
        values = [c[key] for c in cams]
        return max(values) if all(math.isfinite(v) for v in values) else float("nan")

    def median(key: str) -> float:
        values = [c[key] for c in cams if math.isfinite(c[key])]
        return statistics.median(values) if values else float("nan")

    fps = [c["fps"] for c in cams]
    rate = [c["predictions_per_s"] for c in cams]
    p95_worst = worst("latency_p95_ms")
    met_fps = min(fps) >= target.fps
    met_p95 = math.isfinite(p95_worst) and p95_worst <= target.p95_ms
    return {
        "n": len(cams),
        "fps_mean": statistics.fmean(fps),
        "fps_min": min(fps),
        "predictions_per_s_mean": statistics.fmean(rate),
        "predictions_per_s_total": sum(rate),
        "p50_ms_median": median("latency_p50_ms"),
        "p95_ms_worst": p95_worst,
        "p95_ms_median": median("latency_p95_ms"),
        "max_ms_worst": worst("latency_max_ms"),
        "dropped": sum(c["dropped"] for c in cams),
        "errors": [f"{c['camera']}: {c['error']}" for c in cams if c["error"]],
        "met_fps": met_fps,
        "met_p95": met_p95,
        "met": met_fps and met_p95 and not any(c["error"] for c in cams),
    }


def run_batched(
    backend: Any, info: ModelInfo, video: Path, n: int, seconds: float, target: Target
) -> dict[str, Any]:
    r = stream_cameras(backend, info, {f"cam{i}": video for i in range(n)}, seconds)
    return {"mode": "batched", **r, **figures(r["cameras"], target)}


# -- separate processes ---------------------------------------------------------------------------


def worker_main(args: argparse.Namespace) -> None:
    """`--worker`: one camera as `run_batched` runs it; `READY` once the backend is built and warm, then
    streaming when a line comes on stdin, then `RESULT {json}` on stdout."""
    os.environ.setdefault("OPENCV_LOG_LEVEL", "ERROR")
    backend = make_backend("openvino", None, args.export, args.precision, cache_dir=args.cache)
    info = read_manifest(args.export)
    warm_up(backend, info, 1)
    print("READY", flush=True)
    sys.stdin.readline()
    r = stream_cameras(backend, info, {"cam0": args.video}, args.seconds)
    print("RESULT " + json.dumps(plain(r), allow_nan=False), flush=True)


def read_line(proc: subprocess.Popen[str], prefix: str, deadline: float) -> str:
    """The first stdout line of `proc` that starts with `prefix` (its rest), waiting until `deadline`."""
    assert proc.stdout is not None
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError(f"worker {proc.pid}: no {prefix} line in time")
        ready, _, _ = select.select([proc.stdout], [], [], left)
        if not ready:
            continue
        line = proc.stdout.readline()
        if not line:
            raise RuntimeError(f"worker {proc.pid} ended (exit {proc.wait()}) before its {prefix} line")
        if line.startswith(prefix):
            return line[len(prefix) :].strip()


def run_separate(
    export_dir: Path,
    cache: Path,
    precision: str,
    video: Path,
    n: int,
    seconds: float,
    logs: Path,
    torch_threads: int | None = None,
) -> dict[str, Any]:
    """`n` worker processes, one camera each: all built and warm first, then started on one go."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", "--export", str(export_dir)]
    cmd += ["--cache", str(cache), "--precision", precision, "--video", str(video), "--seconds", str(seconds)]
    cmd += ["--torch-threads", str(torch_threads)] if torch_threads else []
    procs: list[subprocess.Popen[str]] = []
    log_paths = [logs / f"worker-{precision}-{n}-{i}.log" for i in range(n)]
    try:
        for path in log_paths:
            with path.open("w") as err:
                procs.append(
                    subprocess.Popen(
                        cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err, text=True,
                        env=worker_env(), cwd=ROOT,
                    )
                )  # fmt: skip
        start_deadline = time.monotonic() + WORKER_START_TIMEOUT_S
        for p in procs:
            read_line(p, "READY", start_deadline)
        with OthersCpu() as others:
            start = time.monotonic()
            for p in procs:
                assert p.stdin is not None
                p.stdin.write("go\n")
                p.stdin.flush()
            results = [json.loads(read_line(p, "RESULT", time.monotonic() + seconds + 120)) for p in procs]
            wall = time.monotonic() - start
            for p in procs:
                p.wait(timeout=60)
    except (RuntimeError, TimeoutError) as e:
        tail = log_paths[0].read_text()[-3000:] if log_paths[0].exists() else ""
        raise RuntimeError(f"{e}; a worker's stderr ({log_paths[0]}) ends:\n{tail}") from e
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    cams = [dict(r["cameras"][0], camera=f"proc{i}") for i, r in enumerate(results)]
    cpu_s = sum(r["cpu_s"] for r in results)
    cpus = os.cpu_count() or 1
    return {
        "mode": "separate",
        "cameras": cams,
        "rounds": sum(r["rounds"] for r in results),
        "batch_mean": 1.0,
        "full_rounds": 1.0,
        "batch_sizes": {"1": sum(r["rounds"] for r in results)},
        "cpu_s": cpu_s,
        "wall_s": wall,
        "cpu_pct": sum(r["cpu_pct"] for r in results),
        # the parent's OthersCpu counts the workers as others: take their timed CPU out (approximate)
        "others_cpu_share": max(0.0, others.share - cpu_s / (wall * cpus)),
        **figures(cams, PAPER_TARGET),
    }


# -- the parts ------------------------------------------------------------------------------------


def part_paper(
    export_dir: Path, cache: Path, video: Path, args: argparse.Namespace, logs: Path
) -> dict[str, Any]:
    manifest = read_manifest(export_dir)
    out: dict[str, Any] = {}
    for precision in args.precision_list:
        try:
            backend = make_backend("openvino", None, export_dir, precision, cache_dir=cache)
        except EngineUnavailable as e:  # bf16 on a CPU without it
            say(f"... {precision}: not run here: {e}")
            out[precision] = {"not_run": str(e)}
            continue
        warm_s = warm_up(backend, manifest, max(args.camera_list))
        say(f"... {backend.describe()}: warm in {warm_s:.1f} s (batches 1..{max(args.camera_list)})")
        rows = []
        for n in args.camera_list:
            say(f"... {precision}: {n} camera(s) in one process, {args.seconds:g} s")
            r = run_batched(backend, manifest, video, n, args.seconds, PAPER_TARGET)
            if args.encode_seconds > 0:  # right after the run, at its mean batch
                add_efficiency(r, encode_only(backend, manifest, round(r["batch_mean"]), args.encode_seconds))
            rows.append(r)
        for n in args.separate_list:
            say(f"... {precision}: {n} separate processes, {args.seconds:g} s")
            rows.append(
                run_separate(export_dir, cache, precision, video, n, args.seconds, logs, args.torch_threads)
            )
        ratios = batched_ratios(rows)
        latency = latency_vs_encode(backend, manifest, rows, args.encode_seconds)
        out[precision] = {
            "backend": backend.describe(),
            "warm_up_s": warm_s,
            "rows": rows,
            "ratios": ratios,
            "latency_vs_encode": latency,
        }
        console.print(table_paper(precision, backend.describe(), rows, args.seconds))
        if args.encode_seconds > 0:
            console.print(table_efficiency(precision, rows, latency))
        for n, r in ratios.items():
            say(
                f"{precision}, N = {n}: batched {r['batched']:.1f} predictions/s in total, separate "
                f"processes {r['separate']:.1f}: {r['ratio']:.2f}x"
                + (f" (target >= {RATIO_TARGET:g}x)" if n == RATIO_N else "")
            )
        busy = [r for r in rows if math.isfinite(r["others_cpu_share"]) and r["others_cpu_share"] >= 0.1]
        if busy:
            worst = max(busy, key=lambda r: r["others_cpu_share"])
            say(busy_note(worst["others_cpu_share"], f"{worst['mode']} N = {worst['n']} ran ({precision})"))
    return out


def add_efficiency(r: dict[str, Any], encode: dict[str, Any]) -> None:
    """The run's efficiency: its model frames/s (every source frame is one at the 25 fps model rate: its
    total predictions/s) over `encode`'s frames/s (encode alone at the run's mean batch, rounded). Below the
    target only means something where the cameras fell behind (`bound` capacity); where they kept up, the
    pipeline did all it was given (`bound` demand)."""
    model_fps = r["predictions_per_s_total"]
    engine = r["engine"]
    r["encode_only"] = encode
    r["model_fps"] = model_fps
    r["efficiency"] = model_fps / encode["fps"] if encode["fps"] > 0 else float("nan")
    r["bound"] = "demand" if r["met_fps"] else "capacity"
    # the model thread's wall time: encode, temporal_step, the rest (preprocessing, gathering, sinks' queue)
    wall = r["wall_s"]
    r["model_thread"] = {
        "encode": engine["encode_s"] / wall,
        "temporal_step": engine["temporal_step_s"] / wall,
        "rest": max(0.0, 1.0 - (engine["encode_s"] + engine["temporal_step_s"]) / wall),
        # an encoded frame in the run over one in `encode` alone (> 1: the engine was slowed meanwhile)
        "encode_slowdown": engine["encode_ms_per_frame"] / (encode["ms_median"] / encode["batch"]),
        "encode_swing": engine.get("encode_swing", float("nan")),
    }


def latency_vs_encode(
    backend: Any, info: ModelInfo, rows: list[dict[str, Any]], seconds: float
) -> dict[str, float] | None:
    """One camera's capture -> prediction p50 over `encode` alone at batch 1 (that run's, or timed now)."""
    one = next((r for r in rows if r["mode"] == "batched" and r["n"] == 1), None)
    if one is None or seconds <= 0:
        return None
    encode = one.get("encode_only")
    if encode is None or encode["batch"] != 1:
        encode = encode_only(backend, info, 1, seconds)
    p50 = one["p50_ms_median"]
    return {"p50_ms": p50, "encode_ms": encode["ms_median"], "ratio": p50 / encode["ms_median"]}


def batched_ratios(rows: list[dict[str, Any]]) -> dict[int, dict[str, float]]:
    """At each N run both ways: total predictions/s batched, separate, and their ratio."""
    batched = {r["n"]: r for r in rows if r["mode"] == "batched"}
    out = {}
    for r in rows:
        if r["mode"] == "separate" and r["n"] in batched:
            b, s = batched[r["n"]]["predictions_per_s_total"], r["predictions_per_s_total"]
            out[r["n"]] = {"batched": b, "separate": s, "ratio": b / s if s > 0 else float("nan")}
    return out


def part_demo(cache: Path, work: Path, args: argparse.Namespace) -> dict[str, Any]:
    ck = load_checkpoint(DEMO_CHECKPOINT)
    backend = make_backend("openvino", ck, None, None, cache_dir=cache)  # exported into the cache
    seconds = args.seconds
    say(f"... writing a {seconds + 3:g} s SynthActions video, {VIDEO_W}x{VIDEO_H} at {DEMO_FPS:g} fps")
    video = write_video(
        work / "synth_15fps.mp4", seconds + 3, seed=22, fps=DEMO_FPS, width=VIDEO_W, height=VIDEO_H
    )
    warm_s = warm_up(backend, ck, max(args.demo_list))
    say(f"... demo model on {backend.describe()}: warm in {warm_s:.1f} s")
    rows, held = [], 0
    for n in args.demo_list:
        say(f"... demo: {n} cameras at {DEMO_FPS:g} fps in one process, {seconds:g} s")
        r = run_batched(backend, ck, video, n, seconds, DEMO_TARGET)
        rows.append(r)
        if not r["met"]:
            break
        held = n
    console.print(table_demo(rows, backend.describe(), ck.sampling, seconds))
    return {"backend": backend.describe(), "sampling": dict(ck.sampling), "rows": rows, "held": held}


def all_active_held(out: dict[str, Any], precision: str) -> tuple[int, bool]:
    """The most cameras (every frame encoded) one process held at `precision`, and whether a larger N
    was tried and failed (False: every N tried was held, the figure is a floor)."""
    rows = [r for r in out.get("paper", {}).get(precision, {}).get("rows", []) if r["mode"] == "batched"]
    held = 0
    for r in sorted(rows, key=lambda r: r["n"]):
        if not r["met"]:
            return held, True
        held = r["n"]
    return held, False


def mix_row(r: dict[str, Any], active: int) -> dict[str, Any]:
    """A run of `active` cameras named act* and the rest still*, with the held figures and the share of
    frames reused by each kind, and the encoded frames a second."""
    r = {"mode": "batched", "active": active, "still": len(r["cameras"]) - active, **r,
         **figures(r["cameras"], PAPER_TARGET)}  # fmt: skip
    for kind in ("act", "still"):
        cams = [c for c in r["cameras"] if c["camera"].startswith(kind)]
        enc, reu = sum(c["encoded"] for c in cams), sum(c["reused"] for c in cams)
        r[f"reuse_share_{kind}"] = reu / (enc + reu) if enc + reu else float("nan")
    r["encoded_per_s"] = r["encoded"] / r["wall_s"]
    return r


def part_mix(
    export_dir: Path, cache: Path, action: Path, work: Path, args: argparse.Namespace
) -> dict[str, Any]:
    """A monitoring mix: N cameras, a quarter of them (at least one) on the action video, the rest on a
    still scene with sensor noise; the static-scene gate on (its default share). N until one fails."""
    precision = "int8" if "int8" in args.precision_list else args.precision_list[0]
    backend = make_backend("openvino", None, export_dir, precision, cache_dir=cache)
    manifest = read_manifest(export_dir)
    say(
        f"... writing a {args.seconds + 3:g} s still scene, {VIDEO_W}x{VIDEO_H} at {FPS:g} fps, sensor noise "
        f"sigma {args.still_noise:g} ({STILL_FOURCC}, lossless), and 2 s of it in mp4v for comparison"
    )
    still = write_still_video(
        work / f"still_25fps{STILL_SUFFIX}",
        args.seconds + 3,
        seed=23,
        sigma=args.still_noise,
        fourcc=STILL_FOURCC,
    )
    mp4v = write_still_video(work / "still_25fps.mp4", 2.0, seed=23, sigma=args.still_noise, fourcc="mp4v")
    noise = {"written_sigma": args.still_noise, "used": decoded_noise(still), "mp4v": decoded_noise(mp4v)}
    say(noise_line(noise))
    warm_s = warm_up(backend, manifest, max(args.mix_list))
    gate = RecognizerConfig()
    say(f"... {backend.describe()}: warm in {warm_s:.1f} s (batches 1..{max(args.mix_list)})")
    rows, held = [], 0
    for n in args.mix_list:
        active = max(1, n // 4)
        videos = {f"act{i}": action for i in range(active)} | {f"still{i}": still for i in range(n - active)}
        say(
            f"... mix: {n} cameras ({active} action, {n - active} still), gate {gate.static_gate:g}, "
            f"{args.seconds:g} s"
        )
        r = mix_row(stream_cameras(backend, manifest, videos, args.seconds, gate), active)
        rows.append(r)
        if not r["met"]:
            break
        held = n
    console.print(table_mix(rows, backend.describe(), args.seconds, noise))
    return {
        "backend": backend.describe(),
        "precision": precision,
        "static_gate": gate.static_gate,
        "still_video": noise,
        "rows": rows,
        "held": held,
        "failed": len(rows) > 0 and not rows[-1]["met"],
    }


def write_h264(path: Path, frames: Iterator[np.ndarray], count: int) -> Path:
    """`count` BGR frames as an H.264 MP4 at 25 fps (x264, CRF RTSP_CRF, a key frame a second, no
    B-frames: as a camera's substream streams)."""
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=round(FPS))
        stream.width, stream.height, stream.pix_fmt = RTSP_W, RTSP_H, "yuv420p"
        stream.options = {"crf": str(RTSP_CRF), "preset": "veryfast", "g": str(round(FPS)), "bf": "0"}
        for _ in range(count):
            out.mux(stream.encode(av.VideoFrame.from_ndarray(next(frames), format="bgr24")))
        out.mux(stream.encode(None))
    return path


def rtsp_action_frames(seed: int) -> Iterator[np.ndarray]:
    """SynthActions at 640 px, the middle 360 rows."""
    synth = LiveSynth(seed, size=RTSP_W, fps=FPS)
    top = (RTSP_W - RTSP_H) // 2
    while True:
        yield np.ascontiguousarray(next(synth).image[top : top + RTSP_H])


def rtsp_still_frames(seed: int, sigma: float) -> Iterator[np.ndarray]:
    """One SynthActions frame (640x360, the actor in view) with fresh Gaussian noise of `sigma` each frame."""
    frames = rtsp_action_frames(seed)
    for _ in range(10):
        still = next(frames).astype(np.float32)
    rng = np.random.default_rng(seed)
    while True:
        noisy = still + rng.normal(0.0, sigma, still.shape).astype(np.float32)
        yield np.clip(np.rint(noisy), 0, 255).astype(np.uint8)


class RtspFiles:
    """benchmarks/rtsp_files.py on the system python3 (GStreamer's RTSP server), serving `files` on a free
    127.0.0.1 port as /<name>0, /<name>1, ...; stopped on exit."""

    def __init__(self, files: dict[str, Path], copies: int, log: Path) -> None:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        args = [f"--file={name}={path}" for name, path in files.items()]
        cmd = ["/usr/bin/python3", str(RTSP_SERVER), "--port", str(self.port), "--copies", str(copies), *args]
        self._log = open(log, "w", encoding="utf-8")  # noqa: SIM115 (closed in __exit__)
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=self._log, text=True)

    def url(self, name: str, i: int) -> str:
        return f"rtsp://127.0.0.1:{self.port}/{name}{i}"

    def __enter__(self) -> RtspFiles:
        line = read_line(self.proc, "ready", time.monotonic() + 30)
        if not line:
            raise RuntimeError(f"the RTSP server did not start (see {self._log.name})")
        return self

    def __exit__(self, *exc: object) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._log.close()


def decode_cost(r: dict[str, Any]) -> dict[str, float]:
    """The capture threads' CPU (receiving, decoding, converting to BGR, the gate's small copy) per frame
    and per camera, and FFmpeg's own threads' beside it."""
    frames = sum(c["frames"] for c in r["cameras"])
    capture = r["threads_cpu_s"].get("capture", 0.0)
    return {
        "capture_ms_per_frame": 1e3 * capture / frames if frames else float("nan"),
        "capture_cores_per_camera": capture / r["wall_s"] / len(r["cameras"]),
        "native_cpu_s": r["threads_cpu_s"].get("native", 0.0),
    }


def part_rtsp(export_dir: Path, cache: Path, work: Path, args: argparse.Namespace) -> dict[str, Any]:
    """Cameras served by a real RTSP server as 640x360 H.264 at 25 fps: all-active (every camera on the
    action video, gate off) N = --rtsp-cameras until one fails, then the monitoring mix (a quarter on the
    action video, the rest on the still scene with sensor noise, gate on) N = --rtsp-mix until one fails."""
    precision = "int8" if "int8" in args.precision_list else args.precision_list[0]
    backend = make_backend("openvino", None, export_dir, precision, cache_dir=cache)
    manifest = read_manifest(export_dir)
    count = round((args.seconds + 8) * FPS)  # the runs' seconds, plus the cameras' open and warm-up
    say(f"... writing {count / FPS:g} s 640x360 H.264 videos (CRF {RTSP_CRF}): action, still (sigma "
        f"{args.still_noise:g})")  # fmt: skip
    action = write_h264(work / "rtsp_action.mp4", rtsp_action_frames(31), count)
    still = write_h264(work / "rtsp_still.mp4", rtsp_still_frames(33, args.still_noise), count)
    noise = {"written_sigma": args.still_noise, "used": decoded_noise(still), "action": decoded_noise(action)}
    say(f"still: {noise_line({**noise, 'mp4v': noise['action']})} (the last: the action video)")
    warm_up(backend, manifest, max((*args.rtsp_camera_list, *args.rtsp_mix_list)))
    copies = max((*args.rtsp_camera_list, *args.rtsp_mix_list))
    out: dict[str, Any] = {"backend": backend.describe(), "precision": precision, "noise": noise}
    with RtspFiles({"act": action, "still": still}, copies, work / "logs" / "rtsp_files.log") as server:
        for part, ns, gate in (
            ("all_active", args.rtsp_camera_list, ALL_ACTIVE),
            ("mix", args.rtsp_mix_list, RecognizerConfig()),
        ):
            rows, held = [], 0
            for n in ns:
                active = n if part == "all_active" else max(1, n // 4)
                urls = {f"act{i}": server.url("act", i) for i in range(active)}
                urls |= {f"still{i}": server.url("still", i) for i in range(n - active)}
                say(f"... rtsp {part}: {n} cameras ({active} action), gate {gate.static_gate:g}")
                r = mix_row(stream_cameras(backend, manifest, urls, args.seconds, gate), active)
                rows.append({**r, "decode": decode_cost(r)})
                if not r["met"]:
                    break
                held = n
            out[part] = {"rows": rows, "held": held, "failed": bool(rows) and not rows[-1]["met"]}
            console.print(table_rtsp(part, rows, backend.describe(), args.seconds))
    return out


# -- tables ---------------------------------------------------------------------------------------


def ms(v: float) -> str:
    return f"{v:.0f}" if math.isfinite(v) else "-"


def verdict(r: dict[str, Any]) -> str:
    if r["met"]:
        return "yes"
    why = [w for w, ok in (("fps", r["met_fps"]), ("p95", r["met_p95"])) if not ok]
    return "NO (" + ", ".join(why or ["error"]) + ")"


def run_columns(r: dict[str, Any]) -> list[str]:
    """The cells every run table shares, from N to others' CPU."""
    return [
        str(r["n"]),
        f"{r['fps_mean']:.1f} ({r['fps_min']:.1f})",
        f"{r['predictions_per_s_mean']:.1f}",
        f"{r['predictions_per_s_total']:.1f}",
        ms(r["p50_ms_median"]),
        f"{ms(r['p95_ms_worst'])} ({ms(r['p95_ms_median'])})",
        ms(r["max_ms_worst"]),
        str(r["dropped"]),
        f"{r['batch_mean']:.2f}" + (f" ({r['full_rounds']:.0%})" if r["mode"] == "batched" else ""),
        f"{r['cpu_pct']:.0f}",
        f"{r['others_cpu_share']:.0%}" if math.isfinite(r["others_cpu_share"]) else "-",
    ]


RUN_COLUMNS = (
    "N",
    "fps/cam mean (min)",
    "pred/s/cam",
    "total pred/s",
    "p50 ms",
    "p95 ms worst (median)",
    "max ms",
    "dropped",
    "cams/round (full)",
    "CPU % of 1 core",
    "others' CPU",
)


def table_paper(precision: str, backend: str, rows: list[dict[str, Any]], seconds: float) -> Table:
    t = Table(
        title=f"paper model (ResNet-34, {CROP} px, W={WINDOW}, S={STRIDE}, 25 fps) on {backend}: "
        f"{VIDEO_W}x{VIDEO_H} {FPS:g} fps video per camera, real time, {seconds:g} s"
    )
    for col in ("mode", *RUN_COLUMNS, "target met"):
        t.add_column(col, justify="left" if col == "mode" else "right")
    for r in rows:
        mode = "one process" if r["mode"] == "batched" else "N processes"
        t.add_row(mode, *run_columns(r), verdict(r))
    t.caption = (
        f"target: every camera >= {FPS_TARGET:g} fps processed, worst p95 <= {P95_TARGET_MS:g} ms"
        + (f" (int8: at least {INT8_CAMERAS_TARGET} cameras)" if precision == "int8" else "")
        + "; CPU: the process (N processes: their sum); others' CPU: share of all CPUs used by other "
        "processes meanwhile"
    )
    return t


def pct_cell(v: float) -> str:
    return f"{v:.0%}" if math.isfinite(v) else "-"


def table_efficiency(precision: str, rows: list[dict[str, Any]], latency: dict[str, float] | None) -> Table:
    t = Table(
        title=f"{precision}, one process: the pipeline's efficiency (model frames/s over encode-only "
        "frames/s at the run's mean batch, encode timed right after the run)"
    )
    cols = (
        "N",
        "batch",
        "encode-only ms/call",
        "encode-only frames/s",
        "pipeline model frames/s",
        "efficiency",
        "bound",
        "model thread: encode / step / rest",
        "encode in run / alone (slowest 1 s / median)",
        "CPU s: model / capture / native / main",
    )
    for col in cols:
        t.add_column(col, justify="right")
    for r in rows:
        if "efficiency" not in r:
            continue
        e, m, cpu = r["encode_only"], r["model_thread"], r["threads_cpu_s"]
        t.add_row(
            str(r["n"]),
            str(e["batch"]),
            f"{e['ms_median']:.1f}",
            f"{e['fps']:.1f}",
            f"{r['model_fps']:.1f}",
            f"{r['efficiency']:.2f}",
            r["bound"],
            f"{m['encode']:.0%} / {m['temporal_step']:.0%} / {m['rest']:.0%}",
            f"{m['encode_slowdown']:.2f}x ({m['encode_swing']:.2f}x)",
            " / ".join(f"{cpu.get(g, 0.0):.1f}" for g in ("model", "capture", "native", "main")),
        )
    t.caption = (
        f"target: efficiency >= {EFFICIENCY_TARGET:g} where the cameras fell behind (bound: capacity); where "
        "they kept up (demand) the pipeline did all it was given. native: threads Python did not start "
        "(OpenVINO's workers, decoders). Slowest 1 s / median: encode ms a frame in the run's slowest second "
        "over its median second (> 1.3: the host slowed the engine, unseen by other processes' CPU)"
        + (
            f". One camera: capture -> prediction p50 {latency['p50_ms']:.1f} ms, encode at batch 1 "
            f"{latency['encode_ms']:.1f} ms: {latency['ratio']:.2f}x"
            if latency
            else ""
        )
    )
    return t


def noise_line(noise: dict[str, Any]) -> str:
    def one(d: dict[str, Any]) -> str:
        return (
            f"{d['file']}: mean |frame - previous| {d['mean_abs_diff']:.2f} grey levels (noise sigma "
            f"{d['noise_sigma']:.2f}, max |diff| {d['max_abs_diff']:.0f}), gate share vs the first frame "
            f"<= {d['gate_share_max']:.2%}, decode {d['decode_ms']:.2f} ms/frame"
        )

    used, mp4v = one(noise["used"]), one(noise["mp4v"])
    return f"still scene, noise sigma {noise['written_sigma']:g} written; decoded: {used}; {mp4v}"


def mix_cells(r: dict[str, Any]) -> list[str]:
    """The cells the mix tables share: N, action / still cameras, fps, p50, p95."""
    return [
        str(r["n"]),
        f"{r['active']} / {r['still']}",
        f"{r['fps_mean']:.1f} ({r['fps_min']:.1f})",
        ms(r["p50_ms_median"]),
        f"{ms(r['p95_ms_worst'])} ({ms(r['p95_ms_median'])})",
    ]


def table_mix(rows: list[dict[str, Any]], backend: str, seconds: float, noise: dict[str, Any]) -> Table:
    t = Table(
        title=f"monitoring mix on {backend}, one process, static-scene gate on: a quarter of the cameras on "
        f"the action video, the rest on a still scene with sensor noise, real time, {seconds:g} s"
    )
    cols = (
        "N",
        "action / still",
        "fps/cam mean (min)",
        "p50 ms",
        "p95 ms worst (median)",
        "max ms",
        "reused: all (still, action)",
        "encoded frames/s",
        "cams/round",
        "CPU % of 1 core",
        "held",
    )
    for col in cols:
        t.add_column(col, justify="right")
    for r in rows:
        t.add_row(
            *mix_cells(r),
            ms(r["max_ms_worst"]),
            f"{pct_cell(r['reuse_share'])} ({pct_cell(r['reuse_share_still'])}, "
            f"{pct_cell(r['reuse_share_act'])})",
            f"{r['encoded_per_s']:.1f}",
            f"{r['batch_mean']:.2f}",
            f"{r['cpu_pct']:.0f}",
            verdict(r),
        )
    t.caption = (
        f"held: every camera >= {FPS_TARGET:g} fps processed and worst p95 <= {P95_TARGET_MS:g} ms. "
        + noise_line(noise)
    )
    return t


def table_rtsp(part: str, rows: list[dict[str, Any]], backend: str, seconds: float) -> Table:
    what = (
        "every camera on the action video, gate off"
        if part == "all_active"
        else ("a quarter on the action video, the rest on the still scene with noise, gate on")
    )
    t = Table(title=f"RTSP cameras (640x360 H.264, 25 fps, GStreamer's server on 127.0.0.1) on {backend}: "
              f"{what}, real time, {seconds:g} s")  # fmt: skip
    cols = ("N", "action / still", "fps/cam mean (min)", "p50 ms", "p95 ms worst (median)", "reused",
            "capture ms/frame", "capture cores/cam", "cams/round", "CPU % of 1 core", "held")  # fmt: skip
    for col in cols:
        t.add_column(col, justify="right")
    for r in rows:
        d = r["decode"]
        t.add_row(
            *mix_cells(r),
            pct_cell(r["reuse_share"]),
            f"{d['capture_ms_per_frame']:.2f}",
            f"{d['capture_cores_per_camera']:.3f}",
            f"{r['batch_mean']:.2f}",
            f"{r['cpu_pct']:.0f}",
            verdict(r),
        )
    t.caption = (
        f"held: every camera >= {FPS_TARGET:g} fps processed and worst p95 <= {P95_TARGET_MS:g} ms; capture: "
        "the capture threads' CPU (receive, decode, BGR, the gate's small copy)"
    )
    return t


def table_demo(rows: list[dict[str, Any]], backend: str, sampling: Any, seconds: float) -> Table:
    t = Table(
        title=f"demo model (96 px, sampled at {float(sampling['fps']):g} fps) on {backend}: "
        f"{VIDEO_W}x{VIDEO_H} {DEMO_FPS:g} fps video per camera, one process, real time, {seconds:g} s"
    )
    for col in (*RUN_COLUMNS, "held"):
        t.add_column(col, justify="right")
    for r in rows:
        t.add_row(*run_columns(r), verdict(r))
    t.caption = (
        f"held: every camera >= {DEMO_FPS_TARGET:g} fps processed and worst p95 <= {P95_TARGET_MS:g} ms"
    )
    return t


def targets(out: dict[str, Any]) -> list[dict[str, str]]:
    rows = []
    int8 = out.get("paper", {}).get("int8", {})
    batched = [r for r in int8.get("rows", []) if r["mode"] == "batched"]
    at = [r for r in batched if r["n"] >= INT8_CAMERAS_TARGET]
    largest = max((r["n"] for r in batched if r["met"]), default=0)
    if at:
        r = min(at, key=lambda r: r["n"])
        figure = (
            f"N = {r['n']}: min {r['fps_min']:.1f} fps, worst p95 {ms(r['p95_ms_worst'])} ms; "
            f"largest N met: {largest or 'none'}"
        )
        met = "yes" if any(r["met"] for r in at) else "NO"
    else:
        figure, met = (
            f"not measured (N = {INT8_CAMERAS_TARGET} not run); largest N met: {largest or 'none'}",
            "-",
        )
    rows.append(
        {
            "target": f"{INT8_CAMERAS_TARGET} cameras at {FPS:g} fps (>= {FPS_TARGET:g}), p95 <= "
            f"{P95_TARGET_MS:g} ms, int8, one process",
            "figure": figure,
            "met": met,
        }
    )
    for precision, part in out.get("paper", {}).items():
        ratio = part.get("ratios", {}).get(RATIO_N)
        rows.append(
            {
                "target": f"batched / separate processes, total predictions/s at N = {RATIO_N} >= "
                f"{RATIO_TARGET:g}x ({precision})",
                "figure": f"{ratio['ratio']:.2f}x ({ratio['batched']:.1f} / {ratio['separate']:.1f})"
                if ratio
                else "not measured",
                "met": ("yes" if ratio["ratio"] >= RATIO_TARGET else "NO") if ratio else "-",
            }
        )
    for precision, part in out.get("paper", {}).items():
        capacity = [r for r in part.get("rows", []) if r.get("bound") == "capacity"]
        if capacity:
            r = max(capacity, key=lambda r: r["n"])
            rows.append(
                {
                    "target": f"pipeline efficiency >= {EFFICIENCY_TARGET:g} ({precision}, where the "
                    "cameras fell behind)",
                    "figure": f"N = {r['n']}: {r['model_fps']:.1f} / {r['encode_only']['fps']:.1f} frames/s "
                    f"(batch {r['encode_only']['batch']}) = {r['efficiency']:.2f}" + busy_run(r),
                    # a ratio of two moments of a shared host says nothing when others used the CPUs
                    "met": "-" if busy_run(r) else "yes" if r["efficiency"] >= EFFICIENCY_TARGET else "NO",
                }
            )
        elif any("efficiency" in r for r in part.get("rows", [])):
            best = max((r for r in part["rows"] if "efficiency" in r), key=lambda r: r["n"])
            rows.append(
                {
                    "target": f"pipeline efficiency >= {EFFICIENCY_TARGET:g} ({precision})",
                    "figure": f"not measured under load: every N kept up (N = {best['n']}: "
                    f"{best['efficiency']:.2f}, demand-bound)",
                    "met": "-",
                }
            )
    mix = out.get("mix")
    if mix:
        base, base_failed = all_active_held(out, mix["precision"])
        mix_held = f"{mix['held'] or 'none'}" + ("" if mix["failed"] else " (every N tried: a floor)")
        base_txt = f"{base or 'none'}" + ("" if base_failed else " (every N tried: a floor)")
        share = [r["reuse_share"] for r in mix["rows"] if r["n"] == mix["held"]]
        rows.append(
            {
                "target": f"monitoring mix held >= {MIX_TARGET:g}x all-active held ({mix['precision']}, "
                "gate on)",
                "figure": f"mix {mix_held} vs all-active {base_txt}"
                + (f": {mix['held'] / base:.1f}x" if base else "")
                + (f"; reused {share[0]:.0%} of the frames at N = {mix['held']}" if share else ""),
                "met": mix_verdict(mix["held"], mix["failed"], base, base_failed),
            }
        )
    rtsp = out.get("rtsp")
    if rtsp and rtsp.get("mix") and rtsp.get("all_active"):
        mix, base = rtsp["mix"], rtsp["all_active"]
        share = [r["reuse_share"] for r in mix["rows"] if r["n"] == mix["held"]]
        floor = " (every N tried: a floor)"
        rows.append(
            {
                "target": f"RTSP monitoring mix held >= {MIX_TARGET:g}x all-active held (640x360 H.264, "
                f"{rtsp['precision']}, gate on)",
                "figure": f"mix {mix['held'] or 'none'}{'' if mix['failed'] else floor} vs all-active "
                f"{base['held'] or 'none'}{'' if base['failed'] else floor}"
                + (f": {mix['held'] / base['held']:.1f}x" if base["held"] else "")
                + (f"; reused {share[0]:.0%} of the frames at N = {mix['held']}" if share else ""),
                "met": mix_verdict(mix["held"], mix["failed"], base["held"], base["failed"]),
            }
        )
    demo = out.get("demo")
    if demo:
        tried = ", ".join(str(r["n"]) for r in demo["rows"])
        failed = next((r for r in demo["rows"] if not r["met"]), None)
        more = (
            f"; N = {failed['n']} failed: min {failed['fps_min']:.1f} fps, worst p95 "
            f"{ms(failed['p95_ms_worst'])} ms"
            if failed
            else ""
        )
        rows.append(
            {
                "target": f"{DEMO_FPS:g} fps demo-model cameras held by one process ({demo['backend']})",
                "figure": f"{demo['held'] or 'none'} (tried {tried}{more})",
                "met": "-",
            }
        )
    return rows


def busy_run(r: dict[str, Any]) -> str:
    """A note where other processes used more than BUSY_SHARE of the CPUs during the run, else ""."""
    share = r.get("others_cpu_share", float("nan"))
    busy = math.isfinite(share) and share > BUSY_SHARE
    return f" (BUSY: others used {share:.0%} of the CPUs: not judged)" if busy else ""


def mix_verdict(mix: int, mix_failed: bool, base: int, base_failed: bool) -> str:
    """Whether mix >= MIX_TARGET x base can be said: a figure whose N never failed is only a floor."""
    if not base:
        return "-"
    if mix >= MIX_TARGET * base:
        return "yes" if base_failed else "-"  # the all-active figure might be larger
    return "NO" if mix_failed else "-"  # the mix figure might be larger


def table_targets(rows: list[dict[str, str]]) -> Table:
    t = Table(title="targets")
    for col in ("target", "figure", "met"):
        t.add_column(col, justify="right" if col == "met" else "left")
    for r in rows:
        t.add_row(r["target"], r["figure"], r["met"])
    return t


# -- main -----------------------------------------------------------------------------------------


def int_list(text: str) -> tuple[int, ...]:
    values = tuple(int(x) for x in text.split(",") if x.strip())
    if not values or any(v < 1 for v in values):
        raise argparse.ArgumentTypeError(f"{text!r}: give positive whole numbers, comma-separated")
    return values


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=" ".join((__doc__ or "").split("\n\n")[0].split()))
    p.add_argument("--quick", action="store_true", help="smoke run: N = 1, 2; 5 s; the first precision")
    p.add_argument("--seconds", type=float, help="seconds per run (default 20; --quick 5)")
    p.add_argument("--precisions", default=",".join(PRECISIONS), help="OpenVINO precisions: int8, bf16")
    p.add_argument("--cameras", type=int_list, help="N cameras in one process (default 1,2,4,6,8)")
    p.add_argument("--separate", type=int_list, help="N separate processes (default 2,4; --quick 2)")
    p.add_argument("--demo-cameras", type=int_list, help="demo-model cameras (default 8,16,24,32)")
    p.add_argument(
        "--mix", type=int_list, help="monitoring-mix cameras, a quarter active, gate on (default 4,8,12,16)"
    )
    p.add_argument("--no-mix", action="store_true", help="skip the monitoring mix")
    p.add_argument("--rtsp-cameras", type=int_list, default=(),
                   help="all-active RTSP cameras (640x360 H.264), e.g. 2,3,4 (default: none)")  # fmt: skip
    p.add_argument("--rtsp-mix", type=int_list, default=(),
                   help="RTSP monitoring-mix cameras, a quarter active, gate on, e.g. 8,12,16")  # fmt: skip
    p.add_argument(
        "--encode-seconds",
        type=float,
        default=ENCODE_SECONDS,
        help=f"encode alone after each batched paper run, for its efficiency (default "
        f"{ENCODE_SECONDS:g}; 0: skip)",
    )
    p.add_argument(
        "--still-noise",
        type=float,
        default=STILL_NOISE,
        help=f"the still scene's sensor noise, sigma in grey levels (default {STILL_NOISE:g})",
    )
    p.add_argument("--calib-frames", type=int, help="int8 calibration frames (default 300; --quick 32)")
    p.add_argument("--json", type=Path, help="write every figure here (default: <tmp>/glanet_multicam.json)")
    p.add_argument("--work", type=Path, help="keep the model, export and videos here and reuse them")
    p.add_argument(
        "--torch-threads",
        type=int,
        help="torch intra-op threads in every process (default: torch's own; the runtime's per-frame "
        "preprocessing runs in torch on the model thread)",
    )
    # one worker process of the separate-processes runs (started by this script)
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--export", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--cache", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--precision", help=argparse.SUPPRESS)
    p.add_argument("--video", type=Path, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        args.seconds = args.seconds or 20.0
        return args
    quick = QUICK if args.quick else {}
    args.seconds = args.seconds or quick.get("seconds", 20.0)
    args.camera_list = args.cameras or quick.get("cameras", CAMERAS)
    args.separate_list = args.separate or quick.get("separate", SEPARATE)
    args.demo_list = args.demo_cameras or quick.get("demo_cameras", DEMO_CAMERAS)
    args.mix_list = () if args.no_mix else args.mix or quick.get("mix", MIX)
    args.rtsp_camera_list, args.rtsp_mix_list = args.rtsp_cameras, args.rtsp_mix
    if bool(args.rtsp_cameras) != bool(args.rtsp_mix):
        p.error("--rtsp-cameras and --rtsp-mix go together (the mix is compared with the all-active figure)")
    args.calib_frames = args.calib_frames or quick.get("calib_frames", 300)
    args.precision_list = [x.strip() for x in args.precisions.split(",") if x.strip()]
    if any(x not in ("fp32", "bf16", "int8") for x in args.precision_list) or not args.precision_list:
        p.error(f"--precisions {args.precisions!r}: choose from int8, bf16, fp32")
    if args.quick:
        args.precision_list = args.precision_list[:1]
    if args.seconds <= 0 or args.calib_frames < 1:
        p.error("--seconds and --calib-frames must be positive")
    if args.encode_seconds < 0 or args.still_noise < 0:
        p.error("--encode-seconds and --still-noise cannot be negative")
    args.json = args.json or Path(tempfile.gettempdir()) / "glanet_multicam.json"
    return args


def run(args: argparse.Namespace, work: Path, out: dict[str, Any]) -> None:
    cache = work / "cache"
    logs = work / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    export_dir, out["model"] = prepare_model(work, args.calib_frames)
    out["model"] |= {
        "config": "paper preset, resnet34, 51 classes, random weights (BN calibrated)",
        "sampling": {"fps": FPS, "window": WINDOW, "stride": STRIDE},
    }
    say(f"... writing a {args.seconds + 3:g} s SynthActions video, {VIDEO_W}x{VIDEO_H} at {FPS:g} fps")
    video = write_video(work / "synth_25fps.mp4", args.seconds + 3, seed=21, width=VIDEO_W, height=VIDEO_H)
    out["video"] = {"width": VIDEO_W, "height": VIDEO_H, "fps": FPS, "seconds": args.seconds + 3}
    out["shared_file_check"] = shared_file_check(video, max(*args.camera_list, *args.demo_list))
    say(out["shared_file_check"])
    out["paper"] = part_paper(export_dir, cache, video, args, logs)
    if args.mix_list:
        out["mix"] = part_mix(export_dir, cache, video, work, args)
    if args.rtsp_mix_list:
        out["rtsp"] = part_rtsp(export_dir, cache, work, args)
    if args.demo_list:
        out["demo"] = part_demo(cache, work, args)
    out["targets"] = targets(out)
    console.print(table_targets(out["targets"]))


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    if args.torch_threads:
        torch.set_num_threads(args.torch_threads)
    if args.worker:
        worker_main(args)
        return
    os.environ.setdefault("OPENCV_LOG_LEVEL", "ERROR")
    command = shlex.join(["python", "benchmarks/multicam.py", *(sys.argv[1:] if argv is None else argv)])
    say(command)
    import openvino as ov

    machine = machine_line(
        f"torch {torch.__version__} ({torch.get_num_threads()} threads)",
        f"OpenVINO {ov.get_version()}",
        f"OpenCV {cv2.__version__}",
    )
    say(machine)
    started = time.monotonic()
    out: dict[str, Any] = {"command": command, "machine": machine, "started_utc": time.time()}
    if args.work is not None:
        args.work.mkdir(parents=True, exist_ok=True)
        run(args, args.work, out)
    else:
        with tempfile.TemporaryDirectory(prefix="glanet-multicam-bench-") as tmp:
            run(args, Path(tmp), out)
    out["total_s"] = time.monotonic() - started
    write_json(args.json, out)
    say(f"wrote {args.json}; {out['total_s'] / 60:.1f} min in all")


if __name__ == "__main__":
    main()
