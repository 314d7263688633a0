"""What making an offline SMNet causal costs, on SynthActions: accuracy and training time.

    python benchmarks/causal_finetune.py [--offline-epochs 4] [--finetune-epochs 2]

1. trains the offline (non-causal) SMNet of `configs/smnet_r10_synth_demo.toml` on 8 TSN segments, its
   trunk from the GLANet demo model's (as `train_synth.py --trunk-from` does);
2. evaluates it as trained (TSN segments), and on 8 consecutive frames at the model's rate (what it would
   see live), still non-causal;
3. evaluates the same weights made causal with no training (what running an offline checkpoint live
   would give, if it were allowed);
4. fine-tunes them causally on consecutive frames (the recipe in docs/model.md) and evaluates again.
Prints the table of video top-1 on the held-out videos and the time of each training.
"""

# ruff: noqa: E402  (the project's imports come after the sys.path fix below)
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:] = [str(ROOT) if Path(p or ".").resolve() == ROOT / "benchmarks" else p for p in sys.path]

from rich.console import Console
from rich.table import Table

from benchmarks.train_synth import smnet_from_trunk
from glanet.checkpoint import load_checkpoint, save_checkpoint
from glanet.data.synth import write_dataset
from glanet.data.synth_render import CLASSES
from glanet.evaluate import evaluate_checkpoint
from glanet.train import parse_args as train_args
from glanet.train import run as train_run

CONFIG = "configs/smnet_r10_synth_demo.toml"


def train(out: Path, sets: list[str], *more: str) -> float:
    start = time.perf_counter()
    overrides = [arg for s in sets for arg in ("--set", s)]
    train_run(train_args(["--config", CONFIG, "--out", str(out), "--no-eval", *overrides, *more]))
    return time.perf_counter() - start


def top1(ckpt: Path, data: Path, workers: int) -> float:
    result = evaluate_checkpoint(
        load_checkpoint(ckpt), data, data / "val.txt", batch_size=16, workers=workers
    )
    return float(result["fused"]["top1"])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default="data/synth", help="where the generated data set goes (resumable)")
    p.add_argument("--out", default="runs/causal_finetune", help="run folders")
    p.add_argument("--trunk-from", default="models/glanet_synthactions_demo.pt", help="GLANet checkpoint")
    p.add_argument("--train-per-class", type=int, default=100, help="training videos per class")
    p.add_argument("--val-per-class", type=int, default=30, help="held-out videos per class")
    p.add_argument("--offline-epochs", type=int, default=4, help="epochs of offline training")
    p.add_argument("--finetune-epochs", type=int, default=2, help="epochs of causal fine-tuning")
    p.add_argument("--workers", type=int, default=2, help="DataLoader processes")
    args = p.parse_args(argv)
    data, out = Path(args.data), Path(args.out)
    for split, per_class, seed in (("train", args.train_per_class, 1), ("val", args.val_per_class, 1001)):
        write_dataset(data, videos_per_class=per_class, seed=seed, split=split, num_frames=24, size=128,
                      fps=7.5, workers=args.workers)  # fmt: skip
    common = [
        f"model.num_classes={len(CLASSES)}",
        f'data.root="{data}"',
        f'data.train_list="{data / "train.txt"}"',
        f'data.val_list="{data / "val.txt"}"',
        f"train.workers={args.workers}",
    ]
    offline_sets = [
        *common,
        "model.causal=false",
        'data.sampling="tsn"',
        "data.segments=8",
        "data.frames_per_segment=1",
        "data.window=8",
        "data.stride=8",
        f"train.epochs={args.offline_epochs}",
    ]
    init = smnet_from_trunk(CONFIG, offline_sets, Path(args.trunk_from), out / "offline")
    offline_s = train(out / "offline", offline_sets, "--init-from", str(init))
    offline = out / "offline" / "last.pt"

    # the same weights on what a live model sees: 8 consecutive frames at the model's rate
    ck = load_checkpoint(offline)
    clips = {**ck.sampling, "mode": "clips", "window": 8, "stride": 4}
    meta = {"class_names": ck.class_names, "preprocessing": ck.preprocessing, "sampling": clips}
    as_clips = save_checkpoint(out / "offline_on_clips.pt", ck.model, **meta)
    as_causal = save_checkpoint(out / "causal_untrained.pt", ck.model.set_causal(True), **meta)
    finetune_sets = [
        *common,
        "model.causal=true",
        'data.sampling="clips"',
        "data.window=8",
        "data.stride=4",
        f"train.epochs={args.finetune_epochs}",
        "train.lr=5e-4",
    ]
    finetune_s = train(out / "causal", finetune_sets, "--init-from", str(offline))
    tuned = out / "causal" / "last.pt"
    rows = [
        (
            "offline, TSN 8 segments (as trained)",
            top1(offline, data, args.workers),
            f"{offline_s / 60:.1f} min",
        ),
        ("offline, 8 consecutive frames", top1(as_clips, data, args.workers), ""),
        ("causal, no fine-tuning", top1(as_causal, data, args.workers), ""),
        (
            f"causal, fine-tuned {args.finetune_epochs} epochs",
            top1(tuned, data, args.workers),
            f"{finetune_s / 60:.1f} min",
        ),
    ]
    table = Table(
        title=f"SMNet made causal: video top-1 on {args.val_per_class * len(CLASSES)} held-out videos"
    )
    for col in ("model", "top-1", "training"):
        table.add_column(col)
    for name, acc, cost in rows:
        table.add_row(name, f"{100 * acc:.1f}%", cost)
    Console().print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
