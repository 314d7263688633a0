"""Multi-camera benchmark: N real-time cameras in ONE process (batched rounds) against N single-camera
processes, on OpenVINO int8 / bf16, and how many demo-model cameras one process holds.

    python benchmarks/multicam.py [--quick] [--seconds 20] [--precisions int8,bf16] [--cameras 1,2,4,6,8]
        [--separate 2,4] [--demo-cameras 8,16,24,32] [--json OUT] [--work DIR]

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
torch's own. `--quick`: N = 1, 2, separate N = 2, demo N = 8, 5 s, the first precision, 32 int8
calibration frames (a smoke run).
"""

# ruff: noqa: E402  (the project's imports come after the sys.path fix below)
from __future__ import annotations

import argparse
import json
import math
import os
import select
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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
    machine_line,
    paper_checkpoint,
    plain,
    synth_images,
    write_json,
    write_video,
)
from benchmarks.engines import VIDEO_H, VIDEO_W, OthersCpu, busy_note, say
from engines.build import build_openvino_int8, build_openvino_step_int8
from engines.errors import EngineUnavailable
from engines.export import export
from engines.manifest import MANIFEST, read_manifest
from engines.openvino_backend import INT8_BUILD, STEP_INT8_BUILD
from engines.select import make_backend
from glanet.checkpoint import load_checkpoint
from glanet.data.transforms import EvalTransform
from glanet.models.online import cat_states, init_rows
from stream.runtime.app import StreamApp
from stream.runtime.model import ModelInfo
from stream.runtime.spec import CameraSpec, StreamOptions
from stream.runtime.summary import Summary
from stream.sources.readers import parse_source

CAMERAS = (1, 2, 4, 6, 8)
SEPARATE = (2, 4)
DEMO_CAMERAS = (8, 16, 24, 32)
PRECISIONS = ("int8", "bf16")
QUICK = {"cameras": (1, 2), "separate": (2,), "demo_cameras": (8,), "seconds": 5.0, "calib_frames": 32}
DEMO_CHECKPOINT = ROOT / "models" / "glanet_synthactions_demo.pt"
DEMO_FPS = 15.0  # the demo cameras' source rate (the model samples it at 7.5 fps)
# the targets
FPS_TARGET = 24.5  # every camera processed >= this (of a 25 fps source)
DEMO_FPS_TARGET = 14.7  # (of a 15 fps source)
P95_TARGET_MS = 150.0
INT8_CAMERAS_TARGET = 6
RATIO_N = 4
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
    frame = EvalTransform.from_preprocessing(info.preprocessing)(synth_images(1, seed=1))
    k = rows_per_camera(info, backend)
    for m in range(1, max_cameras + 1):
        frames = frame.expand(m, *frame.shape[1:]).contiguous()
        enc_state = cat_states([init_rows(spec.encode_state, 1)] * m) if spec.encode_state else None
        enc = backend.encode(frames, enc_state)
        index = torch.arange(m).repeat_interleave(k)
        feats = {name: f[index] for name, f in enc.features.items()}
        backend.temporal_step(feats, init_rows(spec.step_state, m * k))
    return time.perf_counter() - start


def worker_env() -> dict[str, str]:
    """This environment without thread-count settings: each process runs with the libraries' defaults."""
    return {k: v for k, v in os.environ.items() if k not in THREAD_VARS}


# -- one run --------------------------------------------------------------------------------------


def camera_figures(name: str, s: Summary) -> dict[str, Any]:
    wall = s.wall_s
    return {
        "camera": name,
        "frames": s.frames,
        "predictions": s.predictions,
        "wall_s": wall,
        "fps": s.frames / wall if wall > 0 else 0.0,
        "predictions_per_s": s.predictions / wall if wall > 0 else 0.0,
        "latency_p50_ms": s.latency_p50_ms,
        "latency_p95_ms": s.latency_p95_ms,
        "latency_max_ms": s.latency_max_ms,
        "dropped": s.dropped,
        "reason": s.reason,
        "error": s.error,
    }


def stream_cameras(backend: Any, info: ModelInfo, video: Path, n: int, seconds: float) -> dict[str, Any]:
    """`StreamApp` on `n` cameras (one spec each on `video`), in real time, headless, for `seconds`."""
    folder_fps = float(info.sampling.get("fps") or FPS)
    specs = [CameraSpec(f"cam{i}", parse_source(str(video), folder_fps=folder_fps)) for i in range(n)]
    options = StreamOptions(headless=True, dashboard=False, duration_s=seconds)
    app = StreamApp(specs, info, backend, options)
    cpu0, wall0 = time.process_time(), time.monotonic()
    with OthersCpu() as others:
        summary = app.run()
    wall = time.monotonic() - wall0
    cpu_s = time.process_time() - cpu0
    sizes = list(app.runner.batch_sizes)
    return {
        "cameras": [camera_figures(name, s) for name, s in summary.cameras.items()],
        "reason": summary.reason,
        "rounds": len(sizes),
        "batch_mean": statistics.fmean(sizes) if sizes else float("nan"),
        "full_rounds": sum(1 for b in sizes if b == n) / len(sizes) if sizes else float("nan"),
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
    r = stream_cameras(backend, info, video, n, seconds)
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
    r = stream_cameras(backend, info, args.video, 1, args.seconds)
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
            rows.append(run_batched(backend, manifest, video, n, args.seconds, PAPER_TARGET))
        for n in args.separate_list:
            say(f"... {precision}: {n} separate processes, {args.seconds:g} s")
            rows.append(
                run_separate(export_dir, cache, precision, video, n, args.seconds, logs, args.torch_threads)
            )
        ratios = batched_ratios(rows)
        out[precision] = {"backend": backend.describe(), "warm_up_s": warm_s, "rows": rows, "ratios": ratios}
        console.print(table_paper(precision, backend.describe(), rows, args.seconds))
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
    args.calib_frames = args.calib_frames or quick.get("calib_frames", 300)
    args.precision_list = [x.strip() for x in args.precisions.split(",") if x.strip()]
    if any(x not in ("fp32", "bf16", "int8") for x in args.precision_list) or not args.precision_list:
        p.error(f"--precisions {args.precisions!r}: choose from int8, bf16, fp32")
    if args.quick:
        args.precision_list = args.precision_list[:1]
    if args.seconds <= 0 or args.calib_frames < 1:
        p.error("--seconds and --calib-frames must be positive")
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
