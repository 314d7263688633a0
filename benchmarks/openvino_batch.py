"""OpenVINO at the batch sizes the multi-camera runner makes: encode (int8) at N frames and temporal_step
(fp32 weights, and int8 weights with an fp32 state) at 2N rows, under the LATENCY hint (what the backend
compiles with), the THROUGHPUT hint, and THROUGHPUT with one stream; ms per call, one request called in a
loop as the runner does, rounds interleaved so that a change in load hits every variant alike.

    python benchmarks/openvino_batch.py [--work DIR] [--cameras 1,2,4,6,8] [--rounds 6] [--calls 10]

Model: the paper's ResNet-34 GLANet (224 px, 3 x 3-layer 1024 SRUs), random weights with calibrated BN,
exported and built (int8 encode, int8-weight temporal_step) as benchmarks/multicam.py does (`--work` reuses
its folder). Figures: the best of the per-round medians (robust to other processes' bursts).
"""

# ruff: noqa: E402  (the project's imports come after the sys.path fix below)
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:] = [str(ROOT) if Path(p or ".").resolve() == ROOT / "benchmarks" else p for p in sys.path]

import numpy as np
import openvino as ov
from rich.console import Console
from rich.table import Table

from benchmarks.common import machine_line
from benchmarks.multicam import prepare_model
from engines.graph_io import FRAMES, step_inputs
from engines.manifest import TEMPORAL_STEP, read_manifest
from engines.openvino_backend import INT8_XML, STEP_DYNAMIC_QUANT_GROUP, STEP_INT8_XML

HINTS: dict[str, dict[str, Any]] = {
    "LATENCY": {"PERFORMANCE_HINT": "LATENCY"},
    "THROUGHPUT": {"PERFORMANCE_HINT": "THROUGHPUT"},
    "THROUGHPUT, 1 stream": {"PERFORMANCE_HINT": "THROUGHPUT", "NUM_STREAMS": 1},
}


def inputs(export: Path, graph: str, batch: int) -> dict[str, np.ndarray]:
    """Random inputs of the graph at `batch` (the state: its recorded per-row shapes, small values)."""
    manifest = read_manifest(export)
    rng = np.random.default_rng(0)
    if graph == "encode":
        h, w = manifest.image_size
        return {FRAMES: rng.standard_normal((batch, 3, h, w), dtype=np.float32)}
    specs = {s["name"]: s["shape"][1:] for s in manifest.graph(TEMPORAL_STEP)["inputs"]}
    out = {n: rng.standard_normal((batch, *specs[n]), dtype=np.float32) for n in step_inputs(manifest.spec)}
    out["steps"] = np.full((batch,), 5.0, np.float32)
    return out


def measure(export: Path, cameras: Sequence[int], rounds: int, calls: int) -> list[dict[str, Any]]:
    core = ov.Core()
    rows_per_camera = 2  # W/S = 30/15
    graphs = {
        "encode int8": (export / INT8_XML, "encode", 1, {}),
        "temporal_step fp32": (export / "temporal_step.onnx", "step", rows_per_camera, {}),
        "temporal_step int8 weights": (
            export / STEP_INT8_XML, "step", rows_per_camera,
            {"DYNAMIC_QUANTIZATION_GROUP_SIZE": STEP_DYNAMIC_QUANT_GROUP},
        ),
    }  # fmt: skip
    requests = {}
    for gname, (path, _, _, extra) in graphs.items():
        for hint, config in HINTS.items():
            compiled = core.compile_model(
                str(path), "CPU", {**config, **extra, "INFERENCE_PRECISION_HINT": "f32"}
            )
            requests[gname, hint] = compiled.create_infer_request()
    data = {
        (gname, n): inputs(export, kind, n * per)
        for gname, (_, kind, per, _) in graphs.items()
        for n in cameras
    }
    for key, req in requests.items():  # warm-up: the first call at a shape is slow
        for n in cameras:
            req.infer(data[key[0], n])
    times: dict[tuple[str, str, int], list[float]] = {}
    for _ in range(rounds):
        for (gname, hint), req in requests.items():
            for n in cameras:
                one = []
                for _ in range(calls):
                    start = time.perf_counter()
                    req.infer(data[gname, n])
                    one.append((time.perf_counter() - start) * 1e3)
                times.setdefault((gname, hint, n), []).append(statistics.median(one))
    return [{"graph": g, "hint": h, "cameras": n, "ms": min(v)} for (g, h, n), v in times.items()]


def table(rows: list[dict[str, Any]], cameras: Sequence[int]) -> Table:
    t = Table(title="ms per call (best of per-round medians); in brackets: ratio to LATENCY")
    t.add_column("graph")
    t.add_column("hint")
    for n in cameras:
        t.add_column(f"{n} cam", justify="right")
    by = {(r["graph"], r["hint"], r["cameras"]): r["ms"] for r in rows}
    for g in dict.fromkeys(r["graph"] for r in rows):
        for h in HINTS:
            cells = [f"{by[g, h, n]:.2f} ({by[g, 'LATENCY', n] / by[g, h, n]:.2f}x)" for n in cameras]
            t.add_row(g, h, *cells)
    return t


def main(argv: Sequence[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--work", type=Path, help="reuse (or make) the model, export and builds here")
    p.add_argument("--cameras", default="1,2,4,6,8", help="encode at N frames, temporal_step at 2N rows")
    p.add_argument("--rounds", type=int, default=6)
    p.add_argument("--calls", type=int, default=10)
    args = p.parse_args(argv)
    cameras = tuple(int(c) for c in args.cameras.split(","))
    console = Console(width=160)  # the table is wide; a pipe would get 80 columns
    console.print(machine_line())
    with tempfile.TemporaryDirectory() as tmp:
        work = args.work or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        export, _ = prepare_model(work, 300)
        console.print(table(measure(export, cameras, args.rounds, args.calls), cameras))


if __name__ == "__main__":
    main()
