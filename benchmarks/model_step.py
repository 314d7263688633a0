"""Per-frame `step` latency of GLANet on the torch backend, split into backbone / heads / SRU.

    python benchmarks/model_step.py [--config configs/glanet_r34_hmdb51.toml] [--size 224]

Prints median and p90 milliseconds per stage at batch 1 and the ratio step / backbone-alone,
all measured in this process. Weights are random (timing does not depend on them).
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from collections.abc import Callable

import torch
from rich.console import Console
from rich.table import Table

from glanet.config import load_config
from glanet.models import GLANet


def timed(fn: Callable[[], object], iters: int, warmup: int) -> list[float]:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(iters):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1e3)
    return times


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="configs/glanet_r34_hmdb51.toml")
    parser.add_argument("--size", type=int, default=224, help="frame side in pixels")
    parser.add_argument("--iters", type=int, default=40)
    parser.add_argument("--warmup", type=int, default=8)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    cfg = load_config(args.config).model
    torch.manual_seed(0)
    model = GLANet(cfg).eval()
    frame = torch.randn(1, 3, args.size, args.size)

    with torch.inference_mode():
        fmap = model.backbone(frame)
        feats = model.encode(frame)
        state = model.init_state(1)

        def heads() -> object:
            gp = model.gp(fmap)
            sa, _ = model.sa(fmap)
            la, _ = model.la(fmap)
            return model.fusion(gp, sa), model.fusion(gp, la)

        # Interleave the stages round by round so drift in machine load hits them alike.
        results: dict[str, list[float]] = {
            "backbone": [],
            "heads (GP/SA/LA)": [],
            "SRU + classifiers": [],
            "step": [],
        }
        stages = {
            "backbone": lambda: model.backbone(frame),
            "heads (GP/SA/LA)": heads,
            "SRU + classifiers": lambda: model.temporal_step(feats, state),
            "step": lambda: model.step(frame, state),
        }
        for _ in range(4):
            for name, fn in stages.items():
                results[name] += timed(fn, args.iters // 4, args.warmup // 2)

    med = {k: statistics.median(v) for k, v in results.items()}
    table = Table(
        title=f"GLANet step, batch 1, {args.size} px, {cfg.backbone}, torch {torch.__version__} fp32 eager"
    )
    for col in ("stage", "median ms", "p90 ms", "share of step"):
        table.add_column(col, justify="left" if col == "stage" else "right")
    for name, times in results.items():
        p90 = statistics.quantiles(times, n=10)[-1]
        table.add_row(name, f"{med[name]:.2f}", f"{p90:.2f}", f"{med[name] / med['step']:.1%}")
    console = Console()
    console.print(table)
    ratio = med["step"] / med["backbone"]
    console.print(
        f"step / backbone-alone = {ratio:.3f} (target <= 1.10)   "
        f"[{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, "
        f"SRU {cfg.sru_layers}x{cfg.sru_hidden}, branches {', '.join(cfg.branch_names)}]",
        markup=False,
    )


if __name__ == "__main__":
    main()
