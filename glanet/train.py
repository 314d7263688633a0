"""Training, torchvision-references style:

    python -m glanet.train --config configs/glanet_r34_hmdb51.toml --out runs/hmdb51 [--set train.lr=1e-4]
    torchrun --nproc_per_node 2 -m glanet.train --config ... --out ...      # DDP (gloo on CPU, nccl on GPU)
    python -m glanet.train --config ... --out runs/hmdb51 --resume runs/hmdb51/last.pt

Writes `last.pt` after every epoch and `best.pt` at the best validation accuracy (atomic checkpoints
with the optimiser state), and one JSON line per epoch to `metrics.jsonl`. Resuming continues
exactly: the learning rate is a function of the epoch, and every random stream (data order,
augmentation, dropout) is seeded from (seed, epoch).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import math
import os
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler

from glanet.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from glanet.cli import Parser, error_line, number
from glanet.config import Config, TrainConfig, config_to_dict, config_to_toml, load_config
from glanet.data.datasets import (
    FrameError,
    FrameFolderDataset,
    VideoFileDataset,
    open_dataset,
    video_level_accuracy,
)
from glanet.data.lists import ListError, read_class_names, read_video_csv, scan_video_folder
from glanet.data.sampling import Sampling
from glanet.data.transforms import build_transforms, preprocessing_dict
from glanet.data.video import VideoError
from glanet.losses import glanet_loss
from glanet.models import GLANet, Model, SMNet, build_model
from glanet.models.config import AnyModelConfig, ConfigError, ModelConfig, SMNetConfig

log = logging.getLogger("glanet.train")


# -- schedule and parameters ----------------------------------------------------------------------


def lr_at(epoch: int, cfg: TrainConfig) -> float:
    """The learning rate for a (0-based) epoch: a pure function, so resuming needs no scheduler state."""
    if cfg.schedule == "step":
        return cfg.lr * cfg.gamma ** sum(epoch >= m for m in cfg.milestones)
    if cfg.schedule == "cosine":
        return 0.5 * cfg.lr * (1.0 + math.cos(math.pi * epoch / cfg.epochs))
    return cfg.lr


def sa_temperature_at(epoch: int, initial: float, anneal: tuple[float, ...]) -> float:
    """SA's softmax temperature for a (0-based) epoch: geometric from `initial` to the final one of
    `anneal` = (start, end, final); a pure function of the epoch, so resuming is exact."""
    if not anneal:
        return initial
    start, end, final = anneal
    frac = min(1.0, max(0.0, (epoch - start) / (end - start)))
    return float(initial * (final / initial) ** frac)


def set_sa_temperature(model: GLANet, temperature: float) -> None:
    """Use `temperature` from now on, and record it in the model's config (what the checkpoint saves)."""
    model.sa.temperature = temperature
    model.cfg = dataclasses.replace(model.cfg, sa_temperature=temperature)


def same_model(a: AnyModelConfig, b: AnyModelConfig, annealed: bool, causal_may_change: bool = False) -> bool:
    """Equal configs; with SA annealing on, a checkpoint's temperature is the one of its epoch; with
    `causal_may_change`, an offline SMNet may start a causal one (the same weights, fine-tuned causally)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, SMNetConfig) and isinstance(b, SMNetConfig) and causal_may_change:
        a = dataclasses.replace(a, causal=b.causal)
    if a == b:
        return True
    return (
        annealed
        and isinstance(a, ModelConfig)
        and dataclasses.replace(a, sa_temperature=b.sa_temperature) == b
    )


def apply_stage(model: Model, stage: str) -> None:
    """Freeze what the training stage keeps fixed (paper sections IV-B-D).

    joint: everything trains. spatial: the backbone, attention and classifiers train, the SRUs are
    fixed. temporal: the backbone and attention are fixed (BatchNorm statistics included), the
    recurrent branches train.
    """
    for p in model.parameters():
        p.requires_grad_(True)
    if not isinstance(model, GLANet):
        return  # SMNet: one network, trained whole (check_train_config refuses the GLANet stages)
    if stage == "spatial":
        for head in model.heads.values():
            head.sru.requires_grad_(False)
    elif stage == "temporal":
        for part in (model.backbone, model.sa, model.la):
            part.requires_grad_(False)
    for cell in (c for head in model.heads.values() for c in head.sru.rnn_lst):
        if cell.variant == "paper":  # eqs. 12-13 never use weight_c
            cell.weight_c.requires_grad_(False)


def set_train_mode(model: Model, stage: str) -> None:
    model.train()
    if stage == "temporal":  # a frozen trunk keeps its BatchNorm statistics too
        model.backbone.eval()


def build_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)


# -- data -----------------------------------------------------------------------------------------


def class_names_for(cfg: Config) -> list[str]:
    """Class names from the config, else `classes.txt` in the data root, else those a CSV or a video
    folder names (sorted), else class_000, ..."""
    names: list[str] = list(cfg.data.class_names)
    where = "data.class_names"
    source = Path(cfg.data.train_list)
    if not names and (Path(cfg.data.root) / "classes.txt").is_file():
        where = str(Path(cfg.data.root) / "classes.txt")
        names = read_class_names(where)
    elif not names and source.is_dir():
        where, names = str(source), list(scan_video_folder(source)[1])
    elif not names and source.suffix.lower() == ".csv" and source.is_file():
        where, names = str(source), list(read_video_csv(source, root=cfg.data.root or None)[1])
    if not names:
        return [f"class_{i:03d}" for i in range(cfg.model.num_classes)]
    if len(names) != cfg.model.num_classes:
        raise ConfigError(f"{where} has {len(names)} classes but model.num_classes = {cfg.model.num_classes}")
    return names


def build_dataset(cfg: Config, train: bool, class_names: list[str]) -> FrameFolderDataset | VideoFileDataset:
    """Frame folders from a list file, or video files from a CSV or a class-per-folder tree."""
    source = cfg.data.train_list if train else cfg.data.val_list
    if not source:
        raise ConfigError(f"data.{'train' if train else 'val'}_list is not set")
    dataset = open_dataset(
        cfg.data.root,
        source,
        Sampling.from_config(cfg.data),
        build_transforms(cfg.data, train=train),
        train=train,
        seed=cfg.train.seed,
        class_names=class_names,
    )
    if not dataset.records:
        raise ListError(f"{source}: no videos")
    k = cfg.model.num_classes
    bad = next((r for r in dataset.records if not 0 <= r.label < k), None)
    if bad is not None:  # else a CUDA assert or an IndexError deep in the loss, epochs later on a big set
        raise ListError(
            f"{source}: {bad.path} has label {bad.label}, but model.num_classes = {k} (0..{k - 1})"
        )
    return dataset


def make_loader(
    dataset: FrameFolderDataset | VideoFileDataset, cfg: Config, train: bool, epoch: int
) -> DataLoader:
    """A loader whose order is a function of (seed, epoch) only; DDP ranks each get their share."""
    dataset.set_epoch(epoch)
    sampler = None
    generator = torch.Generator().manual_seed(cfg.train.seed * 100_003 + epoch)
    if dist.is_initialized() and train:
        sampler = DistributedSampler(dataset, shuffle=True, seed=cfg.train.seed, drop_last=True)
        sampler.set_epoch(epoch)
    return DataLoader(
        dataset,
        batch_size=cfg.train.batch_size,
        shuffle=train and sampler is None,
        sampler=sampler,
        num_workers=cfg.train.workers,
        drop_last=train,
        generator=generator,
        pin_memory=torch.cuda.is_available(),
    )


# -- one epoch ------------------------------------------------------------------------------------


@dataclass
class EpochStats:
    loss: float = 0.0
    ce: float = 0.0
    ga: float = 0.0
    clips: int = 0
    seconds: float = 0.0

    @property
    def clips_per_s(self) -> float:
        return self.clips / max(self.seconds, 1e-9)


_LOG_HANDLER = "glanet.train run log"  # the run folder's train.log, removed when the run ends


def _progress(console: Console) -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TextColumn("loss {task.fields[loss]:.3f}  lr {task.fields[lr]:.2e}  {task.fields[rate]:.1f} clips/s"),
        TimeRemainingColumn(),
        console=console,
        disable=not console.is_terminal,
    )


def train_one_epoch(
    model: nn.Module,
    loader: Iterable[tuple[torch.Tensor, torch.Tensor, torch.Tensor]],
    optimizer: torch.optim.Optimizer,
    cfg: Config,
    device: torch.device,
    epoch: int,
    limit_batches: int = 0,
    console: Console | None = None,
) -> EpochStats:
    """One pass over `loader`; `model` may be wrapped in DDP. Returns the mean losses and the rate."""
    inner: Model = model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model
    set_train_mode(inner, cfg.train.stage)
    stats = EpochStats()
    total = len(loader) if limit_batches <= 0 else min(limit_batches, len(loader))  # type: ignore[arg-type]
    autocast = cfg.train.amp == "bf16"  # bf16 autocast: CUDA, and CPUs with AVX512-BF16 / AMX
    every = max(1, total // 10)
    start = time.perf_counter()
    with _progress(console or Console()) as progress:
        task = progress.add_task(
            f"epoch {epoch + 1}", total=total, loss=0.0, lr=optimizer.param_groups[0]["lr"], rate=0.0
        )
        for i, (clips, labels, _) in enumerate(loader):
            if i >= total:
                break
            clips = clips.to(device, non_blocking=True)
            labels = labels.to(device, non_blocking=True)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
                out = model(clips)
            parts = glanet_loss(
                out.logits.float(),
                labels,
                inner.branch_names,
                score_fusion=getattr(inner.cfg, "score_fusion", "probs"),  # SMNet: one branch, no fusion
                ga=cfg.train.ga,
                margin=cfg.train.ga_margin,
                detach_global=cfg.train.ga_detach_global,
            )
            optimizer.zero_grad(set_to_none=True)
            parts.total.backward()
            if cfg.train.grad_clip > 0:
                nn.utils.clip_grad_norm_(inner.parameters(), cfg.train.grad_clip)
            optimizer.step()
            n = labels.shape[0]
            stats.loss += parts.total.item() * n
            stats.ce += parts.ce.item() * n
            stats.ga += parts.ga.item() * n
            stats.clips += n
            stats.seconds = time.perf_counter() - start
            progress.update(task, advance=1, loss=stats.loss / stats.clips, rate=stats.clips_per_s)
            if not progress.live.is_started and ((i + 1) % every == 0 or i + 1 == total):
                # no live bar (stdout is a file or a pipe): a line every tenth of the epoch instead
                log.info(
                    "epoch %d: %d/%d batches, loss %.3f, %.1f clips/s",
                    epoch + 1, i + 1, total, stats.loss / stats.clips, stats.clips_per_s,
                )  # fmt: skip
    if stats.clips:
        stats.loss /= stats.clips
        stats.ce /= stats.clips
        stats.ga /= stats.clips
    return stats


@torch.no_grad()
def evaluate(model: Model, loader: Iterable, device: torch.device, limit_batches: int = 0) -> dict[str, Any]:
    """Video-level accuracy (clip predictions averaged per video) for the fused prediction and each branch."""
    model.eval()
    fused, branches, videos, labels = [], [], [], []
    for i, (clips, y, v) in enumerate(loader):
        if limit_batches and i >= limit_batches:
            break
        out = model(clips.to(device))
        fused.append(out.fused.float().cpu())
        branches.append(out.probs.float().cpu())
        videos.append(v)
        labels.append(y)
    if not fused:
        raise ValueError("the validation set gave no clips")
    video_index, y_all = torch.cat(videos), torch.cat(labels)
    result: dict[str, Any] = {"fused": video_level_accuracy(torch.cat(fused), video_index, y_all)}
    probs = torch.cat(branches)
    for s, name in enumerate(model.branch_names):
        result[name] = video_level_accuracy(probs[:, s], video_index, y_all)
    return result


# -- main -----------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = Parser(prog="python -m glanet.train", description="Train a GLANet or SMNet model from a config.")
    p.add_argument("--config", required=True, help="a configs/*.toml file")
    p.add_argument(
        "--set", action="append", default=[], metavar="SECTION.KEY=VALUE", help="override a config key"
    )
    p.add_argument("--out", required=True, help="run folder: last.pt, best.pt, metrics.jsonl")
    p.add_argument("--resume", help="a last.pt to continue from (model, optimiser, epoch)")
    p.add_argument("--init-from", help="start from this checkpoint's weights (a later training stage)")
    p.add_argument("--imagenet-weights", metavar="PATH|cache", help="start the trunk from ImageNet weights")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"), help="where to train")
    p.add_argument(
        "--limit-batches",
        type=number(int, 0),
        default=0,
        help="at most this many batches per epoch (smoke runs)",
    )
    p.add_argument("--no-eval", action="store_true", help="skip validation (best.pt is then the last epoch)")
    # torchvision references' names for what is changed most; they win over the config and --set
    p.add_argument("--epochs", type=number(int, 1), help="train.epochs")
    p.add_argument("--batch-size", type=number(int, 1), help="train.batch_size")
    p.add_argument("--lr", type=number(float, 0, above=True), help="train.lr")
    p.add_argument("--workers", type=number(int, 0), help="train.workers (DataLoader processes)")
    args = p.parse_args(argv)
    for flag, key in (
        ("epochs", "epochs"),
        ("batch_size", "batch_size"),
        ("lr", "lr"),
        ("workers", "workers"),
    ):
        value = getattr(args, flag)
        if value is not None:
            args.set.append(f"train.{key}={value!r}")
    return args


def _setup_distributed(device_arg: str) -> tuple[torch.device, int, int]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    use_cuda = device_arg == "cuda" or (device_arg == "auto" and torch.cuda.is_available())
    if device_arg == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device cuda: no CUDA device on this machine")
    if world > 1:
        dist.init_process_group("nccl" if use_cuda else "gloo")
        rank = dist.get_rank()
        if use_cuda:
            local = int(os.environ.get("LOCAL_RANK", "0"))
            torch.cuda.set_device(local)
            return torch.device("cuda", local), rank, world
        return torch.device("cpu"), rank, world
    return torch.device("cuda" if use_cuda else "cpu"), 0, 1


def check_train_config(cfg: Config) -> None:
    """What only GLANet has (training stages, GA, SA annealing) asked of another model is refused by name."""
    if isinstance(cfg.model, ModelConfig):
        return
    arch = cfg.model.arch
    if cfg.train.stage != "joint":
        raise ConfigError(f"train.stage = {cfg.train.stage!r}: {arch} trains in one stage (joint)")
    if cfg.train.sa_anneal:
        raise ConfigError(f"train.sa_anneal: GLANet's SA temperature; {arch} has no SA branch")


def run(args: argparse.Namespace) -> tuple[Model, dict[str, Any]]:
    """Train as `args` say; returns the trained model and the last epoch's metrics (rank 0)."""
    cfg = load_config(args.config, args.set)
    check_train_config(cfg)
    device, rank, world = _setup_distributed(args.device)
    out = Path(args.out)
    console = Console(stderr=True)
    class_names = class_names_for(cfg)
    torch.manual_seed(cfg.train.seed)

    start_epoch, best = 0, -1.0
    extra: dict[str, Any] = {}
    if args.resume:
        loaded = load_checkpoint(args.resume, num_classes=cfg.model.num_classes)
        if not same_model(loaded.cfg, cfg.model, bool(cfg.train.sa_anneal)):
            raise ConfigError(f"{args.resume} was trained with another model config than {args.config}")
        model = loaded.model
        extra = loaded.extra
        start_epoch = int(extra.get("epoch", -1)) + 1
        best = float(extra.get("best_top1", -1.0))
    elif args.init_from:
        model = load_checkpoint(args.init_from, num_classes=cfg.model.num_classes).model
        if not same_model(model.cfg, cfg.model, bool(cfg.train.sa_anneal), causal_may_change=True):
            raise ConfigError(f"{args.init_from} has another model config than {args.config}")
        if (
            isinstance(model, SMNet)
            and isinstance(cfg.model, SMNetConfig)
            and model.causal != cfg.model.causal
        ):
            model.set_causal(cfg.model.causal)  # the causal fine-tuning recipe: same weights, causal from now
            log.info(
                "%s: SMNet weights, now run %s", args.init_from, "causally" if model.causal else "offline"
            )
    else:
        weights = None if args.imagenet_weights in (None, "cache") else args.imagenet_weights
        model = build_model(
            cfg.model,
            imagenet_weights=weights,
            pretrained=args.imagenet_weights is not None,
            input_size=cfg.data.crop,
        )
    model.to(device)
    apply_stage(model, cfg.train.stage)
    optimizer = build_optimizer(model, cfg.train)
    if "optimizer" in extra:
        optimizer.load_state_dict(extra["optimizer"])
    train_model: nn.Module = model
    if world > 1:
        train_model = nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None
        )

    train_set = build_dataset(cfg, True, class_names)
    val_set = None if args.no_eval else build_dataset(cfg, False, class_names)
    if rank == 0:
        out.mkdir(parents=True, exist_ok=True)
        # the run's record: the config as resolved (file + --set + flags), reloadable; and a plain log
        (out / "config.toml").write_text(config_to_toml(cfg), encoding="utf-8")
        handler = logging.FileHandler(out / "train.log", encoding="utf-8")
        handler.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
        handler.set_name(_LOG_HANDLER)
        logging.getLogger().addHandler(handler)
        log.info("command: %s", " ".join(sys.argv))
        log.info(
            "training %s on %d videos (%d clips/epoch), %s, %d process(es)",
            cfg.model.backbone,
            train_set.num_videos,
            len(train_set),
            device,
            world,
        )
    provenance = {
        "config": config_to_dict(cfg),
        "config_file": Path(args.config).name,
        "command": "glanet.train",
    }
    summary: dict[str, Any] = {}
    for epoch in range(start_epoch, cfg.train.epochs):
        lr = lr_at(epoch, cfg.train)
        if cfg.train.sa_anneal:
            set_sa_temperature(model, sa_temperature_at(epoch, cfg.model.sa_temperature, cfg.train.sa_anneal))
        for group in optimizer.param_groups:
            group["lr"] = lr
        torch.manual_seed(cfg.train.seed * 1_000_003 + epoch)  # dropout etc.: exact on resume
        loader = make_loader(train_set, cfg, train=True, epoch=epoch)
        if len(loader) == 0:
            raise ConfigError(
                f"train.batch_size ({cfg.train.batch_size}) is more than the {len(train_set)} clips of an "
                "epoch (per process): no batch to train on"
            )
        stats = train_one_epoch(
            train_model, loader, optimizer, cfg, device, epoch, args.limit_batches, console
        )
        if rank != 0:
            if world > 1:
                dist.barrier()
            continue
        metrics: dict[str, Any] = {
            "epoch": epoch + 1,
            "lr": lr,
            **({"sa_temperature": model.sa.temperature} if cfg.train.sa_anneal else {}),
            "loss": stats.loss,
            "ce": stats.ce,
            "ga": stats.ga,
            "clips": stats.clips,
            "clips_per_s": round(stats.clips_per_s, 2),
            "seconds": round(stats.seconds, 1),
        }
        if val_set is not None:
            metrics["val"] = evaluate(
                model, make_loader(val_set, cfg, train=False, epoch=0), device, args.limit_batches
            )
            top1 = metrics["val"]["fused"]["top1"]
        else:
            top1 = float(epoch)
        is_best = top1 > best
        best = max(best, top1)
        extra = {"epoch": epoch, "best_top1": best, "optimizer": optimizer.state_dict()}
        ckpt = dict(
            class_names=class_names,
            preprocessing=preprocessing_dict(cfg.data),
            sampling=Sampling.from_config(cfg.data).to_dict(),
            provenance=provenance,
            metrics=metrics,
        )
        save_checkpoint(out / "last.pt", model, extra=extra, **ckpt)
        if is_best:
            save_checkpoint(out / "best.pt", model, **ckpt)
        with open(out / "metrics.jsonl", "a") as f:
            f.write(json.dumps(metrics) + "\n")
        val = f"  val top-1 {100 * metrics['val']['fused']['top1']:.1f}%" if "val" in metrics else ""
        log.info(
            "epoch %d/%d  loss %.4f (ce %.4f, ga %.4f)  lr %.2e  %.1f clips/s%s",
            epoch + 1,
            cfg.train.epochs,
            stats.loss,
            stats.ce,
            stats.ga,
            lr,
            stats.clips_per_s,
            val,
        )
        summary = metrics
        if world > 1:
            dist.barrier()
    if world > 1:
        dist.destroy_process_group()
    return model, summary


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    args = parse_args(argv)
    try:
        run(args)
    except (ConfigError, CheckpointError, FileNotFoundError, FrameError, ListError, VideoError) as e:
        print(f"glanet.train: {error_line(e)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("glanet.train: interrupted; resume with --resume <out>/last.pt", file=sys.stderr)
        return 130
    finally:
        for handler in [h for h in logging.getLogger().handlers if h.get_name() == _LOG_HANDLER]:
            logging.getLogger().removeHandler(handler)
            handler.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
