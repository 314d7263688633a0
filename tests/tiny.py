"""Shared by the training tests: `--set` overrides that shrink a config to a tiny SynthActions run."""

from __future__ import annotations

from pathlib import Path

from glanet.data.synth_render import CLASSES

CONFIG = str(Path(__file__).parent.parent / "configs" / "glanet_r18_synth_cpu.toml")


def tiny_overrides(root: Path, **extra: object) -> list[str]:
    """ResNet-18 at 40 px, 4-frame clips, 32-unit SRUs, on a data set written by `write_dataset`."""
    values = {
        "model.num_classes": len(CLASSES),
        "model.sru_hidden": 32,
        "data.root": f'"{root}"',
        "data.train_list": f'"{root / "train.txt"}"',
        "data.val_list": f'"{root / "val.txt"}"',
        "data.resize": "[48, 48]",
        "data.crop": 40,
        "data.window": 4,
        "data.stride": 4,
        "data.max_clips": 2,
        "train.batch_size": 8,
        "train.workers": 0,
        "train.epochs": 2,
        **extra,
    }
    return [arg for k, v in values.items() for arg in ("--set", f"{k}={v}")]
