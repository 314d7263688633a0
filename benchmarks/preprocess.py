"""Where a round's frames are prepared for the engine: in torch on the model thread (EvalTransform's tensor,
then `encode`) against in the engine's graph (the uint8 crops, then `encode_images`: OpenVINO's
PrePostProcessor converts, reorders and normalises them), interleaved in one process.

    python benchmarks/preprocess.py [--export DIR] [--precision int8] [--batches 1,8] [--rounds 40]

Model: the export `benchmarks/multicam.py --work DIR` leaves in DIR/export (the paper's ResNet-34 GLANet,
224 px, int8 built), or with no `--export` the committed demo model exported into the cache (96 px).
Frames: 320x240 SynthActions frames (the multicam benchmark's size). torch runs on 1 thread, as the
streaming runtime sets it beside an OpenVINO engine. Per batch size and way: the median over `--rounds`
rounds of the preparation (ms), of the engine call (ms) and of both, and the round's frames/s; the ratio of
the two ways' totals, measured in the same minutes (the two alternate round by round).
"""

# ruff: noqa: E402  (the project's imports come after the sys.path fix below)
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parents[1]
sys.path[:] = [str(ROOT) if Path(p or ".").resolve() == ROOT / "benchmarks" else p for p in sys.path]

from benchmarks.common import machine_line, synth_images
from engines.backend import encode_images
from engines.manifest import read_manifest
from engines.select import make_backend
from glanet.checkpoint import load_checkpoint
from glanet.data.transforms import EvalTransform
from stream.runtime.model import DEFAULT_CHECKPOINT

console = Console(width=140)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    p.add_argument("--export", type=Path, help="an export directory (default: the demo model, exported)")
    p.add_argument("--precision", default=None, help="int8, bf16 or fp32 (default: the engine's choice)")
    p.add_argument("--batches", default="1,8", help="frames per round (comma-separated)")
    p.add_argument("--rounds", type=int, default=40)
    p.add_argument("--json", type=Path, help="also write the results here")
    return p.parse_args(argv)


def timed(call: Callable[[], Any]) -> tuple[Any, float]:
    start = time.perf_counter()
    out = call()
    return out, (time.perf_counter() - start) * 1e3


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(1)
    if args.export is not None:
        backend = make_backend("openvino", None, args.export, args.precision)
        preprocessing = read_manifest(args.export).preprocessing
    else:
        ck = load_checkpoint(DEFAULT_CHECKPOINT)
        backend = make_backend("openvino", ck, None, args.precision)
        preprocessing = ck.preprocessing
    transform = EvalTransform.from_preprocessing(preprocessing)
    batches = [int(b) for b in args.batches.split(",")]
    pool = [cv2.resize(im, (320, 240)) for im in synth_images(max(batches), seed=2)]
    results: dict[str, Any] = {"machine": machine_line(), "engine": backend.describe(), "rows": []}

    def torch_way(frames: list[np.ndarray]) -> tuple[float, float]:
        x, prep = timed(lambda: torch.cat([transform([f]) for f in frames]))
        _, enc = timed(lambda: backend.encode(x))
        return prep, enc

    def graph_way(frames: list[np.ndarray]) -> tuple[float, float]:
        images, prep = timed(lambda: np.stack([transform.geometry(f) for f in frames]))
        _, enc = timed(lambda: encode_images(backend, images, transform))
        return prep, enc

    ways = {"torch tensor": torch_way, "uint8, in graph": graph_way}
    table = Table(title=f"{backend.describe()}\n{results['machine']}")
    for col in ("batch", "way", "prepare ms", "engine ms", "round ms", "frames/s", "vs torch"):
        table.add_column(col, justify="right" if col != "way" else "left")
    for batch in batches:
        frames = pool[:batch]
        for way in ways.values():  # every shape once, untimed (OpenVINO's first call at a shape is slow)
            way(frames)
        times: dict[str, list[tuple[float, float]]] = {name: [] for name in ways}
        for _ in range(args.rounds):
            for name, way in ways.items():
                times[name].append(way(frames))
        base = None
        for name, got in times.items():
            prep = statistics.median(t[0] for t in got)
            enc = statistics.median(t[1] for t in got)
            total = statistics.median(t[0] + t[1] for t in got)
            base = base if base is not None else total
            row = {"batch": batch, "way": name, "prepare_ms": prep, "engine_ms": enc, "round_ms": total,
                   "fps": 1e3 * batch / total, "speedup": base / total}  # fmt: skip
            results["rows"].append(row)
            table.add_row(str(batch), name, f"{prep:.2f}", f"{enc:.2f}", f"{total:.2f}", f"{row['fps']:.0f}",
                          f"{row['speedup']:.2f}x")  # fmt: skip
    console.print(table)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
