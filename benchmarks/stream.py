"""Streaming benchmark (issue 4): incremental vs sliding-window cost, end-to-end FPS and latency, overload.

    python benchmarks/stream.py [--part a,b,c] [--overload-seconds 300] [--json out.json]

(a) Milliseconds per prediction, same model, same frames, same process: our Recognizer (one `encode` per
    model frame, one batched `temporal_step` over the K = W/S staggered states) against the sliding window
    of clip-based demos (keep the last W preprocessed frames, run `model(clip)` on all W per prediction).
    For the paper's model (ResNet-34, 224 px, W=30, S=15, SRU 3x1024) and the demo model (W=8). Checks
    that both give the same fused probabilities whenever the recognizer's history is a full window.
(b) `StreamApp` end to end on a 25 fps video file in real time (headless, no saving): source, loop and model
    FPS, capture -> prediction latency, drops, and the model's own per-frame time for scale.
(c) Overload: the live demo source at 25 fps with the ResNet-34 model, which cannot keep up on a CPU:
    latency against the model's time per prediction, ring-buffer drops, resets, and the process's RSS
    sampled in a side thread (is memory flat?).

Weights of the ResNet-34 model are random (BN statistics calibrated on a few frames); timing does not
depend on them. The ResNet-34 model is written as a temporary checkpoint and loaded back, as a user would.
Tables go to stdout; StreamApp's one-line summaries (every 5 s) go to stderr as progress. Parts run on
their own (`--part c`); development settings: `--predictions 4 --video-seconds 6 --overload-seconds 20`.
"""

# ruff: noqa: E402  (the project's imports come after the sys.path fix below)
from __future__ import annotations

import argparse
import collections
import datetime
import os
import shlex
import sys
import tempfile
import threading
import time
from array import array
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.console import Console
from rich.table import Table
from torch import Tensor

# This file is named like the package it measures: run as a script, its own folder comes first on sys.path
# and `import stream` would find this file. Put the repository root in its place (as `python -m` would):
# the project's packages and `benchmarks.common` are found there.
ROOT = Path(__file__).resolve().parents[1]
sys.path[:] = [str(ROOT) if Path(p or ".").resolve() == ROOT / "benchmarks" else p for p in sys.path]

from benchmarks.common import (
    FPS,
    SYNTH_SIZE,
    TimedBackend,
    machine_line,
    paper_checkpoint,
    pct,
    sync,
    synth_images,
    write_json,
    write_video,
)
from engines.torch_backend import TorchBackend
from glanet.checkpoint import LoadedCheckpoint, load_checkpoint
from glanet.data.transforms import EvalTransform
from stream.runtime.app import StreamApp
from stream.runtime.recognizer import Recognizer
from stream.runtime.spec import StreamOptions
from stream.runtime.summary import Summary
from stream.sources.readers import parse_source
from stream.types import Frame, Prediction

DEMO_CHECKPOINT = ROOT / "models" / "glanet_synthactions_demo.pt"
PARTS = ("a", "b", "c")
SOURCE_FPS = FPS  # the test video and the overload's live source (and the ResNet-34 checkpoint's clips)
SOURCE_SIZE = SYNTH_SIZE  # px, square SynthActions frames
CHECK_TOL = 1e-4  # max abs diff of fused probabilities, incremental vs clip, on a full window
SPEEDUP_TARGET = 20.0  # issue 4: incremental >= 20x cheaper per prediction for W = 30
console = Console(width=130)


# -- helpers --------------------------------------------------------------------------------------


def rss_mb() -> float:
    """Resident set size of this process now (Linux /proc; nan elsewhere)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024.0  # kB
    except OSError:
        pass
    return float("nan")


@dataclass
class Bench:
    """A model under test: its checkpoint and a short name."""

    key: str  # "paper" | "demo"
    name: str
    ck: LoadedCheckpoint

    @property
    def window(self) -> int:
        return int(self.ck.sampling["window"])

    @property
    def stride(self) -> int:
        return int(self.ck.sampling["stride"])

    @property
    def fps(self) -> float:
        return float(self.ck.sampling["fps"])

    def describe(self) -> str:
        cfg, pre = self.ck.cfg, self.ck.preprocessing
        return (
            f"{self.name}: {cfg.backbone} {pre['crop']} px, SRU {cfg.sru_layers}x{cfg.sru_hidden}, "
            f"{cfg.num_classes} classes, W={self.window} S={self.stride} at {self.fps:g} fps"
        )


class TotalTimes(TimedBackend):
    """A torch backend whose calls are timed and summed: the model's own time inside a streaming run."""

    def __init__(self, inner: TorchBackend) -> None:
        super().__init__(inner, inner.device)
        self.encode_ms = 0.0  # since the last `take`
        self.step_ms = 0.0
        self.steps = 0

    def record(self, call: str, ms: float) -> None:
        if call == "encode":
            self.encode_ms += ms
        else:
            self.step_ms += ms
            self.steps += 1

    def take(self) -> tuple[float, float, int]:
        """(encode ms, temporal_step ms, steps) since the last call."""
        out = (self.encode_ms, self.step_ms, self.steps)
        self.encode_ms, self.step_ms, self.steps = 0.0, 0.0, 0
        return out


class SlidingWindow:
    """What clip-based demos do: keep the last W preprocessed frames, run the whole clip per prediction.
    Each frame is preprocessed once, when it comes, as in the recognizer (not W times per prediction)."""

    def __init__(self, ck: LoadedCheckpoint, device: torch.device) -> None:
        self.model = ck.model.eval().to(device)
        self.device = device
        self.transform = EvalTransform.from_preprocessing(ck.preprocessing)
        self.frames: collections.deque[Tensor] = collections.deque(maxlen=int(ck.sampling["window"]))

    def push(self, image: np.ndarray) -> np.ndarray | None:
        """Fused probabilities (K,) of the clip of the last W frames; None until W frames have come."""
        self.frames.append(self.transform([image])[0].to(self.device))
        if len(self.frames) < (self.frames.maxlen or 0):
            return None
        clip = torch.stack(tuple(self.frames)).unsqueeze(0)  # (1, W, 3, crop, crop)
        with torch.inference_mode():
            fused = self.model(clip).fused[0]
        return fused.float().cpu().numpy()


def recognizer_for(bench: Bench, backend: TotalTimes) -> Recognizer:
    """A recognizer fed one source frame per model tick (source rate = model rate)."""
    ck = bench.ck
    return Recognizer(
        backend,
        preprocessing=ck.preprocessing,
        sampling=ck.sampling,
        class_names=ck.class_names,
        source_fps=bench.fps,
    )


def model_frame_ms(bench: Bench, device: torch.device, images: list[np.ndarray], warmup: int = 5) -> dict:
    """The model's own cost of one model frame, Recognizer.push with one tick per push: medians of the whole
    push (preprocessing included), of `encode`, and of the batched `temporal_step` over the K states."""
    backend = TotalTimes(TorchBackend(bench.ck.model, device))
    rec = recognizer_for(bench, backend)
    push, enc, step = [], [], []
    for i, image in enumerate(images):
        start = time.perf_counter()
        rec.push(Frame(image, i, i / bench.fps, time.monotonic()))
        ms = (time.perf_counter() - start) * 1e3
        e, s, _ = backend.take()
        if i >= warmup:
            push.append(ms)
            enc.append(e)
            step.append(s)
    return {
        "push_ms": float(np.median(push)),
        "push_p95_ms": pct(push, 95),
        "encode_ms": float(np.median(enc)),
        "temporal_step_ms": float(np.median(step)),
        "frames": len(push),
        "states": rec.num_states,
    }


# -- part (a) -------------------------------------------------------------------------------------


def part_a(bench: Bench, device: torch.device, predictions: int, seed: int) -> dict:
    """Per-prediction ms of the recognizer and of the sliding window on the same frames, interleaved frame by
    frame; both are timed from the (warmup + 1)-th full window on, so every timed frame is timed for both."""
    w = bench.window
    warmup = 2  # full windows
    images = synth_images(w - 1 + warmup + predictions, seed=seed, fps=bench.fps)
    backend = TotalTimes(TorchBackend(bench.ck.model, device))
    rec = recognizer_for(bench, backend)
    base = SlidingWindow(bench.ck, device)
    inc_ms, inc_enc, inc_step, base_ms, diffs, top1 = [], [], [], [], [], []
    for i, image in enumerate(images):
        start = time.perf_counter()
        pred = rec.push(Frame(image, i, i / bench.fps, time.monotonic()))
        sync(device)
        t_inc = (time.perf_counter() - start) * 1e3
        e, s, _ = backend.take()
        start = time.perf_counter()
        probs = base.push(image)
        sync(device)
        t_base = (time.perf_counter() - start) * 1e3
        assert pred is not None, "one frame per model tick: every push predicts"
        if i >= w - 1 + warmup:
            inc_ms.append(t_inc)
            inc_enc.append(e)
            inc_step.append(s)
            base_ms.append(t_base)
        if probs is not None and pred.history == w:  # the recognizer's prediction is the clip of the last W
            diffs.append(float(np.abs(pred.raw_probs - probs).max()))
            top1.append(float(probs.max()))
    inc_med, base_med = float(np.median(inc_ms)), float(np.median(base_ms))
    return {
        "model": bench.describe(),
        "window": w,
        "stride": bench.stride,
        "states": rec.num_states,
        "incremental_ms": {"median": inc_med, "p95": pct(inc_ms, 95), "n": len(inc_ms)},
        "incremental_encode_ms": float(np.median(inc_enc)),
        "incremental_temporal_step_ms": float(np.median(inc_step)),
        # preprocessing, state resets, numpy copies of probs and maps: push minus encode minus step
        "incremental_other_ms": float(np.median(np.subtract(np.subtract(inc_ms, inc_enc), inc_step))),
        "sliding_window_ms": {"median": base_med, "p95": pct(base_ms, 95), "n": len(base_ms)},
        "speedup": base_med / inc_med,
        "check": {
            "full_windows": len(diffs),
            "max_abs_diff": max(diffs) if diffs else float("nan"),
            "tolerance": CHECK_TOL,
            "ok": bool(diffs) and max(diffs) <= CHECK_TOL,
            "mean_top1_prob": float(np.mean(top1)) if top1 else float("nan"),
        },
    }


def table_a(results: list[dict]) -> Table:
    t = Table(
        title="(a) per prediction: incremental (Recognizer) vs sliding window (model(clip) on the last W)"
    )
    cols = ("model", "W/S (K)", "incr. ms p50", "p95", "= encode + step +", "window ms p50", "p95")
    for col in (*cols, "speedup", "same probs (full W)"):
        t.add_column(col, justify="left" if col == "model" else "right")
    for r in results:
        c = r["check"]
        t.add_row(
            r["model"].split(":")[0],
            f"{r['window']}/{r['stride']} ({r['states']})",
            f"{r['incremental_ms']['median']:.1f}",
            f"{r['incremental_ms']['p95']:.1f}",
            f"{r['incremental_encode_ms']:.1f} + {r['incremental_temporal_step_ms']:.1f} + "
            f"{r['incremental_other_ms']:.1f}",
            f"{r['sliding_window_ms']['median']:.1f}",
            f"{r['sliding_window_ms']['p95']:.1f}",
            f"{r['speedup']:.1f}x",
            f"{'ok' if c['ok'] else 'FAIL'} {c['max_abs_diff']:.1e} ({c['full_windows']})",
        )
    return t


# -- streaming runs (b, c) ------------------------------------------------------------------------


class RssSampler:
    """VmRSS every `interval_s` in a side thread: (seconds since start, MB)."""

    def __init__(self, interval_s: float) -> None:
        self.interval_s = interval_s
        self.samples: list[tuple[float, float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)
        self._t0 = 0.0

    def _run(self) -> None:
        while True:
            self.samples.append((time.monotonic() - self._t0, rss_mb()))
            if self._stop.wait(self.interval_s):
                return

    def __enter__(self) -> RssSampler:
        self._t0 = time.monotonic()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.samples.append((time.monotonic() - self._t0, rss_mb()))


@dataclass
class Run:
    summary: Summary
    source_fps: float | None
    captured: int
    t: array[float]  # seconds since the start, per prediction
    latency_ms: array[float]  # capture -> prediction, per prediction (Prediction.latency_s)
    model_ms: array[float]  # encode + temporal_steps behind each prediction, timed in the run
    ticks: array[int]  # model ticks behind each prediction (more than 1: the frame filled skipped ticks)
    resets: list[dict]  # when the recognizer reset, and the source-time gap that made it
    rss: list[tuple[float, float]]


def stream_run(
    bench: Bench,
    device: torch.device,
    source: str,
    *,
    duration_s: float | None = None,
    rss_interval_s: float = 2.0,
    buffer_capacity: int = 0,
) -> Run:
    """StreamApp on `source` in real time, headless, nothing saved; every prediction recorded by the hook
    (in arrays, not lists of floats, so that the recording itself does not show as memory growth)."""
    backend = TotalTimes(TorchBackend(bench.ck.model, device))
    t, lat, model, ticks = array("d"), array("d"), array("d"), array("l")
    resets: list[dict] = []
    last = {"t0": 0.0, "resets": 0, "source_ts": 0.0}

    def on_prediction(p: Prediction) -> None:
        e, s, n = backend.take()
        now = time.monotonic() - last["t0"]
        t.append(now)
        lat.append(p.latency_s * 1e3)
        model.append(e + s)
        ticks.append(n)
        count = app.recognizer.resets if app.recognizer is not None else 0
        if count != last["resets"]:  # a reset happens inside push, so on a frame that then predicts
            gap = p.frame.source_ts - last["source_ts"]
            resets.append({"t_s": round(now, 3), "source_gap_s": round(gap, 3), "frame": p.frame.index})
            last["resets"] = count
        last["source_ts"] = p.frame.source_ts

    spec = parse_source(source, demo_size=SOURCE_SIZE, demo_fps=SOURCE_FPS, demo_seed=7)
    options = StreamOptions(
        headless=True,
        dashboard=False,  # a summary line on stderr every 5 s
        duration_s=duration_s,
        buffer_capacity=buffer_capacity,
        on_prediction=on_prediction,
    )
    app = StreamApp(spec, bench.ck, backend, options)  # type: ignore[arg-type]  # TotalTimes is a Backend
    with RssSampler(rss_interval_s) as rss:
        last["t0"] = time.monotonic()
        summary = app.run()
    if summary.error is not None:
        raise RuntimeError(f"the stream failed: {summary.error}")
    capture = app.capture
    assert capture is not None
    return Run(summary, capture.nominal_fps, capture.frames, t, lat, model, ticks, resets, rss.samples)


def latency_stats(values: Sequence[float]) -> dict:
    return {
        "p50": pct(values, 50),
        "p95": pct(values, 95),
        "max": float(np.max(values)) if len(values) else float("nan"),
        "n": len(values),
    }


def part_b(bench: Bench, device: torch.device, video: Path, frame_cost: dict) -> dict:
    run = stream_run(bench, device, str(video))
    s = run.summary
    excess = [a - b for a, b in zip(run.latency_ms, run.model_ms, strict=True)]
    return {
        "model": bench.describe(),
        "source": f"{video.name}: {run.captured} frames at {run.source_fps:g} fps, real time, BLOCK buffer",
        "source_fps": run.source_fps,
        "wall_s": s.wall_s,
        "frames": s.frames,
        "processed_fps": s.fps,
        "predictions": s.predictions,
        "model_fps": s.predictions / s.wall_s if s.wall_s else float("nan"),
        "model_ticks": s.model_ticks,
        "latency_ms": latency_stats(run.latency_ms),
        "latency_minus_model_ms": latency_stats(excess),
        "model_ms_per_prediction": {"median": pct(run.model_ms, 50), "p95": pct(run.model_ms, 95)},
        "frame_cost": frame_cost,
        "dropped": s.dropped,
        "resets": s.resets,
        "reason": s.reason,
        "latencies_ms": [round(v, 2) for v in run.latency_ms],
    }


def table_b(results: list[dict]) -> Table:
    t = Table(
        title="(b) StreamApp end to end: 25 fps video file in real time, headless, torch backend "
        "(fps: source / loop / predictions; latency and model time in ms)"
    )
    cols = ("model", "fps src", "loop", "pred", "latency p50", "p95", "max", "dropped")
    for col in (*cols, "model/frame (enc+step)", "model/pred in run", "latency-model p95"):
        t.add_column(col, justify="left" if col == "model" else "right")
    for r in results:
        lat, fc = r["latency_ms"], r["frame_cost"]
        t.add_row(
            r["model"].split(":")[0],
            f"{r['source_fps']:g}",
            f"{r['processed_fps']:.1f}",
            f"{r['model_fps']:.1f}",
            f"{lat['p50']:.0f}",
            f"{lat['p95']:.0f}",
            f"{lat['max']:.0f}",
            str(r["dropped"]),
            f"{fc['push_ms']:.1f} ({fc['encode_ms']:.1f}+{fc['temporal_step_ms']:.1f})",
            f"{r['model_ms_per_prediction']['median']:.1f}",
            f"{r['latency_minus_model_ms']['p95']:.0f}",
        )
    return t


def slope_mb_per_min(samples: Sequence[tuple[float, float]]) -> float:
    if len(samples) < 3:
        return float("nan")
    ts, mb = np.array(samples, dtype=np.float64).T
    return float(np.polyfit(ts / 60.0, mb, 1)[0])


def part_c(
    bench: Bench,
    device: torch.device,
    seconds: float,
    warmup_s: float,
    rss_interval_s: float,
    frame_cost: dict,
    capacity: int,
) -> dict:
    run = stream_run(
        bench, device, "demo", duration_s=seconds, rss_interval_s=rss_interval_s, buffer_capacity=capacity
    )
    s = run.summary
    warm = min(warmup_s, seconds / 3)  # a short (development) run keeps two thirds after its warm-up
    keep = np.asarray(run.t) >= warm
    lat, model = np.asarray(run.latency_ms)[keep], np.asarray(run.model_ms)[keep]
    excess = lat - model
    ticks = np.asarray(run.ticks)[keep]
    interval_ms = 1e3 / SOURCE_FPS
    target = pct(model, 50) + 2 * interval_ms
    thirds = np.array_split(lat, 3) if len(lat) >= 3 else []
    rss_after = [(t, mb) for t, mb in run.rss if t >= warm]
    rss_all = [mb for _, mb in run.rss]
    return {
        "model": bench.describe(),
        "source": f"live demo (SynthActions {SOURCE_SIZE} px) at {SOURCE_FPS:g} fps, real time",
        "buffer_capacity": capacity or 4,  # 0 asks for the capture's live default, 4
        "overload_factor": frame_cost["push_ms"] / interval_ms,
        "seconds": seconds,
        "warmup_s": warm,
        "wall_s": s.wall_s,
        "captured": run.captured,
        "frames": s.frames,
        "processed_fps": s.fps,
        "predictions": s.predictions,
        "model_ticks": s.model_ticks,
        "dropped": s.dropped,
        "dropped_share": s.dropped / run.captured if run.captured else float("nan"),
        "resets": s.resets,
        "resets_after_warmup": sum(1 for r in run.resets if r["t_s"] >= warm),
        "reset_events": run.resets,  # t_s: seconds into the run; source_gap_s: since the previous frame
        "reconnects": s.reconnects,
        "ticks_per_prediction": {
            "mean": float(ticks.mean()) if len(ticks) else float("nan"),
            "max": int(ticks.max(initial=0)),
        },
        "latency_ms": latency_stats(lat),
        "latency_p95_by_third_ms": [pct(x, 95) for x in thirds],
        "model_ms_per_prediction": {"median": pct(model, 50), "p95": pct(model, 95)},
        "latency_minus_model_ms": latency_stats(excess),
        "source_interval_ms": interval_ms,
        "target_p95_ms": target,
        "target_ok": bool(pct(lat, 95) <= target),
        "excess_target_ok": bool(pct(excess, 95) <= 2 * interval_ms),
        "frame_cost": frame_cost,
        "rss_mb": {
            "first": rss_all[0] if rss_all else float("nan"),
            "last": rss_all[-1] if rss_all else float("nan"),
            "max": max(rss_all, default=float("nan")),
            "slope_mb_per_min_after_warmup": slope_mb_per_min(rss_after),
            "samples": [(round(t, 2), round(mb, 1)) for t, mb in run.rss],
        },
        "latencies_ms": [round(v, 2) for v in run.latency_ms],
        "reason": s.reason,
    }


def table_c(r: dict) -> Table:
    t = Table(
        title=f"(c) overload for {r['seconds']:g} s: {r['source']} -> {r['model'].split(':')[0]}, "
        f"ring buffer {r['buffer_capacity']} (drop oldest)"
    )
    t.add_column("measure")
    t.add_column("value", justify="right")
    lat, ex, rss = r["latency_ms"], r["latency_minus_model_ms"], r["rss_mb"]
    fc = r["frame_cost"]
    rows = [
        (
            "model ms per frame (1 tick) vs source interval",
            f"{fc['push_ms']:.1f} vs {r['source_interval_ms']:.0f} ms ({r['overload_factor']:.2f}x)",
        ),
        ("frames captured / processed / dropped", f"{r['captured']} / {r['frames']} / {r['dropped']}"),
        ("dropped share", f"{r['dropped_share']:.0%}"),
        (
            "processed fps / predictions / model ticks",
            f"{r['processed_fps']:.1f} / {r['predictions']} / {r['model_ticks']}",
        ),
        (
            "ticks per prediction mean / max",
            f"{r['ticks_per_prediction']['mean']:.2f} / {r['ticks_per_prediction']['max']}",
        ),
        (
            f"latency p50 / p95 / max (after {r['warmup_s']:.0f} s)",
            f"{lat['p50']:.0f} / {lat['p95']:.0f} / {lat['max']:.0f} ms",
        ),
        (
            "latency p95 by third of the run",
            " / ".join(f"{v:.0f}" for v in r["latency_p95_by_third_ms"]) + " ms",
        ),
        (
            "model time per prediction p50 / p95 (encode+steps)",
            f"{r['model_ms_per_prediction']['median']:.0f} / {r['model_ms_per_prediction']['p95']:.0f} ms",
        ),
        (
            "target: latency p95 <= model p50 + 2 intervals",
            f"{lat['p95']:.0f} <= {r['target_p95_ms']:.0f} ms: {'ok' if r['target_ok'] else 'MISSED'}",
        ),
        (
            "latency - own model time p50 / p95 (<= 2 intervals)",
            f"{ex['p50']:.0f} / {ex['p95']:.0f} ms: {'ok' if r['excess_target_ok'] else 'MISSED'}",
        ),
        (
            "resets (after warm-up) / reconnects",
            f"{r['resets']} ({r['resets_after_warmup']}) / {r['reconnects']}",
        ),
        (
            "resets at s (source gap s)",
            ", ".join(f"{e['t_s']:.1f} ({e['source_gap_s']:.2f})" for e in r["reset_events"][:6])
            + (" ..." if len(r["reset_events"]) > 6 else "")
            or "-",
        ),
        (
            "RSS first / last / max",
            f"{rss['first']:.0f} / {rss['last']:.0f} / {rss['max']:.0f} MB",
        ),
        (f"RSS slope after {r['warmup_s']:.0f} s", f"{rss['slope_mb_per_min_after_warmup']:+.2f} MB/min"),
    ]
    for row in rows:
        t.add_row(*row)
    return t


# -- summary --------------------------------------------------------------------------------------


def final_table(out: dict) -> Table:
    t = Table(title="summary")
    for col in ("part", "measure", "value", "target"):
        t.add_column(col, justify="left" if col in ("part", "measure") else "right")
    for r in out.get("a", []):
        name = r["model"].split(":")[0]
        target = f">= {SPEEDUP_TARGET:g}x" if r["window"] >= 30 else "-"
        t.add_row("a", f"{name}: speedup per prediction (W={r['window']})", f"{r['speedup']:.1f}x", target)
        t.add_row(
            "a", f"{name}: max |dp| on full windows", f"{r['check']['max_abs_diff']:.1e}", f"<= {CHECK_TOL:g}"
        )
    for r in out.get("b", []):
        name = r["model"].split(":")[0]
        t.add_row(
            "b", f"{name}: processed / source fps", f"{r['processed_fps']:.1f} / {r['source_fps']:g}", "-"
        )
        lat = r["latency_ms"]
        t.add_row("b", f"{name}: latency p50 / p95", f"{lat['p50']:.0f} / {lat['p95']:.0f} ms", "-")
    for r in out.get("c", []):
        cap = f"buffer {r['buffer_capacity']}"
        t.add_row(
            "c",
            f"{cap}: overload latency p95",
            f"{r['latency_ms']['p95']:.0f} ms",
            f"<= {r['target_p95_ms']:.0f} ms",
        )
        slope = r["rss_mb"]["slope_mb_per_min_after_warmup"]
        t.add_row("c", f"{cap}: RSS slope after warm-up", f"{slope:+.2f} MB/min", "~0")
        t.add_row("c", f"{cap}: dropped / resets", f"{r['dropped']} / {r['resets']}", "many / 0")
    return t


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--part", default="a,b,c", help="comma-separated parts to run: a, b, c")
    p.add_argument("--overload-seconds", type=float, default=300.0, help="(c) length of the overload run")
    p.add_argument("--warmup-seconds", type=float, default=30.0, help="(c) left out of latency and RSS slope")
    p.add_argument("--rss-interval", type=float, default=2.0, help="(c) seconds between RSS samples")
    p.add_argument(
        "--overload-capacity",
        default="0",
        help="(c) ring buffer size, or several (4,1) for one run each (0: the live default, 4)",
    )
    p.add_argument("--video-seconds", type=float, default=30.0, help="(b) length of the 25 fps test video")
    p.add_argument("--predictions", type=int, default=24, help="(a) timed sliding-window predictions, paper")
    p.add_argument("--demo-predictions", type=int, default=200, help="(a) the same for the demo model")
    p.add_argument("--models", default="demo,paper", help="which models: demo, paper")
    p.add_argument("--device", default="cpu", help="torch device (cpu, cuda)")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    p.add_argument("--json", type=Path, help="write every number here")
    args = p.parse_args(argv)
    args.parts = [x.strip() for x in args.part.split(",") if x.strip()]
    bad = [x for x in args.parts if x not in PARTS]
    if bad or not args.parts:
        p.error(f"--part {args.part!r}: choose from {', '.join(PARTS)}")
    try:
        args.capacities = [int(x) for x in args.overload_capacity.split(",") if x.strip()]
    except ValueError:
        p.error(f"--overload-capacity {args.overload_capacity!r}: give sizes like 4 or 4,1")
    if not args.capacities or min(args.capacities) < 0:
        p.error(f"--overload-capacity {args.overload_capacity!r}: give sizes like 4 or 4,1")
    args.model_keys = [x.strip() for x in args.models.split(",") if x.strip()]
    if not set(args.model_keys) <= {"demo", "paper"} or not args.model_keys:
        p.error(f"--models {args.models!r}: choose from demo, paper")
    if "c" in args.parts and "paper" not in args.model_keys:
        p.error("part c needs the paper model (--models ...,paper)")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    os.environ.setdefault("OPENCV_LOG_LEVEL", "ERROR")
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    command = shlex.join(["python", "benchmarks/stream.py", *(sys.argv[1:] if argv is None else argv)])
    console.print(command, markup=False, highlight=False)
    machine = machine_line(
        f"torch {torch.__version__} fp32 eager on {device}", f"{torch.get_num_threads()} threads"
    )
    console.print(machine, markup=False, highlight=False)
    started = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    out: dict[str, Any] = {"command": command, "machine": machine, "started_utc": started}

    def step(message: str) -> None:
        console.print(f"... {message}", style="dim", markup=False, highlight=False)

    with tempfile.TemporaryDirectory(prefix="glanet-bench-") as tmp:
        folder = Path(tmp)
        benches: dict[str, Bench] = {}
        if "demo" in args.model_keys:
            benches["demo"] = Bench("demo", "demo R10", load_checkpoint(DEMO_CHECKPOINT, map_location=device))
        if "paper" in args.model_keys:
            step("building the ResNet-34 model (random weights, BN calibrated), saving and loading it")
            ck = load_checkpoint(paper_checkpoint(folder, synth_images(16, seed=3)))
            ck.model.to(device)
            benches["paper"] = Bench("paper", "paper R34", ck)
        for b in benches.values():
            console.print(b.describe(), markup=False, highlight=False)

        if "a" in args.parts:
            out["a"] = []
            for key, bench in benches.items():
                n = args.predictions if key == "paper" else args.demo_predictions
                step(
                    f"(a) {bench.name}: {n} sliding-window predictions and the recognizer on the same frames"
                )
                out["a"].append(part_a(bench, device, n, seed=11))
            console.print(table_a(out["a"]))
            for r in out["a"]:
                c = r["check"]
                console.print(
                    f"check {r['model'].split(':')[0]}: incremental vs clip on {c['full_windows']} full "
                    "windows, "
                    f"max |p_incr - p_clip| = {c['max_abs_diff']:.2e} (<= {CHECK_TOL:g}: "
                    f"{'ok' if c['ok'] else 'FAIL'}; mean top-1 prob {c['mean_top1_prob']:.3f})",
                    markup=False,
                    highlight=False,
                )

        costs: dict[str, dict] = {}
        if "b" in args.parts or "c" in args.parts:
            images = synth_images(45, seed=5)
            for key, bench in benches.items():
                costs[key] = model_frame_ms(bench, device, images)

        if "b" in args.parts:
            step(f"(b) writing a {args.video_seconds:g} s SynthActions video at {SOURCE_FPS:g} fps")
            video = write_video(folder / "synth_25fps.mp4", args.video_seconds, seed=21)
            out["b"] = []
            for key, bench in benches.items():
                step(f"(b) {bench.name} on {video.name} in real time")
                out["b"].append(part_b(bench, device, video, costs[key]))
            console.print(table_b(out["b"]))
            console.print(
                "latency: Prediction.latency_s = monotonic time the prediction was made - capture_ts of its "
                "frame (stamped by the capture thread when the paced frame was due); the file source blocks "
                "(every frame is processed), so a model slower than the video shows as backlog.",
                markup=False,
                highlight=False,
            )

        if "c" in args.parts:
            out["c"] = []
            for capacity in args.capacities:
                step(
                    f"(c) overload: live demo at {SOURCE_FPS:g} fps -> paper R34 for "
                    f"{args.overload_seconds:g} s, ring buffer {capacity or 'default'}"
                )
                out["c"].append(
                    part_c(
                        benches["paper"],
                        device,
                        args.overload_seconds,
                        args.warmup_seconds,
                        args.rss_interval,
                        costs["paper"],
                        capacity,
                    )
                )
                r = out["c"][-1]
                console.print(table_c(r))
                if r["overload_factor"] < 1:
                    console.print(
                        f"NOTE: the model keeps up with {SOURCE_FPS:g} fps here "
                        f"({r['frame_cost']['push_ms']:.0f} ms per frame): this run is not an overload",
                        markup=False,
                        highlight=False,
                    )
            console.print(
                "latency: capture -> prediction of that frame; model time: encode + the temporal_steps of "
                "that prediction, timed inside the run (a frame that comes late fills the model ticks it "
                "skipped, one temporal_step each); drops: frames the live ring buffer threw away; resets: "
                "the recognizer restarted its states (over W/fps source seconds between processed frames).",
                markup=False,
                highlight=False,
            )

    console.print(final_table(out))
    if args.json:
        write_json(args.json, out)
        console.print(f"wrote {args.json}", markup=False, highlight=False)


if __name__ == "__main__":
    main()
