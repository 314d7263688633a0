"""Engines benchmark (issue 5): `encode` on every backend against torch fp32 eager, and streaming on OpenVINO.

    python benchmarks/engines.py [--parts encode,stream] [--repeats 50] [--stream-seconds 30] [--json OUT]

encode: the paper's GLANet (ResNet-34, 224 px, 51 classes; random weights, BN statistics calibrated on
    SynthActions frames) saved as a checkpoint, exported once (engines.export), int8 built by NNCF on the
    build's `synth` source. `backend.encode` (what the recognizer calls, conversions included) latency at
    batch 1 (median, p90, min) and throughput at batch 8 for torch fp32 eager (the baseline), OpenVINO fp32 /
    bf16 / int8 and, where a CUDA device is, torch CUDA, TensorRT fp16 / fp32 and Torch-TensorRT fp16; each
    as a ratio to the baseline measured in this run, rounds interleaved so that drift in machine load hits
    all alike, with the share of the CPUs other processes took meanwhile. Checks that OpenVINO compiled what
    was asked (file, precision hint, each convolution's runtime precision). On one 30-frame clip, each
    backend's encode + temporal_step against torch: per-branch feature cosine, SA peak cell, fused max |dp|
    and top-1 agreement per step.
stream: `StreamApp` as `run_camera.py --engine DIR --backend openvino --precision P --headless` runs it,
    on a 25 fps SynthActions video file in real time, with the same checkpoint sampled at 25 fps (every
    frame a model frame): processed and model FPS, capture -> prediction latency, drops; torch fp32 too.
"""

# ruff: noqa: E402  (the project's imports come after the sys.path fix below)
from __future__ import annotations

import argparse
import collections
import copy
import math
import os
import shlex
import statistics
import sys
import tempfile
import time
from array import array
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.console import Console
from rich.table import Table
from torch import Tensor

# This file is named like the package it measures: run as a script, its own folder comes first on sys.path
# and `import engines` would find this file. Put the repository root in its place (as `python -m` would):
# the project's packages and `benchmarks.common` are found there.
ROOT = Path(__file__).resolve().parents[1]
sys.path[:] = [str(ROOT) if Path(p or ".").resolve() == ROOT / "benchmarks" else p for p in sys.path]

from benchmarks.common import (
    CROP,
    FPS,
    RESIZE,
    STRIDE,
    WINDOW,
    TimedBackend,
    machine_line,
    paper_checkpoint,
    pct,
    sync,
    synth_images,
    write_json,
    write_video,
)
from engines.build import build_openvino_int8
from engines.calibration import SYNTH
from engines.errors import EngineUnavailable
from engines.export import export
from engines.manifest import read_manifest
from engines.openvino_backend import INT8_XML, OpenVINOBackend
from engines.select import available_backends, choose_backend, make_backend
from engines.torch_backend import TorchBackend
from glanet.checkpoint import load_checkpoint
from glanet.data.transforms import EvalTransform
from glanet.models.online import Encoded
from stream.runtime.app import StreamApp
from stream.runtime.spec import StreamOptions
from stream.sources.readers import parse_source
from stream.types import Prediction

PARTS = ("encode", "stream")
THROUGHPUT_BATCH = 8
VIDEO_W, VIDEO_H = 320, 240  # the stream's test video: a camera-like 4:3 frame
# issue 5's targets on the 2-core CPU: batch-1 encode latency ratio to torch fp32 eager ...
LATENCY_TARGETS = {("openvino", "bf16"): 3.0, ("openvino", "int8"): 4.0}
# ... and end to end on OpenVINO: keep up with a 25 fps source, capture -> prediction p95 within 100 ms
STREAM_FPS_TARGET = 25.0
FPS_TOLERANCE = 0.01  # the source is paced at exactly 25 fps: "keeps up" is within 1% of it
STREAM_P95_TARGET_MS = 100.0
console = Console(width=160)


# -- helpers --------------------------------------------------------------------------------------


class OthersCpu:
    """The share of all CPUs that other processes used between `__enter__` and `__exit__` (Linux /proc/stat
    less this process's own CPU time): above ~10% the machine was busy, and torch eager (OpenMP threads that
    wait for each other at every layer) suffers far more from that than OpenVINO does."""

    def __init__(self) -> None:
        self.share = float("nan")
        self._start: tuple[float, float, float] | None = None

    @staticmethod
    def _now() -> tuple[float, float, float]:
        with open("/proc/stat") as f:
            fields = [int(v) for v in f.readline().split()[1:]]
        busy = (sum(fields) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")  # less idle and iowait
        own = os.times()
        return time.monotonic(), busy, own.user + own.system

    def __enter__(self) -> OthersCpu:
        try:
            self._start = self._now()
        except (OSError, ValueError, IndexError):
            self._start = None
        return self

    def __exit__(self, *exc: object) -> None:
        if self._start is None:
            return
        (t0, busy0, own0), (t1, busy1, own1) = self._start, self._now()
        cpus = os.cpu_count() or 1
        self.share = max(0.0, ((busy1 - busy0) - (own1 - own0)) / ((t1 - t0) * cpus))


def busy_note(share: float, what: str) -> str:
    if not math.isfinite(share):
        return f"other processes' CPU use while {what}: unknown (no /proc/stat)"
    verdict = "a quiet machine" if share < 0.1 else "a BUSY machine: rerun on a quiet one before quoting"
    return f"other processes used {share:.0%} of the {os.cpu_count()} CPUs while {what}: {verdict}"


def one_line(e: BaseException) -> str:
    return (str(e).strip().splitlines() or [type(e).__name__])[0]


def say(text: str) -> None:
    console.print(text, markup=False, highlight=False)


def openvino_facts(backend: OpenVINOBackend) -> dict[str, Any]:
    """What OpenVINO really compiled for encode: the file, the precision hint, and the precision each
    convolution runs in (from the runtime model): the proof that bf16 / int8 are what ran."""
    compiled = backend._encode  # the compiled encode model (no public accessor)
    convs: collections.Counter[str] = collections.Counter()
    for op in compiled.get_runtime_model().get_ops():
        rt = op.get_rt_info()
        if "layerType" in rt and rt["layerType"].astype(str) == "Convolution":
            convs[rt["runtimePrecision"].astype(str)] += 1
    hint = compiled.get_property("INFERENCE_PRECISION_HINT")  # an ov.Type: to_string() gives f32, bf16
    return {
        "file": backend.encode_path.name,
        "inference_precision_hint": hint.to_string() if hasattr(hint, "to_string") else str(hint),
        "performance_hint": str(compiled.get_property("PERFORMANCE_HINT")),
        "threads": int(compiled.get_property("INFERENCE_NUM_THREADS")),
        "convolutions_by_runtime_precision": dict(convs),
    }


def check_openvino(precision: str, facts: dict[str, Any]) -> list[str]:
    """Problems with what OpenVINO compiled for `precision`; empty when it is what was asked for."""
    problems = []
    want_hint = {"fp32": "f32", "bf16": "bf16", "int8": "f32"}[precision]
    want_conv = {"fp32": {"f32"}, "bf16": {"bf16"}, "int8": {"u8", "i8"}}[precision]
    if precision == "int8" and facts["file"] != INT8_XML:
        problems.append(f"int8 loaded {facts['file']}, not {INT8_XML}")
    if facts["inference_precision_hint"] != want_hint:
        problems.append(f"INFERENCE_PRECISION_HINT is {facts['inference_precision_hint']}, not {want_hint}")
    convs = facts["convolutions_by_runtime_precision"]
    others = {p: n for p, n in convs.items() if p not in want_conv}
    if not convs or others:
        problems.append(f"convolutions run in {convs or 'nothing'}, expected {'/'.join(sorted(want_conv))}")
    return problems


# -- the backends under test ----------------------------------------------------------------------


@dataclass
class Candidate:
    """One backend and precision: built (`backend`) or not run here (`skipped`, the reason)."""

    name: str
    precision: str
    device: str
    backend: Any = None
    skipped: str | None = None
    load_s: float = float("nan")
    facts: dict[str, Any] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    b1_ms: list[float] = field(default_factory=list)
    b8_ms: list[float] = field(default_factory=list)

    @property
    def label(self) -> str:
        return f"{self.name} {self.precision}" + (f" ({self.device})" if self.name == "torch" else "")

    @property
    def cuda(self) -> bool:
        return self.device.startswith("cuda")


def build_candidates(ck_path: Path, export_dir: Path, cache: Path) -> list[Candidate]:
    """Every backend of issue 5, built where it can run and listed with the reason where it cannot. Each GPU
    backend gets its own copy of the model: they move the model they are given onto the GPU."""
    avail = available_backends()
    ck = load_checkpoint(ck_path)
    cands = [Candidate("torch", "fp32", "cpu")]
    cands += [Candidate("openvino", p, "cpu") for p in ("fp32", "bf16", "int8")]
    cands += [Candidate("torch", "fp32", "cuda")]
    cands += [Candidate("tensorrt", p, "cuda") for p in ("fp16", "fp32")]
    cands += [Candidate("torch_tensorrt", "fp16", "cuda")]
    for c in cands:
        reason = avail.get(c.name)
        if c.cuda and not torch.cuda.is_available():
            reason = "no CUDA device"
        if reason is not None:
            c.skipped = f"not run here: {reason}"
            continue
        start = time.perf_counter()
        try:
            if c.name == "torch":
                c.backend = TorchBackend(copy.deepcopy(ck.model) if c.cuda else ck.model, c.device)
            elif c.name == "openvino":
                c.backend = OpenVINOBackend.from_manifest(
                    export_dir, c.precision, cache_dir=cache / "openvino"
                )
                c.facts = openvino_facts(c.backend)
                c.problems = check_openvino(c.precision, c.facts)
            else:
                c.backend = make_backend(
                    c.name,
                    load_checkpoint(ck_path),
                    export_dir,
                    c.precision,
                    c.device,
                    max_batch=THROUGHPUT_BATCH,
                    cache_dir=cache,
                )
        except EngineUnavailable as e:  # e.g. bf16 on a CPU without it
            c.skipped, c.backend = f"not run here: {one_line(e)}", None
            continue
        except Exception as e:  # one engine that fails to build is reported, the others still run
            c.skipped, c.backend = f"failed to build: {type(e).__name__}: {one_line(e)}", None
            continue
        c.load_s = time.perf_counter() - start
    return cands


# -- part encode ----------------------------------------------------------------------------------


def timed(fn: Callable[[], object], iters: int, warmup: int, device: str) -> list[float]:
    for _ in range(warmup):
        fn()
    sync(device)
    times = []
    for _ in range(iters):
        start = time.perf_counter()
        fn()
        sync(device)
        times.append((time.perf_counter() - start) * 1e3)
    return times


def time_encode(cands: list[Candidate], frames: Tensor, repeats: int, warmup: int, rounds: int = 4) -> None:
    """Fill b1_ms / b8_ms: `repeats` timed calls at batch 1 and at batch 8 per backend, in `rounds`
    interleaved rounds (each preceded by `warmup` calls) so that changes in machine load hit all alike."""
    one, eight = frames[:1].contiguous(), frames[:THROUGHPUT_BATCH].contiguous()
    for c in cands:  # first calls compile shapes and allocate: not timed
        try:
            if c.backend is not None:
                for x in (one, eight):
                    c.backend.encode(x)
        except Exception as e:  # the GPU paths are not run in CI: one that fails is reported, not fatal
            c.skipped, c.backend = f"failed to run: {type(e).__name__}: {one_line(e)}", None
    live = [c for c in cands if c.backend is not None]
    per_round = [repeats // rounds + (1 if r < repeats % rounds else 0) for r in range(rounds)]
    for n in per_round:
        for c in live:
            enc = c.backend.encode
            c.b1_ms += timed(lambda enc=enc: enc(one), n, warmup, c.device)
            c.b8_ms += timed(lambda enc=enc: enc(eight), max(1, n // 2), max(1, warmup // 2), c.device)


def agreement(cands: list[Candidate], frames: Tensor) -> None:
    """Each backend's encode + temporal_step over one clip (batch 1, frame by frame) against torch fp32 CPU:
    per stream the lowest cosine of its feature vectors, how often the SA map peaks at the same cell (the
    paper's SA, softmax of sum_c F_c^2, is all but one-hot: a moved peak changes that stream's vector), max
    |dp| of the fused probabilities and top-1 agreement per step."""

    def run(backend: Any) -> tuple[list[list[np.ndarray]], list[int], list[np.ndarray]]:
        state = backend.init_state(1)
        feats, peaks, probs = [], [], []
        for i in range(frames.shape[0]):
            f: Encoded = backend.encode(frames[i : i + 1])
            out, state = backend.temporal_step(f.features, state)
            feats.append([s.float().cpu().flatten().numpy() for s in f.features.values()])
            peaks.append(int(f.maps["sa"].float().cpu().flatten().argmax()))
            probs.append(out.fused.float().cpu().flatten().numpy())
        return feats, peaks, probs

    def cosine(a: np.ndarray, b: np.ndarray) -> float:
        return float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b) + 1e-12))

    live = [c for c in cands if c.backend is not None]
    names = live[0].backend.branch_names
    ref_feats, ref_peaks, ref_probs = run(live[0].backend)
    margin = [float(np.diff(np.sort(p)[-2:])[0]) for p in ref_probs]
    for c in live:
        try:
            feats, peaks, probs = (ref_feats, ref_peaks, ref_probs) if c is live[0] else run(c.backend)
        except Exception as e:  # reported in the JSON; the timings stand
            c.facts["agreement_error"] = f"{type(e).__name__}: {one_line(e)}"
            continue
        n = len(probs)
        top1 = [int(p.argmax() == r.argmax()) for p, r in zip(probs, ref_probs, strict=True)]
        cos = {
            name: min(cosine(feats[i][s], ref_feats[i][s]) for i in range(n)) for s, name in enumerate(names)
        }
        c.facts["agreement"] = {
            "frames": n,
            "feature_cosine_min": cos,
            "sa_peak_agreement": sum(int(a == b) for a, b in zip(peaks, ref_peaks, strict=True)) / n,
            "fused_max_abs_diff": max(
                float(np.abs(p - r).max()) for p, r in zip(probs, ref_probs, strict=True)
            ),
            "top1_agreement": sum(top1) / n,
            "reference_top1_margin_median": statistics.median(margin),
        }


def encode_results(cands: list[Candidate]) -> list[dict[str, Any]]:
    base = cands[0]
    b1_base = statistics.median(base.b1_ms)
    b8_base = THROUGHPUT_BATCH / statistics.median(base.b8_ms) * 1e3
    rows = []
    for c in cands:
        r: dict[str, Any] = {
            "backend": c.name,
            "precision": c.precision,
            "device": c.device,
            "label": c.label,
        }
        target = LATENCY_TARGETS.get((c.name, c.precision))
        r["target_latency_ratio"] = target
        if c.backend is None:
            r["skipped"] = c.skipped
            rows.append(r)
            continue
        b1 = statistics.median(c.b1_ms)
        fps8 = THROUGHPUT_BATCH / statistics.median(c.b8_ms) * 1e3
        ratio = b1_base / b1
        r |= {
            "describe": c.backend.describe(),
            "load_s": c.load_s,
            "batch1_ms": {"median": b1, "p90": pct(c.b1_ms, 90), "min": min(c.b1_ms), "n": len(c.b1_ms)},
            "batch1_ratio": ratio,
            "batch1_ratio_of_minima": min(base.b1_ms) / min(c.b1_ms),
            f"batch{THROUGHPUT_BATCH}_fps": fps8,
            f"batch{THROUGHPUT_BATCH}_ms": {"median": statistics.median(c.b8_ms), "n": len(c.b8_ms)},
            f"batch{THROUGHPUT_BATCH}_ratio": fps8 / b8_base,
            "target_met": None if target is None else bool(ratio >= target and not c.problems),
            "facts": c.facts,
            "problems": c.problems,
            "batch1_samples_ms": [round(v, 3) for v in c.b1_ms],
        }
        rows.append(r)
    return rows


def table_encode(rows: list[dict[str, Any]], repeats: int) -> Table:
    t = Table(
        title=f"encode, {CROP} px ResNet-34 GLANet: batch 1 latency ({repeats} runs) and batch "
        f"{THROUGHPUT_BATCH} throughput, ratios to torch fp32 eager CPU in this run"
    )
    cols = ("backend", "b1 p50 ms", "p90", "min", "b1 ratio (mins)", f"b{THROUGHPUT_BATCH} frames/s", "ratio")
    for col in (*cols, "top-1 agree", "target (b1)", "met", "note"):
        t.add_column(col, justify="left" if col in ("backend", "note") else "right")
    for r in rows:
        target = f">= {r['target_latency_ratio']:g}x" if r["target_latency_ratio"] else "-"
        if "skipped" in r:
            t.add_row(r["label"], *["-"] * 7, target, "", r["skipped"])
            continue
        agree = r["facts"].get("agreement")
        met = "-" if r["target_met"] is None else ("yes" if r["target_met"] else "NO")
        t.add_row(
            r["label"],
            f"{r['batch1_ms']['median']:.1f}",
            f"{r['batch1_ms']['p90']:.1f}",
            f"{r['batch1_ms']['min']:.1f}",
            f"{r['batch1_ratio']:.2f}x ({r['batch1_ratio_of_minima']:.2f}x)",
            f"{r[f'batch{THROUGHPUT_BATCH}_fps']:.1f}",
            f"{r[f'batch{THROUGHPUT_BATCH}_ratio']:.2f}x",
            f"{agree['top1_agreement']:.0%}" if agree else "-",
            target,
            met,
            "; ".join(r["problems"]) or f"load {r['load_s']:.1f} s",
        )
    return t


def part_encode(
    ck_path: Path, export_dir: Path, cache: Path, repeats: int, warmup: int, agree_frames: int
) -> dict[str, Any]:
    say("... building the backends (OpenVINO compiles; GPU backends build their plans)")
    cands = build_candidates(ck_path, export_dir, cache)
    transform = EvalTransform.from_preprocessing(read_manifest(export_dir).preprocessing)
    frames = transform(synth_images(max(THROUGHPUT_BATCH, agree_frames), seed=31))  # (N, 3, 224, 224)
    say(f"... timing encode: {repeats} runs at batch 1, {repeats // 2} at batch {THROUGHPUT_BATCH}, each")
    with OthersCpu() as others:
        time_encode(cands, frames, repeats, warmup)
    if agree_frames:
        say(f"... agreement with torch over a {agree_frames}-frame clip")
        agreement(cands, frames[:agree_frames])
    rows = encode_results(cands)
    console.print(table_encode(rows, repeats))
    for r in rows:
        facts = r.get("facts", {})
        if r["backend"] == "openvino":
            say(
                f"check {r['label']}: {facts['file']}, "
                f"INFERENCE_PRECISION_HINT {facts['inference_precision_hint']}, "
                f"convolutions run in {facts['convolutions_by_runtime_precision']}, "
                f"{facts['threads']} threads, {facts['performance_hint']}: "
                + ("ok" if not r["problems"] else "PROBLEM: " + "; ".join(r["problems"]))
            )
        agree = facts.get("agreement")
        if agree and r["label"] != rows[0]["label"]:
            say(
                f"agreement {r['label']} vs torch fp32: feature cosine min "
                + ", ".join(f"{k} {v:.4f}" for k, v in agree["feature_cosine_min"].items())
                + f"; SA peak on the same cell {agree['sa_peak_agreement']:.0%}; "
                f"fused max |dp| {agree['fused_max_abs_diff']:.2e}, top-1 {agree['top1_agreement']:.0%} of "
                f"{agree['frames']} steps (torch's median top-1 margin "
                f"{agree['reference_top1_margin_median']:.1e}: random weights, small margins)"
            )
    say(busy_note(others.share, "timing encode"))
    return {"rows": rows, "repeats": repeats, "warmup_per_round": warmup, "others_cpu_share": others.share}


# -- part stream ----------------------------------------------------------------------------------


class CallTimes(TimedBackend):
    """Any backend, each call's time kept (not synchronized: the CPU backends return finished results)."""

    def __init__(self, inner: Any) -> None:
        super().__init__(inner)
        self.encode_ms = array("d")
        self.step_ms = array("d")

    def record(self, call: str, ms: float) -> None:
        (self.encode_ms if call == "encode" else self.step_ms).append(ms)


def warm_up(backend: Any, transform: EvalTransform) -> None:
    """The shapes the recognizer will use (encode at batch 1, temporal_step over K states), run once: the
    first call at a shape is slow in OpenVINO, and would show as latency of the first predictions."""
    x = transform(synth_images(1, seed=1))
    k = math.ceil(WINDOW / STRIDE)
    f = backend.encode(x)
    feats = {n: s.expand(k, *s.shape[1:]) for n, s in f.features.items()}
    backend.temporal_step(feats, backend.init_state(k))


def stream_run(label: str, backend: Any, info: Any, video: Path, seconds: float, why: str) -> dict[str, Any]:
    """`StreamApp` on `video` in real time, headless, nothing saved, for `seconds`: run_camera.py's run."""
    timed_backend = CallTimes(backend)
    warm_up(backend, EvalTransform.from_preprocessing(info.preprocessing))
    t, lat, idx = array("d"), array("d"), array("l")
    t0 = [0.0]

    def on_prediction(p: Prediction) -> None:
        t.append(time.monotonic() - t0[0])
        lat.append(p.latency_s * 1e3)
        idx.append(p.frame.index)

    spec = parse_source(str(video), folder_fps=float(info.sampling["fps"]))
    options = StreamOptions(headless=True, dashboard=False, duration_s=seconds, on_prediction=on_prediction)
    app = StreamApp(spec, info, timed_backend, options, backend_note=why)
    t0[0] = time.monotonic()
    with OthersCpu() as others:
        s = app.run()
    if s.error is not None:
        raise RuntimeError(f"the stream failed: {s.error}")
    captured = app.capture.frames if app.capture is not None else 0
    span = t[-1] - t[0] if len(t) > 1 else float("nan")
    processed_steady = (idx[-1] - idx[0]) / span if len(t) > 1 else float("nan")
    model_steady = (len(t) - 1) / span if len(t) > 1 else float("nan")
    return {
        "label": label,
        "backend": s.backend,
        "reason": s.reason,
        "wall_s": s.wall_s,
        "captured": captured,
        "frames": s.frames,
        "predictions": s.predictions,
        "model_ticks": s.model_ticks,
        "dropped": s.dropped,
        "skipped": s.frames - s.predictions,  # processed frames that gave no prediction
        "left_in_buffer": captured - s.frames - s.dropped,
        "processed_fps": s.fps,  # frames / wall time, start-up included (what run_camera.py prints)
        "processed_fps_steady": processed_steady,  # first to last prediction
        "model_fps": s.predictions / s.wall_s if s.wall_s > 0 else float("nan"),
        "model_fps_steady": model_steady,
        "latency_ms": {"p50": s.latency_p50_ms, "p95": s.latency_p95_ms, "max": s.latency_max_ms},
        "encode_ms": {"p50": pct(timed_backend.encode_ms, 50), "p95": pct(timed_backend.encode_ms, 95)},
        "temporal_step_ms": {"p50": pct(timed_backend.step_ms, 50), "p95": pct(timed_backend.step_ms, 95)},
        "others_cpu_share": others.share,
        "latencies_ms": [round(v, 2) for v in lat],
    }


def stream_met(r: dict[str, Any]) -> dict[str, bool]:
    return {
        "fps": bool(r["processed_fps_steady"] >= STREAM_FPS_TARGET * (1 - FPS_TOLERANCE)),
        "p95": bool(r["latency_ms"]["p95"] <= STREAM_P95_TARGET_MS),
    }


def table_stream(rows: list[dict[str, Any]], video: str, seconds: float) -> Table:
    t = Table(title=f"stream: StreamApp in real time on {video} for {seconds:g} s, headless, no dashboard")
    cols = ("backend", "processed fps", "model fps", "latency p50 / p95 / max ms", "dropped / skipped")
    for col in (*cols, "encode / step p50 ms", "target", "met"):
        t.add_column(col, justify="left" if col == "backend" else "right")
    for r in rows:
        if "not_run" in r:
            t.add_row(r["label"], *["-"] * 5, "", "", r["not_run"])
            continue
        lat = r["latency_ms"]
        if r["targeted"]:
            target = f">= {STREAM_FPS_TARGET:g} fps, p95 <= {STREAM_P95_TARGET_MS:g} ms"
            met = r["target_met"]
            verdict = (
                "yes" if all(met.values()) else "NO (" + ", ".join(k for k, v in met.items() if not v) + ")"
            )
        else:
            target, verdict = "- (contrast)", "-"
        t.add_row(
            r["label"],
            f"{r['processed_fps_steady']:.1f} ({r['processed_fps']:.1f})",
            f"{r['model_fps_steady']:.1f}",
            f"{lat['p50']:.0f} / {lat['p95']:.0f} / {lat['max']:.0f}",
            f"{r['dropped']} / {r['skipped']}",
            f"{r['encode_ms']['p50']:.1f} / {r['temporal_step_ms']['p50']:.1f}",
            target,
            verdict,
        )
    return t


def part_stream(
    ck_path: Path, export_dir: Path, cache: Path, folder: Path, seconds: float, precisions: Sequence[str]
) -> dict[str, Any]:
    say(f"... writing a {seconds + 3:g} s SynthActions video, {VIDEO_W}x{VIDEO_H} at {FPS:g} fps")
    video = write_video(folder / "synth_25fps.mp4", seconds + 3, seed=21, width=VIDEO_W, height=VIDEO_H)
    manifest = read_manifest(export_dir)
    rows = []
    for precision in precisions:
        # run_camera.py --engine DIR --backend openvino --precision P: the manifest has the model's metadata
        _, why = choose_backend("openvino")
        try:
            backend = make_backend("openvino", None, export_dir, precision, cache_dir=cache)
        except EngineUnavailable as e:  # bf16 on a CPU without it
            rows.append({"label": f"openvino {precision}", "not_run": f"not run here: {one_line(e)}"})
            continue
        say(f"... stream: {backend.describe()} for {seconds:g} s")
        r = stream_run(f"openvino {precision}", backend, manifest, video, seconds, why)
        rows.append(r | {"targeted": True, "target_met": stream_met(r)})
    ck = load_checkpoint(ck_path)
    backend = make_backend("torch", ck, None, "fp32", "cpu")
    say(f"... stream: {backend.describe()} for {seconds:g} s (contrast)")
    r = stream_run("torch fp32 (cpu)", backend, ck, video, seconds, "torch: requested, torch fp32 on CPU")
    rows.append(r | {"targeted": False, "target_met": stream_met(r)})
    console.print(table_stream(rows, f"{VIDEO_W}x{VIDEO_H} {FPS:g} fps SynthActions video", seconds))
    for r in rows:
        if "not_run" not in r:
            say(busy_note(r["others_cpu_share"], f"streaming on {r['label']}"))
    say(
        "processed fps: frames through the loop per second from the first prediction to the last (in "
        "brackets: over the whole run, start-up included); model fps: predictions per second; "
        "latency: capture -> prediction (capture_ts is when the paced frame was due); the file source "
        "blocks rather than drops, "
        f"so a model slower than {FPS:g} fps shows as growing latency, not drops."
    )
    return {"video": {"width": VIDEO_W, "height": VIDEO_H, "fps": FPS}, "seconds": seconds, "rows": rows}


# -- main -----------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--parts", default="encode,stream", help="comma-separated: encode, stream")
    p.add_argument("--repeats", type=int, default=50, help="encode: timed batch-1 runs per backend")
    p.add_argument("--warmup", type=int, default=3, help="encode: untimed runs before each round")
    p.add_argument("--agree-frames", type=int, default=WINDOW, help="encode: clip for agreement (0: skip)")
    p.add_argument("--calib-frames", type=int, default=300, help="OpenVINO int8 calibration frames")
    p.add_argument("--stream-seconds", type=float, default=30.0, help="stream: seconds per run")
    p.add_argument("--stream-precisions", default="bf16,int8", help="stream: OpenVINO precisions to run")
    p.add_argument("--json", type=Path, help="write every number here")
    args = p.parse_args(argv)
    args.part_list = [x.strip() for x in args.parts.split(",") if x.strip()]
    if not args.part_list or any(x not in PARTS for x in args.part_list):
        p.error(f"--parts {args.parts!r}: choose from {', '.join(PARTS)}")
    args.precisions = [x.strip() for x in args.stream_precisions.split(",") if x.strip()]
    if any(x not in ("fp32", "bf16", "int8") for x in args.precisions):
        p.error(f"--stream-precisions {args.stream_precisions!r}: choose from fp32, bf16, int8")
    if args.repeats < 4:
        p.error(f"--repeats ({args.repeats}) must be at least 4 (four interleaved rounds)")
    if args.calib_frames < 1 or args.stream_seconds <= 0:
        p.error("--calib-frames and --stream-seconds must be positive")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    os.environ.setdefault("OPENCV_LOG_LEVEL", "ERROR")
    command = shlex.join(["python", "benchmarks/engines.py", *(sys.argv[1:] if argv is None else argv)])
    say(command)
    import openvino as ov

    machine = machine_line(
        f"torch {torch.__version__} ({torch.get_num_threads()} threads)",
        f"OpenVINO {ov.get_version()}",
        f"CUDA {torch.cuda.get_device_name() if torch.cuda.is_available() else 'none'}",
    )
    say(machine)
    say(f"auto-selection here: {choose_backend('auto')[1]}")
    out: dict[str, Any] = {"command": command, "machine": machine, "started_utc": time.time()}

    with tempfile.TemporaryDirectory(prefix="glanet-engines-bench-") as tmp:
        folder = Path(tmp)
        cache = folder / "cache"  # a fresh engine cache: load times include compiling
        say("... building the ResNet-34 GLANet (random weights, BN calibrated on SynthActions), saving it")
        ck_path = paper_checkpoint(folder, synth_images(16, seed=3))
        start = time.perf_counter()
        export_dir = folder / "export"
        export(ck_path, export_dir)
        export_s = time.perf_counter() - start
        say(f"... exported in {export_s:.1f} s; int8: NNCF on {args.calib_frames} {SYNTH} frames")
        start = time.perf_counter()
        build_openvino_int8(export_dir, calib=SYNTH, calib_frames=args.calib_frames)
        build_s = time.perf_counter() - start
        out["model"] = {
            "config": "paper preset, resnet34, 51 classes, random weights (BN calibrated)",
            "preprocessing": {"resize": RESIZE, "crop": CROP},
            "sampling": {"fps": FPS, "window": WINDOW, "stride": STRIDE},
            "export_s": export_s,
            "int8_build_s": build_s,
            "int8_calibration_frames": args.calib_frames,
        }
        say(f"... int8 built in {build_s:.1f} s")

        if "encode" in args.part_list:
            out["encode"] = part_encode(
                ck_path, export_dir, cache, args.repeats, args.warmup, args.agree_frames
            )
        if "stream" in args.part_list:
            out["stream"] = part_stream(
                ck_path, export_dir, cache, folder, args.stream_seconds, args.precisions
            )

    if args.json:
        write_json(args.json, out)
        say(f"wrote {args.json}")


if __name__ == "__main__":
    main()
