"""Train the small CPU config on SynthActions, then score it on held-out videos from other seeds.

    python benchmarks/train_synth.py [--config configs/glanet_r10_synth_demo.toml] [--save-demo]
    python benchmarks/train_synth.py --config configs/smnet_r10_synth_demo.toml \
        --trunk-from models/glanet_synthactions_demo.pt --save-demo                          # SMNet

1. generates the training set (default 12 classes x 170 = 2040 videos) and a held-out set from
   another base seed (resumable: videos already on disk are kept);
2. trains with `glanet.train` (no validation during training: nothing is selected on the test set);
3. evaluates the last checkpoint on the held-out set and prints the table of targets:
   fused video top-1 >= 90%; sit_down / stand_up (the time-reversed pair) told apart >= 90%;
   fused above GP-only (GLANet); the attention maps' mass in the figure's box >= 2x the box's area share.
With `--save-demo` the trained model is written (float16 weights) as the demo model of its arch.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from rich.table import Table

from glanet.checkpoint import LoadedCheckpoint, load_checkpoint, save_checkpoint
from glanet.config import load_config
from glanet.data.synth import write_dataset
from glanet.data.synth_render import CLASSES
from glanet.evaluate import evaluate_checkpoint
from glanet.models import build_model
from glanet.train import parse_args as train_args
from glanet.train import run as train_run

DEMOS = {
    "glanet": Path("models/glanet_synthactions_demo.pt"),
    "smnet": Path("models/smnet_synthactions_demo.pt"),
}


def pair_accuracy(result: dict[str, Any], a: str, b: str) -> float:
    """Of the held-out videos of classes a and b, the share predicted as their own class."""
    names = result["class_names"]
    ia, ib = names.index(a), names.index(b)
    conf = result["confusion"]
    right = conf[ia][ia] + conf[ib][ib]
    return right / max(1, sum(conf[ia]) + sum(conf[ib]))


def save_demo(ck: LoadedCheckpoint, result: dict[str, Any], path: Path) -> Path:
    """The demo model: the trained checkpoint with float16 weights and its held-out scores."""
    path.parent.mkdir(parents=True, exist_ok=True)
    provenance = json.loads(json.dumps(ck.provenance))
    data = provenance.get("config", {}).get("data", {})
    for key in ("root", "train_list", "val_list"):  # where this machine kept the data: not shipped
        if key in data:
            data[key] = str(Path("data/synth") / Path(data[key]).name) if key != "root" else "data/synth"
    return save_checkpoint(
        path,
        ck.model,
        class_names=ck.class_names,
        preprocessing=ck.preprocessing,
        sampling=ck.sampling,
        provenance={**provenance, "command": "python benchmarks/train_synth.py --save-demo"},
        metrics={
            "heldout_videos": result["videos"],
            "heldout_fused_top1": result["fused"]["top1"],
            "heldout_per_branch_top1": {k: v["top1"] for k, v in result["per_branch"].items()},
        },
        weights_dtype=torch.float16,
    )


def smnet_from_trunk(config: str, sets: list[str], source: Path, out: Path) -> Path:
    """A fresh SMNet of `config` whose trunk holds `source`'s trunk weights, saved as out/init.pt."""
    cfg = load_config(config, sets)
    model = build_model(cfg.model, input_size=cfg.data.crop)
    trunk = load_checkpoint(source).model.backbone.state_dict()
    own = model.backbone.state_dict()
    if set(trunk) != {k for k in own if ".smnet." not in k}:
        raise SystemExit(f"{source}: its trunk is not an {cfg.model.backbone} like {config}'s")
    model.backbone.load_state_dict(trunk, strict=False)
    out.mkdir(parents=True, exist_ok=True)
    names = [f"class_{i:03d}" for i in range(cfg.model.num_classes)]
    return save_checkpoint(out / "init.pt", model, class_names=names, data=cfg.data)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", default="configs/glanet_r10_synth_demo.toml")
    p.add_argument("--data", default="data/synth", help="where the generated data set goes")
    p.add_argument("--out", default="runs/synth_bench")
    p.add_argument("--train-per-class", type=int, default=170)
    p.add_argument("--val-per-class", type=int, default=30)
    p.add_argument("--frames", type=int, default=24)
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--fps", type=float, default=7.5)
    p.add_argument("--train-seed", type=int, default=1)
    p.add_argument("--val-seed", type=int, default=1001)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE")
    p.add_argument(
        "--save-demo",
        action="store_true",
        help=f"write the trained model as the demo model: {', '.join(map(str, DEMOS.values()))}",
    )
    p.add_argument(
        "--trunk-from",
        help="SMNet: start the trunk from this GLANet checkpoint's (the SynthActions counterpart of ImageNet "
        "weights: its ResNet already knows the figures; the SE/ME modules and the classifier start fresh)",
    )
    args = p.parse_args(argv)
    console = Console()
    data = Path(args.data)

    t0 = time.perf_counter()
    for split, per_class, seed in (
        ("train", args.train_per_class, args.train_seed),
        ("val", args.val_per_class, args.val_seed),
    ):
        write_dataset(
            data,
            videos_per_class=per_class,
            seed=seed,
            split=split,
            num_frames=args.frames,
            size=args.size,
            fps=args.fps,
            workers=args.workers,
        )
    gen_s = time.perf_counter() - t0

    sets = [
        f"model.num_classes={len(CLASSES)}",
        f'data.root="{data}"',
        f'data.train_list="{data / "train.txt"}"',
        f'data.val_list="{data / "val.txt"}"',
        f"data.fps={args.fps}",
        *args.set,
    ]
    t0 = time.perf_counter()
    overrides = [arg for s in sets for arg in ("--set", s)]
    init = []
    if args.trunk_from:
        init = [
            "--init-from",
            str(smnet_from_trunk(args.config, sets, Path(args.trunk_from), Path(args.out))),
        ]
    train_run(train_args(["--config", args.config, "--out", args.out, "--no-eval", *overrides, *init]))
    train_s = time.perf_counter() - t0

    ck = load_checkpoint(Path(args.out) / "last.pt")
    t0 = time.perf_counter()
    result = evaluate_checkpoint(
        ck, data, data / "val.txt", batch_size=16, workers=args.workers, device="cpu"
    )
    eval_s = time.perf_counter() - t0

    fused = result["fused"]["top1"]
    gp = result["per_branch"].get("GP", {}).get("top1")  # GLANet's global branch; SMNet has one branch
    reversed_pair = pair_accuracy(result, "sit_down", "stand_up")
    speed_pair = pair_accuracy(result, "walk", "run")
    loc = result.get("localisation", {})
    rows = [
        ("fused video top-1", f"{fused:.1%}", ">= 90%", fused >= 0.90),
        ("sit_down / stand_up told apart", f"{reversed_pair:.1%}", ">= 90%", reversed_pair >= 0.90),
        ("walk / run told apart", f"{speed_pair:.1%}", "", None),
    ]
    if gp is not None:
        rows.append(("GP-only video top-1", f"{gp:.1%}", "< fused", gp < fused))
    for name in result["branches"]:
        if name != "GP" and len(result["branches"]) > 1:
            rows.append((f"{name} video top-1", f"{result['per_branch'][name]['top1']:.1%}", "", None))
    for att in [k for k, v in loc.items() if isinstance(v, dict) and "pointing" in v and k != "centre_point"]:
        if att in loc:
            ratio = loc[att]["mass_in_box"] / max(loc[att]["box_share"], 1e-9)
            rows.append(
                (
                    f"{att} mass in box / box share",
                    f"{loc[att]['mass_in_box']:.1%} / {loc[att]['box_share']:.1%} = {ratio:.2f}x",
                    ">= 2x",
                    ratio >= 2.0,
                )
            )
            rows.append((f"{att} pointing game", f"{loc[att]['pointing']:.1%}", "", None))
    rows.append(("training time", f"{train_s / 60:.1f} min", "<= 20 min", train_s <= 20 * 60))

    table = Table(title=f"SynthActions: {result['videos']} held-out videos, {args.config}")
    for col in ("metric", "value", "target", "met"):
        table.add_column(col)
    for name, value, target, ok in rows:
        table.add_row(name, value, target, "" if ok is None else ("yes" if ok else "NO"))
    console.print(table)
    console.print(
        f"data generation {gen_s / 60:.1f} min, training {train_s / 60:.1f} min, "
        f"evaluation {eval_s / 60:.1f} min",
        markup=False,
    )
    summary = {
        "rows": [dict(zip(("metric", "value", "target", "met"), r, strict=True)) for r in rows],
        "generation_s": gen_s,
        "training_s": train_s,
        "evaluation_s": eval_s,
        "evaluation": result,
    }
    out = Path(args.out)
    (out / "bench.json").write_text(json.dumps(summary, indent=1))

    if args.save_demo:
        demo = DEMOS[ck.cfg.arch]
        save_demo(ck, result, demo)
        console.print(f"demo model: {demo} ({demo.stat().st_size / 1e6:.1f} MB)", markup=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
