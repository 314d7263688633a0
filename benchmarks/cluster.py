"""Cluster benchmark: how many real-time cameras, and how much archive footage a second, one node of one
CPU handles against two nodes of one CPU each (Ray, `--cluster local:Nx1`, every node pinned to its core).

    python benchmarks/cluster.py [--quick] [--seconds 10] [--settle 5] [--max-cameras 10]
        [--archive-videos 8] [--archive-seconds 10] [--json OUT] [--work DIR] [--no-namespace]

Model: the paper's GLANet (ResNet-34, 224 px, W=30, S=15, clips sampled at 25 fps), random weights with BN
    calibrated on SynthActions frames, exported and built to OpenVINO int8 (as benchmarks/multicam.py).
Cameras held: one ClusterApp per configuration (local:1x1, local:2x1) kept alive; for N = 1, 2, ... it adds
    N cameras, each its own capture of one 25 fps 320x240 SynthActions file read in REAL time, waits
    `--settle` s, then measures `--seconds` s: processed fps per camera (frames through the loop / s, from
    the shards' numbers) and capture -> prediction latency p95 (the predictions of the window, measured on
    the shards); then removes them. Held: every camera >= 24.5 fps and p95 <= 150 ms. The search stops at
    the first N not held. The 2-node search starts at the 1-node figure.
Archive: `python -m stream.cli.archive --cluster local:Nx1 --batch 4` over `--archive-videos` SynthActions
    videos of `--archive-seconds` s at 25 fps: its own "x real time" (video seconds / wall seconds, counted
    from when the shards are up).
Target: 2 nodes hold >= 1.8x the cameras and the archive throughput of 1 node.
Ray advertises the machine's network address, so by default the script runs itself inside a private
network namespace (`unshare --net --pid`, only the loopback up; needs root); `--no-namespace` runs it
as it is (on a machine whose network may see it).
"""

# ruff: noqa: E402  (the project's imports come after the sys.path fix below)
from __future__ import annotations

import argparse
import math
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from rich.table import Table

ROOT = Path(__file__).resolve().parents[1]
sys.path[:] = [str(ROOT) if Path(p or ".").resolve() == ROOT / "benchmarks" else p for p in sys.path]

from benchmarks.common import machine_line, write_json, write_video
from benchmarks.engines import VIDEO_H, VIDEO_W, say
from benchmarks.multicam import FPS_TARGET, P95_TARGET_MS, RATIO_TARGET, console, prepare_model

if TYPE_CHECKING:
    from stream.runtime.model import ModelChoice

IN_NAMESPACE = "GLANET_BENCH_NAMESPACE"


def model_flags(export_dir: Path) -> ModelChoice:
    from stream.runtime.model import ModelChoice

    return ModelChoice(engine=export_dir, backend="openvino", precision="int8")


def hold(nodes: int, export_dir: Path, video: Path, args: argparse.Namespace, start: int) -> dict[str, Any]:
    """Cameras held by `nodes` nodes of one CPU: N from `start` up, until one N is not held."""
    from stream.cluster.address import parse_cluster_address
    from stream.cluster.controller import ClusterApp
    from stream.runtime.spec import CameraSpec, StreamOptions
    from stream.sources.readers import parse_source

    latencies: list[tuple[float, str, float]] = []
    options = StreamOptions(
        headless=True, dashboard=False, quiet=True, keep_alive=True,
        on_prediction=lambda p: latencies.append((time.monotonic(), p.frame.camera, p.latency_s)),
    )  # fmt: skip
    address = parse_cluster_address(f"local:{nodes}x1")
    app = ClusterApp([], address, model_flags(export_dir), options, max_batch=args.max_cameras, say=say)
    rows: list[dict[str, Any]] = []
    try:
        app.start()
        runner = threading.Thread(target=app.run, name="bench-cluster")
        runner.start()
        n = max(1, start)
        while n <= args.max_cameras:
            names = [f"n{n}-cam{i}" for i in range(n)]
            for name in names:
                app.add_camera(CameraSpec(name, parse_source(str(video))))
            time.sleep(args.settle)
            cams = [app.camera(name) for name in names]
            t0, f0 = time.monotonic(), [c.total().frames for c in cams]
            time.sleep(args.seconds)
            t1, f1 = time.monotonic(), [c.total().frames for c in cams]
            fps = [(b - a) / (t1 - t0) for a, b in zip(f0, f1, strict=True)]
            window = [lat for t, cam, lat in latencies if t0 <= t <= t1 and cam in names]
            p95 = float(np.percentile(window, 95)) * 1000 if window else math.nan
            per_shard = {s.name: len(s.cameras) for s in app.shards}
            ok = min(fps) >= FPS_TARGET and p95 <= P95_TARGET_MS
            row = {"nodes": nodes, "cameras": n, "min_fps": min(fps), "mean_fps": float(np.mean(fps)),
                   "p95_ms": p95, "held": ok, "per_shard": per_shard}  # fmt: skip
            rows.append(row)
            say(f"  {nodes} node(s), {n} cameras {per_shard}: min {min(fps):.1f} fps, p95 {p95:.0f} ms: "
                f"{'held' if ok else 'NOT held'}")  # fmt: skip
            for name in names:
                app.remove_camera(name)
            time.sleep(1.0)
            if not ok:
                break
            n += 1
        app.request_stop("benchmark over")
        runner.join(timeout=60)
    finally:
        app.close()
    held = max((r["cameras"] for r in rows if r["held"]), default=0)
    # a finer figure than the count: every camera's frames a second together, once they are too many
    over = [r["cameras"] * r["mean_fps"] for r in rows if not r["held"]]
    return {"nodes": nodes, "held": held, "rows": rows, "saturated_fps": over[-1] if over else math.nan}


def archive(nodes: int, export_dir: Path, folder: Path, out: Path) -> dict[str, Any]:
    """stream.cli.archive over the cluster: its own x-real-time figure."""
    cmd = [sys.executable, "-m", "stream.cli.archive", "--videos", str(folder), "--out", str(out),
           "--no-progress", "--cluster", f"local:{nodes}x1", "--batch", "4", "--engine", str(export_dir),
           "--backend", "openvino", "--precision", "int8"]  # fmt: skip
    shutil.rmtree(out, ignore_errors=True)
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=1800)
    m = re.search(r"(\d+) s of video in ([\d.]+) s \(([\d.]+)x real time\)", proc.stderr)
    if proc.returncode != 0 or m is None:
        raise RuntimeError(f"stream.cli.archive failed (rc {proc.returncode}): {proc.stderr[-2000:]}")
    video_s, wall_s, speed = float(m.group(1)), float(m.group(2)), float(m.group(3))
    say(f"  archive on {nodes} node(s): {video_s:.0f} s of video in {wall_s:.1f} s: {speed:.1f}x real time")
    return {"nodes": nodes, "video_s": video_s, "wall_s": wall_s, "x_real_time": speed}


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="3 s windows, 4 short videos, 32 calibration frames")
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--settle", type=float, default=5.0)
    p.add_argument("--max-cameras", type=int, default=10)
    p.add_argument("--archive-videos", type=int, default=8)
    p.add_argument("--archive-seconds", type=float, default=10.0)
    p.add_argument("--calib-frames", type=int, default=300)
    p.add_argument("--json", type=Path, help="write every figure here")
    p.add_argument("--work", type=Path, help="keep the model and videos here (reused when there)")
    p.add_argument(
        "--no-namespace", action="store_true", help="do not run inside a private network namespace"
    )
    args = p.parse_args(argv)
    if args.quick:
        args.seconds, args.settle, args.archive_videos, args.archive_seconds = 3.0, 3.0, 4, 4.0
        args.calib_frames = 32
    return args


def in_namespace(argv: Sequence[str]) -> int:
    """This script again, inside a private network namespace with only the loopback up."""
    if shutil.which("unshare") is None or os.geteuid() != 0:
        raise SystemExit("a private network namespace needs unshare and root; or give --no-namespace")
    inner = " ".join(shlex.quote(a) for a in (sys.executable, str(Path(__file__).resolve()), *argv))
    env = {**os.environ, IN_NAMESPACE: "1"}
    cmd = [
        "unshare",
        "--net",
        "--pid",
        "--fork",
        "--mount-proc",
        "bash",
        "-c",
        f"ip link set lo up && {inner}",
    ]
    return subprocess.call(cmd, env=env, cwd=ROOT)


def main(argv: Sequence[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    if not args.no_namespace and os.environ.get(IN_NAMESPACE) != "1":
        raise SystemExit(in_namespace(argv))
    work = args.work or Path(tempfile.mkdtemp(prefix="glanet-cluster-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("GLANET_CACHE_DIR", str(work / "cache"))
    say(machine_line(f"{os.cpu_count()} CPUs shared out one per node"))
    export_dir, _ = prepare_model(work, args.calib_frames)
    video = work / "camera.mp4"
    if not video.exists():
        write_video(video, args.settle + args.seconds + 600, seed=5, width=VIDEO_W, height=VIDEO_H)
    footage = work / "footage"
    footage.mkdir(exist_ok=True)
    for i in range(args.archive_videos):
        path = footage / f"video{i:02d}.mp4"
        if not path.exists():
            write_video(path, args.archive_seconds, seed=100 + i, width=VIDEO_W, height=VIDEO_H)
    say("cameras held at 25 fps:")
    one = hold(1, export_dir, video, args, 1)
    two = hold(2, export_dir, video, args, max(1, one["held"]))
    say("archive throughput:")
    a1 = archive(1, export_dir, footage, work / "results-1")
    a2 = archive(2, export_dir, footage, work / "results-2")
    cam_ratio = two["held"] / one["held"] if one["held"] else math.nan
    arch_ratio = a2["x_real_time"] / a1["x_real_time"]
    table = Table(title="GLANet ResNet-34, OpenVINO int8: 1 node of 1 CPU against 2 nodes of 1 CPU (Ray)")
    for col in ("", "1 node x 1 CPU", "2 nodes x 1 CPU", "ratio", f"target >= {RATIO_TARGET}x"):
        table.add_column(col, justify="right")
    table.add_row("cameras held at 25 fps (p95 <= 150 ms)", str(one["held"]), str(two["held"]),
                  f"{cam_ratio:.2f}x", "met" if cam_ratio >= RATIO_TARGET else "NOT met")  # fmt: skip
    sat1, sat2 = one["saturated_fps"], two["saturated_fps"]
    table.add_row("frames/s processed, all cameras, one camera too many", f"{sat1:.1f}", f"{sat2:.1f}",
                  f"{sat2 / sat1:.2f}x", "")  # fmt: skip
    table.add_row("archive, video s per wall s", f"{a1['x_real_time']:.1f}", f"{a2['x_real_time']:.1f}",
                  f"{arch_ratio:.2f}x", "met" if arch_ratio >= RATIO_TARGET else "NOT met")  # fmt: skip
    console.print(table)
    say("the shards are other processes (Ray workers): how busy the machine was shows in the load average "
        "above, taken before the runs")  # fmt: skip
    if args.json:
        write_json(args.json, {"cameras": [one, two], "archive": [a1, a2], "camera_ratio": cam_ratio,
                               "archive_ratio": arch_ratio})  # fmt: skip


if __name__ == "__main__":
    main()
